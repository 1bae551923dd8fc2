// Package server assembles a running drover from a configuration: it owns
// the pools, the front end (gateway) and, later, the admin listener, and it
// is the one place that starts them in order and stops them in reverse on
// shutdown.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drover-pool/drover/internal/backend"
	"github.com/drover-pool/drover/internal/cgroup"
	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/gateway"
	"github.com/drover-pool/drover/internal/pool"
	"github.com/drover-pool/drover/internal/service"
	"github.com/drover-pool/drover/python"
)

// Options are what a Server needs besides its configuration.
type Options struct {
	// Logger receives drover's log; nil discards it.
	Logger *slog.Logger
	// Clock drives recycle.interval and recycle.schedule; nil is the
	// real clock. Tests inject their own.
	Clock pool.Clock
	// MemoryInterval is how often recycle.memory samples RSS; 0 is 5s.
	MemoryInterval time.Duration
	// CPUWindow is the measuring window of limits.cpu with cpu_action
	// kill or log; 0 is 5s.
	CPUWindow time.Duration
	// Cgroups is the delegated cgroup v2 hierarchy; nil detects it on
	// this machine when a pool needs one. Tests pass a fake tree.
	Cgroups *cgroup.Hierarchy
}

// Server is one running drover.
type Server struct {
	opts   Options
	log    *slog.Logger
	events *events.Log
	gw     *gateway.Gateway
	access *gateway.AccessLog
	closer io.Closer // the access log file, if any

	reloadMu   sync.Mutex     // one reload at a time
	generation atomic.Int64   // numbers pool objects, for unique socket names
	wg         sync.WaitGroup // pools retired by a reload, draining
	watch      *watcher       // recycle.watch files

	// admin is the admin listener, metrics and console (admin_wire.go).
	admin    adminParts
	observer gateway.Observer // the metrics' view of requests; may be nil

	services *service.Manager // background services; fixed for the server's life

	mu      sync.Mutex // guards cfg, pools, proxies, statics
	cfg     *config.Config
	pools   map[string]*pool.Pool
	proxies map[string]*gateway.Proxy // one per pool, shared by its routes
	statics []*gateway.Static
}

// New builds a server from cfg: pools are created, nothing runs yet.
func New(cfg *config.Config, o Options) (*Server, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:   o,
		log:    logger,
		events: events.New(logger, 1000),
		cfg:    cfg,
		pools:  map[string]*pool.Pool{},
	}
	if err := s.openAccessLog(cfg.Server.AccessLog); err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if cfg.Server.TLSCert != "" && cfg.Server.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Server.TLSCert, cfg.Server.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("server.tls_cert: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.gw = gateway.New(gateway.Options{Logger: logger, AccessLog: s.access, TLS: tlsConfig})
	if err := os.MkdirAll(cfg.Server.RuntimeDir, 0o755); err != nil {
		return nil, fmt.Errorf("server.runtime_dir: %w", err)
	}
	var errs []error
	for name, pc := range cfg.Pools {
		p, err := s.newPool(pc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.pools[name] = p
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	notifyDir := filepath.Join(cfg.Server.RuntimeDir, "services")
	if err := os.MkdirAll(notifyDir, 0o755); err != nil {
		return nil, fmt.Errorf("server.runtime_dir: %w", err)
	}
	svc, err := service.NewManager(cfg.Services, s.events, logger, service.WithNotifyDir(notifyDir),
		service.WithCgroup(func(name string, l config.Limits) (int, bool, error) {
			cl := CgroupLimits(l)
			if len(cl.Controllers()) == 0 {
				return 0, false, nil
			}
			g, err := s.cgroupFor("service-"+name, cl)
			if err != nil {
				return 0, false, err
			}
			fd, err := g.FD()
			return fd, err == nil, err
		}))
	if err != nil {
		return nil, err
	}
	s.services = svc
	s.observer = s.newObserver()
	table, proxies, statics, err := s.routes(cfg, s.pools)
	if err != nil {
		return nil, err
	}
	s.statics, s.proxies = statics, proxies
	s.gw.SetRoutes(table)
	return s, nil
}

func (s *Server) openAccessLog(dest string) error {
	var w io.Writer
	switch dest {
	case "":
		return nil
	case "stdout":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(dest, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("server.access_log: %w", err)
		}
		w, s.closer = f, f
	}
	s.access = gateway.NewAccessLog(w)
	return nil
}

// newPool creates one pool with its backend kind.
func (s *Server) newPool(pc *config.Pool) (*pool.Pool, error) {
	// Workers running as other users must traverse pools/ to reach
	// their own directory, which only they (and root) can enter.
	dir := filepath.Join(s.cfg.Server.RuntimeDir, "pools", pc.Name)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("pool %q: runtime dir: %w", pc.Name, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("pool %q: runtime dir: %w", pc.Name, err)
	}
	// A reload can run the old and the new pool of one name side by side:
	// each pool object gets its own socket names.
	kind, err := s.newKind(pc, dir, fmt.Sprintf("%s-%d", pc.Name, s.generation.Add(1)))
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", pc.Name, err)
	}
	opts := pool.Options{
		Config:         pc,
		Kind:           kind,
		Events:         s.events,
		Logger:         s.log,
		Clock:          s.opts.Clock,
		MemoryInterval: s.opts.MemoryInterval,
		CPUWindow:      s.opts.CPUWindow,
	}
	if l := CgroupLimits(pc.Limits); len(l.Controllers()) > 0 {
		g, err := s.cgroupFor(pc.Name, l)
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", pc.Name, err)
		}
		fd, err := g.FD()
		if err != nil {
			return nil, fmt.Errorf("pool %q: %w", pc.Name, err)
		}
		opts.Cgroup, opts.CgroupFD = true, fd
	}
	p, err := pool.New(opts)
	if err != nil {
		return nil, err
	}
	if uid, gid, ok := p.Owner(); ok {
		// The worker creates its own socket in this directory.
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, fmt.Errorf("pool %q: runtime dir: %w", pc.Name, err)
		}
	}
	return p, nil
}

// newKind picks the backend for a pool's kind.
func (s *Server) newKind(pc *config.Pool, dir, prefix string) (backend.Kind, error) {
	switch pc.Kind {
	case "http":
		k := &backend.HTTP{SocketDir: dir, Prefix: prefix, MaxIdleConns: 2 * pc.InstanceConcurrency}
		if pc.Health.Interval > 0 {
			k.HealthPath = pc.Health.Path
		}
		return k, nil
	case "fastcgi":
		return &backend.FastCGI{SocketDir: dir, Prefix: prefix, Pool: pc.Name, Root: pc.Root, Script: pc.Script,
			MaxIdleConns: pc.InstanceConcurrency, Logger: s.log}, nil
	case "uwsgi":
		return &backend.UWSGI{SocketDir: dir, Prefix: prefix}, nil
	case "cgi":
		return &backend.CGI{Pool: pc.Name, Root: pc.Root, Script: pc.Script, TempDir: dir, Logger: s.log}, nil
	case "wsgi":
		shim, err := python.WriteShim(s.cfg.Server.RuntimeDir)
		if err != nil {
			return nil, fmt.Errorf("write the WSGI shim: %w", err)
		}
		return &backend.WSGI{SocketDir: dir, Prefix: prefix, Shim: shim, Python: pc.Python, App: pc.App,
			PythonPath: pc.PythonPath, Dir: pc.Dir, Concurrency: pc.InstanceConcurrency, Threads: pc.Threads}, nil
	}
	return nil, fmt.Errorf("kind %q is not supported yet", pc.Kind)
}

// routes compiles the routing table for cfg against pools, with one proxy
// per pool.
func (s *Server) routes(cfg *config.Config, pools map[string]*pool.Pool) (*gateway.Table, map[string]*gateway.Proxy, []*gateway.Static, error) {
	var routes []gateway.Route
	var statics []*gateway.Static
	proxies := map[string]*gateway.Proxy{}
	for i, rc := range cfg.Routes {
		r := gateway.Route{Host: rc.Host, Path: rc.Path, StripPrefix: rc.StripPrefix}
		if rc.Static != "" {
			st, err := gateway.NewStatic(rc.Static, rc.Listing)
			if err != nil {
				for _, st := range statics {
					st.Close()
				}
				return nil, nil, nil, fmt.Errorf("route[%d]: %w", i, err)
			}
			statics = append(statics, st)
			r.Target, r.Handler = rc.Static, st
		} else {
			p := pools[rc.Pool]
			if p == nil {
				return nil, nil, nil, fmt.Errorf("route[%d]: pool %q does not exist", i, rc.Pool)
			}
			px := proxies[rc.Pool]
			if px == nil {
				px = gateway.NewProxy(p, s.log, s.observer)
				proxies[rc.Pool] = px
			}
			r.Target, r.Handler = rc.Pool, px
		}
		routes = append(routes, r)
	}
	return gateway.NewTable(routes), proxies, statics, nil
}

// Requests lists the requests waiting for or being served by a pool, or
// by every pool when name is "".
func (s *Server) Requests(name string) []gateway.RequestInfo {
	s.mu.Lock()
	var pxs []*gateway.Proxy
	for n, px := range s.proxies {
		if name == "" || n == name {
			pxs = append(pxs, px)
		}
	}
	s.mu.Unlock()
	var out []gateway.RequestInfo
	for _, px := range pxs {
		out = append(out, px.Requests()...)
	}
	return out
}

// Start opens the listeners and starts the pools. On error everything
// already started is stopped again.
func (s *Server) Start() error {
	for _, addr := range s.cfg.Server.Listen {
		if err := s.gw.Listen(addr); err != nil {
			_ = s.gw.Shutdown(context.Background())
			return err
		}
	}
	// The admin listener is checked before any worker starts: a refused
	// admin address must not leave pools half started.
	if err := s.startAdmin(); err != nil {
		_ = s.gw.Shutdown(context.Background())
		return err
	}
	for _, p := range s.pools {
		p.Start()
	}
	if err := s.services.Start(context.Background()); err != nil {
		_ = s.Shutdown(context.Background())
		return err
	}
	w, err := newWatcher(s.log)
	if err != nil {
		// Touch-reload is a convenience; drover serves without it.
		s.log.Warn("recycle.watch disabled", "err", err)
	}
	s.watch = w
	s.watchFiles(s.cfg, s.pools)
	s.events.Emit(events.Event{Kind: "server-start", Detail: s.cfg.File})
	return nil
}

// Shutdown stops drover gracefully: /readyz turns 503, the listeners stop
// accepting and in-flight requests complete, then every pool stops its
// instances. When ctx ends first, what remains is killed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.gw.SetDraining(true)
	err := s.gw.Shutdown(ctx)
	s.stopAdmin(ctx)
	if s.watch != nil {
		s.watch.Close()
	}
	s.wg.Wait() // pools retired by reloads
	s.mu.Lock()
	pools := s.pools
	statics := s.statics
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Shutdown(ctx)
		}()
	}
	wg.Wait()
	// Services last, in reverse start order: pools may depend on them.
	if err2 := s.services.Shutdown(ctx); err2 != nil && err == nil {
		err = err2
	}
	for _, st := range statics {
		st.Close()
	}
	if s.access != nil {
		s.access.Flush()
	}
	if s.closer != nil {
		s.closer.Close()
	}
	return err
}

// Pool returns a pool by name, or nil.
func (s *Server) Pool(name string) *pool.Pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pools[name]
}

// Events returns the server's event log.
func (s *Server) Events() *events.Log { return s.events }

// Services returns the service manager.
func (s *Server) Services() *service.Manager { return s.services }

// Gateway returns the front end.
func (s *Server) Gateway() *gateway.Gateway { return s.gw }
