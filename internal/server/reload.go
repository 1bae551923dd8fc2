package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/pool"
)

// Reload re-reads the configuration file and applies the difference while
// serving: an invalid file changes nothing (its errors are returned, each
// with its line); otherwise new pools are created, removed pools are
// drained and stopped, changed pools are replaced by a pool with the new
// settings that is warmed up before traffic moves to it, unchanged pools
// are not touched (their instances keep their pids), the routing table is
// switched at once, and listeners are added or closed without disturbing
// the others.
func (s *Server) Reload(file string) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cfg, err := config.Load(file)
	if err != nil {
		s.events.Emit(events.Event{Kind: events.Reload, Reason: "refused", Detail: firstLine(err)})
		return fmt.Errorf("reload %s: %w", file, err)
	}
	s.mu.Lock()
	old := s.cfg
	oldPools := s.pools
	s.mu.Unlock()
	ch := config.Diff(old, cfg)
	for _, key := range serverKeysNeedingRestart(old, cfg) {
		s.log.Warn("reload: this setting takes effect at the next restart", "key", "server."+key)
	}

	pools := make(map[string]*pool.Pool, len(cfg.Pools))
	for _, name := range ch.Unchanged {
		pools[name] = oldPools[name]
	}
	var created []*pool.Pool
	abandon := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, p := range created {
			p.Shutdown(ctx)
		}
	}
	for _, name := range append(slices.Clone(ch.Added), ch.Changed...) {
		p, err := s.newPool(cfg.Pools[name])
		if err != nil {
			abandon()
			s.events.Emit(events.Event{Kind: events.Reload, Reason: "refused", Detail: err.Error()})
			return fmt.Errorf("reload %s: %w", file, err)
		}
		created = append(created, p)
		pools[name] = p
	}
	// A changed pool's replacement is warmed to the capacity the old one
	// had before traffic moves; if it cannot start, the old pool stays.
	var kept []string
	for _, name := range ch.Changed {
		np, op := pools[name], oldPools[name]
		np.Start()
		want := len(op.PIDs("ready"))
		if want == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Pools[name].StartupTimeout.D()+time.Second)
		ok := np.Warm(ctx, want)
		cancel()
		if !ok {
			s.log.Error("reload: changed pool failed to start; it keeps its old settings", "pool", name)
			shut, c := context.WithTimeout(context.Background(), 30*time.Second)
			np.Shutdown(shut)
			c()
			pools[name] = op
			cfg.Pools[name] = old.Pools[name]
			kept = append(kept, name)
		}
	}
	for _, name := range ch.Added {
		pools[name].Start()
	}
	table, proxies, statics, err := s.routes(cfg, pools)
	if err != nil {
		abandon()
		return fmt.Errorf("reload %s: %w", file, err)
	}

	s.gw.SetRoutes(table)
	s.mu.Lock()
	oldStatics := s.statics
	s.cfg, s.pools, s.proxies, s.statics = cfg, pools, proxies, statics
	s.mu.Unlock()
	s.watchFiles(cfg, pools)

	for _, addr := range ch.ListenersAdded {
		if err := s.gw.Listen(addr); err != nil {
			s.log.Error("reload: cannot listen", "listen", addr, "err", err)
		}
	}
	retire := func(f func(ctx context.Context)) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
			defer cancel()
			f(ctx)
		}()
	}
	for _, addr := range ch.ListenersRemoved {
		retire(func(ctx context.Context) { s.gw.Close(ctx, addr) })
	}
	for name, p := range oldPools {
		if pools[name] == p {
			continue
		}
		retire(func(ctx context.Context) {
			p.Drain(ctx)
			p.Shutdown(ctx)
		})
	}
	for _, st := range oldStatics {
		st.Close()
	}
	detail := fmt.Sprintf("added %v, removed %v, changed %v, unchanged %d", ch.Added, ch.Removed, without(ch.Changed, kept), len(ch.Unchanged))
	if len(kept) > 0 {
		detail += fmt.Sprintf("; kept old settings (failed to start) %v", kept)
	}
	s.events.Emit(events.Event{Kind: events.Reload, Reason: "applied", Detail: detail})
	return nil
}

// serverKeysNeedingRestart lists [server] settings that a reload cannot
// apply while running.
func serverKeysNeedingRestart(old, cfg *config.Config) []string {
	var keys []string
	a, b := old.Server, cfg.Server
	if a.Admin != b.Admin {
		keys = append(keys, "admin")
	}
	if a.RuntimeDir != b.RuntimeDir {
		keys = append(keys, "runtime_dir")
	}
	if a.LogFormat != b.LogFormat {
		keys = append(keys, "log_format")
	}
	if a.AccessLog != b.AccessLog {
		keys = append(keys, "access_log")
	}
	if a.TLSCert != b.TLSCert || a.TLSKey != b.TLSKey {
		keys = append(keys, "tls_cert")
	}
	return keys
}

func without(list, drop []string) []string {
	var out []string
	for _, s := range list {
		if !slices.Contains(drop, s) {
			out = append(out, s)
		}
	}
	return out
}

func firstLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " (and more)"
	}
	return s
}

// Config returns the configuration in force.
func (s *Server) Config() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// Pools returns the pools in force, by name.
func (s *Server) Pools() map[string]*pool.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.pools)
}
