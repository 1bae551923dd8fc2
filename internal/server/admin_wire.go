package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/drover-pool/drover/internal/admin"
	"github.com/drover-pool/drover/internal/gateway"
	"github.com/drover-pool/drover/internal/metrics"
	"github.com/drover-pool/drover/internal/service"
)

// adminParts holds the admin listener, the metrics and the console.
type adminParts struct {
	metrics  *metrics.Metrics
	listener *admin.Listener
}

// newObserver creates the metrics, which observe every proxied request.
// They read the pools at scrape time through s.Pools, so reloads need no
// re-registration.
func (s *Server) newObserver() gateway.Observer {
	s.admin.metrics = metrics.New(s, s.events)
	return s.admin.metrics
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *metrics.Metrics { return s.admin.metrics }

// adminBackend is the admin API's view of the server.
type adminBackend struct{ *Server }

func (b adminBackend) Reload() error  { return b.Server.Reload(b.Config().File) }
func (b adminBackend) Draining() bool { return b.gw.Draining() }

// startAdmin opens the admin listener when server.admin is set. It refuses
// a TCP address that is not loopback when no token is configured, and
// generates a token for loopback TCP (see admin.ResolveToken); the token
// itself is never logged, only where it was written.
func (s *Server) startAdmin() error {
	sc := s.Config().Server
	if sc.Admin == "" {
		return nil
	}
	tok, err := admin.ResolveToken(admin.TokenConfig{
		Addr:       sc.Admin,
		File:       sc.AdminTokenFile,
		Env:        os.Getenv("DROVER_ADMIN_TOKEN"),
		RuntimeDir: sc.RuntimeDir,
	})
	if err != nil {
		return fmt.Errorf("server.admin: %w", err)
	}
	if tok.Generated != "" {
		s.log.Info("admin API token generated; clients on this machine read it from the file", "file", tok.Generated)
	}
	h := admin.New(admin.Options{
		Backend:  adminBackend{s},
		Services: serviceAdapter{s.services},
		Metrics:  s.admin.metrics,
		Token:    tok.Value,
		Logger:   s.log,
	})
	l, err := admin.Listen(sc.Admin, h, s.log)
	if err != nil {
		return fmt.Errorf("server.admin: %w", err)
	}
	s.admin.listener = l
	s.log.Info("admin API listening", "admin", l.Addr(), "token", tok.Value != "")
	return nil
}

// stopAdmin closes the admin listener.
func (s *Server) stopAdmin(ctx context.Context) {
	if s.admin.listener != nil {
		s.admin.listener.Shutdown(ctx)
		s.admin.listener = nil
	}
}

// serviceAdapter is the admin API's view of the service manager: it maps
// the manager's errors to the admin package's, which carry the statuses.
type serviceAdapter struct{ m *service.Manager }

func (a serviceAdapter) List() any {
	if a.m == nil {
		return []service.Info{}
	}
	return a.m.List()
}

func (a serviceAdapter) Start(ctx context.Context, name string, wait time.Duration) error {
	if a.m == nil {
		return mapServiceError(fmt.Errorf("service %q: %w", name, service.ErrNotFound))
	}
	return mapServiceError(a.m.StartService(ctx, name, wait))
}

func (a serviceAdapter) Stop(ctx context.Context, name string) error {
	if a.m == nil {
		return mapServiceError(fmt.Errorf("service %q: %w", name, service.ErrNotFound))
	}
	return mapServiceError(a.m.StopService(ctx, name))
}

// mapServiceError keeps the manager's message and adds the admin kind.
func mapServiceError(err error) error {
	if err == nil {
		return nil
	}
	for _, m := range []struct{ from, to error }{
		{service.ErrNotFound, admin.ErrNotFound},
		{service.ErrWaitTimeout, admin.ErrWaitTimeout},
		{service.ErrFailed, admin.ErrFailed},
		{service.ErrStopped, admin.ErrFailed},
		{service.ErrShutdown, admin.ErrUnavailable},
	} {
		if errors.Is(err, m.from) {
			return kindError{err, m.to}
		}
	}
	return err
}

// kindError is err, also matching kind with errors.Is.
type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }
