// Package service supervises drover's background services: processes that
// serve no routed requests (an indexer, a queue consumer, a tile seeder),
// configured as [service.NAME] tables.
//
// A Manager owns every service of one configuration. Services with
// start = "always" are started by Start; on-demand ones only through
// StartService (the admin API's POST /services/{name}/start). Each running
// service has exactly one supervisor goroutine, owned by the Manager's
// WaitGroup, that spawns the process through internal/process, waits for
// its readiness rule, then blocks on process.Done until the process exits
// or is asked to stop: exits are seen the instant they happen, and a
// stopped or failed service costs no goroutine, timer or polling at all.
//
// After an exit the supervisor applies the restart policy (always,
// on-failure, never) with an exponential Backoff, and rapid-fail
// protection: max_failures failures within rapid_fail.interval mark the
// service failed, and it is not restarted until an operator acts.
//
// States (Info.State):
//
//	stopped   no process; nothing scheduled
//	starting  spawned (or about to be), readiness rule not yet met
//	running   up; the service has no readiness rule (ready = "")
//	ready     up; its readiness rule (tcp:, unix:, notify) was met
//	backoff   exited, waiting out the backoff before the next restart
//	stopping  asked to stop: SIGTERM sent, SIGKILL at shutdown_timeout
//	failed    rapid-fail protection tripped; not restarted
//
// A failed service stays failed on purpose: restarting it on every start
// request would turn rapid-fail protection into a crash loop driven by
// whoever polls the admin API. StartService answers ErrFailed (HTTP 409)
// until StopService clears it to stopped; "started again" means stop, then
// start, which also begins a fresh rapid-fail window.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/process"
)

// State is a service's state; see the package documentation.
type State string

// Service states.
const (
	StateStopped  State = "stopped"
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateReady    State = "ready"
	StateBackoff  State = "backoff"
	StateStopping State = "stopping"
	StateFailed   State = "failed"
)

// up reports whether a service in state st counts as started.
func (st State) up() bool { return st == StateRunning || st == StateReady }

// EventRestart is the event kind of an automatic restart; the events
// package's set of kinds is open, and this one is the services' own.
const EventRestart = "restart"

// Errors of the Manager's operations, always wrapped with the service's
// name. The admin API maps them to HTTP answers as noted.
var (
	// ErrNotFound: no service of that name (404).
	ErrNotFound = errors.New("no such service")
	// ErrFailed: rapid-fail protection stopped the service; stop it to
	// clear the state, then start it again (409).
	ErrFailed = errors.New("failed (rapid-fail protection): stop it, then start it again")
	// ErrWaitTimeout: the service was not ready within the wait; the start
	// goes on (408).
	ErrWaitTimeout = errors.New("wait-timeout")
	// ErrStopped: the service stopped (its process ended and the restart
	// policy did not restart it, or someone stopped it) before it was
	// ready.
	ErrStopped = errors.New("stopped before it was ready")
	// ErrShutdown: the Manager has been shut down (503).
	ErrShutdown = errors.New("services are shut down")
)

// Option adjusts a Manager.
type Option func(*Manager)

// WithBackoff replaces DefaultBackoff (tests use short pauses).
func WithBackoff(b Backoff) Option { return func(m *Manager) { m.backoff = b } }

// WithNotifyDir sets the directory under which ready = "notify" sockets are
// created; the server passes its runtime_dir. The default is the system
// temporary directory. Keep it short: a unix socket path has at most 107
// bytes.
func WithNotifyDir(dir string) Option { return func(m *Manager) { m.notifyDir = dir } }

// WithCgroup gives the Manager a way to put a service in a cgroup for its
// limits.memory, limits.pids and throttled limits.cpu: place returns an
// open cgroup directory for the service, or ok = false when its limits
// need none. The server passes one backed by its delegated hierarchy, and
// refuses services whose limits it cannot honour.
func WithCgroup(place func(service string, limits config.Limits) (fd int, ok bool, err error)) Option {
	return func(m *Manager) { m.cgroup = place }
}

// Info describes one service at a moment.
type Info struct {
	Name    string `json:"name"`
	State   State  `json:"state"`
	Start   string `json:"start"`   // always | on-demand
	Restart string `json:"restart"` // always | on-failure | never
	Ready   string `json:"ready,omitempty"`
	// PID of the current process; 0 when there is none.
	PID int `json:"pid,omitempty"`
	// Started is when the current process was spawned; zero when none.
	Started time.Time `json:"started,omitzero"`
	// Uptime is how long the current process has run (for Go callers;
	// JSON clients compute it from Started, as for pool instances).
	Uptime time.Duration `json:"-"`
	// Since is when the service entered State.
	Since time.Time `json:"since"`
	// Restarts counts automatic restarts since the Manager was created.
	Restarts int `json:"restarts"`
	// LastExit is how the last process ended: "exit status 3",
	// "signal: killed".
	LastExit string `json:"last_exit,omitempty"`
	// LastError is the last spawn or readiness failure, if any since the
	// service was last ready.
	LastError string `json:"last_error,omitempty"`
}

// Manager owns all services of one configuration. Create it with
// NewManager; its methods are safe for concurrent use.
type Manager struct {
	events    *events.Log
	log       *slog.Logger
	backoff   Backoff
	notifyDir string
	rnd       func() float64
	cgroup    func(string, config.Limits) (int, bool, error) // WithCgroup; may be nil

	services map[string]*service // fixed after NewManager
	names    []string            // sorted

	// hard is cancelled when Shutdown's context ends first: every stop
	// still in its SIGTERM grace period becomes an immediate SIGKILL.
	hard       context.Context
	hardCancel context.CancelFunc
	wg         sync.WaitGroup // the supervisors

	mu     sync.Mutex // guards closed, order and every service's guarded fields
	closed bool       // Shutdown has begun
	order  []string   // services with a run, in the order the runs began
}

// service is one [service.NAME]; the fields after mu's comment are
// guarded by Manager.mu.
type service struct {
	name  string
	cfg   *config.Service
	spec  process.Spec
	ready readyRule

	// guarded by Manager.mu
	state    State
	since    time.Time
	pid      int
	started  time.Time
	restarts int
	lastExit string
	lastErr  string
	readyGen uint64 // incremented each time a process becomes ready
	run      *run   // the supervisor's run; nil when stopped or failed
	window   failureWindow
	changed  chan struct{} // closed and replaced on every change; wakes StartService
}

// run is one supervisor's life: from a start until the service is stopped
// or fails. Its processes (one after another, across restarts) all belong
// to it.
type run struct {
	ctx         context.Context // cancelled to wake the supervisor for a stop
	cancel      context.CancelFunc
	stopping    bool   // a stop was asked; guarded by Manager.mu
	reason      string // why; guarded by Manager.mu
	spawned     chan struct{}
	spawnedOnce sync.Once
	done        chan struct{} // closed when the supervisor has returned
}

func (r *run) markSpawned() { r.spawnedOnce.Do(func() { close(r.spawned) }) }

// NewManager prepares the services of cfgs (keyed by name, as in
// config.Config.Services). It starts nothing; call Start. ev and log may
// be nil.
func NewManager(cfgs map[string]*config.Service, ev *events.Log, log *slog.Logger, opts ...Option) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ev == nil {
		ev = events.New(nil, 256)
	}
	m := &Manager{
		events:   ev,
		log:      log,
		backoff:  DefaultBackoff,
		rnd:      rand.Float64,
		services: make(map[string]*service, len(cfgs)),
	}
	for _, o := range opts {
		o(m)
	}
	m.hard, m.hardCancel = context.WithCancel(context.Background())
	var errs []error
	for name, cfg := range cfgs {
		s, err := newService(name, cfg, log)
		if err == nil && m.cgroup != nil {
			var fd int
			var ok bool
			if fd, ok, err = m.cgroup(name, cfg.Limits); ok {
				s.spec.UseCgroupFD, s.spec.CgroupFD = true, fd
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", name, err))
			continue
		}
		m.services[name] = s
		m.names = append(m.names, name)
	}
	if err := errors.Join(errs...); err != nil {
		m.hardCancel()
		return nil, err
	}
	sort.Strings(m.names)
	return m, nil
}

func newService(name string, cfg *config.Service, log *slog.Logger) (*service, error) {
	if cfg == nil {
		return nil, errors.New("no configuration")
	}
	if len(cfg.Command) == 0 {
		return nil, errors.New("command: required")
	}
	if cfg.Start != "always" && cfg.Start != "on-demand" {
		return nil, fmt.Errorf("start %q: want always or on-demand", cfg.Start)
	}
	switch cfg.Restart {
	case "always", "on-failure", "never":
	default:
		return nil, fmt.Errorf("restart %q: want always, on-failure or never", cfg.Restart)
	}
	rule, err := parseReady(cfg.Ready)
	if err != nil {
		return nil, err
	}
	spec, err := baseSpec(name, cfg, log)
	if err != nil {
		return nil, err
	}
	return &service{
		name:    name,
		cfg:     cfg,
		spec:    spec,
		ready:   rule,
		state:   StateStopped,
		since:   time.Now(),
		window:  failureWindow{max: cfg.RapidFail.MaxFailures, interval: cfg.RapidFail.Interval.D()},
		changed: make(chan struct{}),
	}, nil
}

// Start starts the services with start = "always", in name order, and
// records that order: Shutdown stops services in reverse. It waits for each
// process to be spawned before starting the next, so that spawn order is
// start order, but not for readiness. A spawn failure is not returned: the
// supervisor retries it with backoff, as it would a crash, and reports it
// as an event and in Info.LastError.
func (m *Manager) Start(ctx context.Context) error {
	for _, name := range m.names {
		s := m.services[name]
		if s.cfg.Start != "always" {
			continue
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return fmt.Errorf("service %q: start: %w", name, ErrShutdown)
		}
		var r *run
		if s.run == nil && s.state != StateFailed {
			r = m.startLocked(s)
		}
		m.mu.Unlock()
		if r == nil {
			continue
		}
		select {
		case <-r.spawned:
		case <-ctx.Done():
			return fmt.Errorf("service %q: start: %w", name, ctx.Err())
		}
	}
	return nil
}

// StartService starts the named service if it has no run yet and returns
// nil once it is up (running, or ready by its ready rule). When wait passes
// first it returns ErrWaitTimeout and the start goes on; wait <= 0 returns
// as soon as the start is under way. A service that is still stopping is
// started again once its stop completes. Errors: ErrNotFound, ErrFailed (a
// failed service must be stopped first), ErrStopped (its process ended for
// good before it was ready), ErrShutdown, or ctx's error.
func (m *Manager) StartService(ctx context.Context, name string, wait time.Duration) error {
	s, ok := m.services[name]
	if !ok {
		return fmt.Errorf("service %q: %w", name, ErrNotFound)
	}
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	var mine *run  // the run this call started or joined
	var gen uint64 // readyGen when it did
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return fmt.Errorf("service %q: start: %w", name, ErrShutdown)
		}
		if mine == nil {
			switch {
			case s.state == StateFailed:
				m.mu.Unlock()
				return fmt.Errorf("service %q: start: %w", name, ErrFailed)
			case s.run == nil:
				mine, gen = m.startLocked(s), s.readyGen
			case s.state != StateStopping:
				mine, gen = s.run, s.readyGen
				if s.state.up() {
					m.mu.Unlock()
					return nil
				}
			}
		} else if s.run != mine {
			st, why := s.state, s.whyLocked()
			m.mu.Unlock()
			if st == StateFailed {
				return fmt.Errorf("service %q: start: %w%s", name, ErrFailed, why)
			}
			return fmt.Errorf("service %q: start: %w%s", name, ErrStopped, why)
		}
		if mine != nil && s.readyGen > gen {
			m.mu.Unlock()
			return nil
		}
		ch, st, why := s.changed, s.state, s.whyLocked()
		m.mu.Unlock()
		if mine != nil && wait <= 0 {
			return nil
		}
		select {
		case <-ch:
		case <-timeout:
			return fmt.Errorf("service %q: start: %w: not ready after %s (state %s%s)", name, ErrWaitTimeout, wait, st, why)
		case <-ctx.Done():
			return fmt.Errorf("service %q: start: %w", name, ctx.Err())
		}
	}
}

// whyLocked summarizes the last failure for an error message.
func (s *service) whyLocked() string {
	switch {
	case s.lastErr != "":
		return "; last error: " + s.lastErr
	case s.lastExit != "":
		return "; last exit: " + s.lastExit
	}
	return ""
}

// StopService stops the named service: SIGTERM to its process group, then
// SIGKILL after shutdown_timeout. It returns once the process has been
// reaped, or with ctx's error when ctx ends first (the stop goes on). A
// failed service is cleared to stopped, so that it can be started again.
// Stopping a stopped service does nothing.
func (m *Manager) StopService(ctx context.Context, name string) error {
	s, ok := m.services[name]
	if !ok {
		return fmt.Errorf("service %q: %w", name, ErrNotFound)
	}
	m.mu.Lock()
	if s.state == StateFailed {
		s.window.reset()
		m.setStateLocked(s, StateStopped)
		m.mu.Unlock()
		m.emit(events.Stop, s, 0, "admin", "failed state cleared")
		return nil
	}
	r, first := m.stopLocked(s, "admin")
	m.mu.Unlock()
	if r == nil {
		return nil
	}
	if first {
		m.stop(s, r, "admin")
	}
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("service %q: stop: %w", name, ctx.Err())
	}
}

// Shutdown stops every service in the reverse of the order in which they
// were started, one after another, each within its shutdown_timeout:
// a service started later may depend on one started earlier, which must
// outlive it. No service is restarted once Shutdown has begun. When ctx
// ends first, the remaining processes are killed at once and ctx's error
// is returned; either way every process has been reaped on return.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	order := slices.Clone(m.order)
	m.mu.Unlock()
	var err error
	for i := len(order) - 1; i >= 0; i-- {
		s := m.services[order[i]]
		m.mu.Lock()
		r, first := m.stopLocked(s, "shutdown")
		m.mu.Unlock()
		if r == nil {
			continue
		}
		if first {
			m.stop(s, r, "shutdown")
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("services: shutdown: %w; remaining services killed", ctx.Err())
			}
			m.hardCancel()
			<-r.done
		}
	}
	m.hardCancel()
	m.wg.Wait()
	return err
}

// List returns every service, sorted by name.
func (m *Manager) List() []Info {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Info, 0, len(m.names))
	for _, name := range m.names {
		s := m.services[name]
		info := Info{
			Name:      name,
			State:     s.state,
			Start:     s.cfg.Start,
			Restart:   s.cfg.Restart,
			Ready:     s.cfg.Ready,
			PID:       s.pid,
			Started:   s.started,
			Since:     s.since,
			Restarts:  s.restarts,
			LastExit:  s.lastExit,
			LastError: s.lastErr,
		}
		if !s.started.IsZero() {
			info.Uptime = now.Sub(s.started)
		}
		out = append(out, info)
	}
	return out
}

// startLocked begins a run of s and its supervisor. The caller has checked
// that s has no run and that the Manager is not closed.
func (m *Manager) startLocked(s *service) *run {
	r := &run{spawned: make(chan struct{}), done: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	s.run = r
	s.window.reset()
	m.setStateLocked(s, StateStarting)
	m.order = append(slices.DeleteFunc(m.order, func(n string) bool { return n == s.name }), s.name)
	m.wg.Add(1)
	go m.supervise(s, r)
	return r
}

// stopLocked marks s's run as stopping. It returns the run to wait for
// (nil when there is none) and whether this call was the first to ask; the
// first asker must then call stop, outside the lock.
func (m *Manager) stopLocked(s *service, reason string) (*run, bool) {
	r := s.run
	if r == nil {
		return nil, false
	}
	first := !r.stopping
	if first {
		r.stopping, r.reason = true, reason
	}
	if s.state != StateStopping {
		m.setStateLocked(s, StateStopping)
	}
	return r, first
}

// stop records the stop event, then wakes the supervisor: in that order,
// so that the event log always shows the stop before the exit it causes.
func (m *Manager) stop(s *service, r *run, reason string) {
	m.emit(events.Stop, s, 0, reason, "")
	r.cancel()
}

// setStateLocked changes s's state and wakes whoever waits for a change.
func (m *Manager) setStateLocked(s *service, st State) {
	s.state = st
	s.since = time.Now()
	close(s.changed)
	s.changed = make(chan struct{})
}

func (m *Manager) emit(kind string, s *service, pid int, reason, detail string) {
	m.events.Emit(events.Event{Kind: kind, Service: s.name, PID: pid, Reason: reason, Detail: detail})
}
