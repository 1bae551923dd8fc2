// Package pool runs one application pool: its instances (worker
// processes), their slots, and the FIFO queue of requests waiting for a
// slot.
//
// The model is IIS's application pool and ArcGIS Server's instance pool.
// A request calls Acquire and gets an Instance with a free slot, or waits in
// the pool's single FIFO queue; while requests wait and the pool is below
// max_instances, an instance is started for them. A slot that is released
// goes straight to the oldest waiter, so there is no thundering herd and no
// request overtakes another. Release must be called exactly once for every
// successful Acquire.
//
// Everything mutable in a Pool is owned by the Pool and guarded by its one
// mutex; there is no lock shared between pools, and no I/O happens under
// the lock. Each instance has one goroutine (run) that starts its process,
// waits for readiness, and then blocks until the process exits or is asked
// to stop; the Pool's WaitGroup owns those goroutines.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/drover-pool/drover/internal/backend"
	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/process"
)

// The reasons a request gets no slot. The gateway maps them to drover's own
// HTTP answers; the texts are the Drover-Error reasons of the contract.
var (
	ErrQueueFull   = errors.New("queue-full")
	ErrWaitTimeout = errors.New("wait-timeout")
	ErrStopped     = errors.New("pool-stopped")
	// ErrUnavailable means no instance could be started for the request.
	ErrUnavailable = errors.New("no instance could be started")
)

// State is a pool's state.
type State string

// Pool states.
const (
	Running State = "running"
	Stopped State = "stopped"
)

// Options are what a Pool needs besides its config.
type Options struct {
	Config *config.Pool
	Kind   backend.Kind
	Events *events.Log
	Logger *slog.Logger
	// Clock is the time source of recycle.interval and recycle.schedule;
	// nil is the real clock. Tests inject their own.
	Clock Clock
	// MemoryInterval is how often recycle.memory samples RSS; 0 is 5s.
	MemoryInterval time.Duration
	// CPUWindow is the window over which limits.cpu is measured for
	// cpu_action "kill" and "log"; 0 is 5s.
	CPUWindow time.Duration
	// CgroupFD, when >= 0 and Cgroup is set, is the pool's cgroup
	// directory: instances are created in it.
	Cgroup   bool
	CgroupFD int
}

// Pool is one application pool. Create it with New, then call Start.
type Pool struct {
	name   string
	cfg    *config.Pool
	kind   backend.Kind
	events *events.Log
	log    *slog.Logger
	now    func() time.Time
	clock  Clock
	spec   process.Spec // template for every instance's process
	// memInterval is the RSS sampling period for recycle.memory.
	memInterval time.Duration
	// cpuWindow is the measuring window of limits.cpu kill/log.
	cpuWindow time.Duration

	ctx    context.Context // cancelled by Shutdown: ends startups and backoff
	cancel context.CancelFunc
	wg     sync.WaitGroup // the instances' run goroutines

	mu        sync.Mutex // guards everything below, and Instance's guarded fields
	state     State
	closed    bool // Shutdown has begun
	activated bool // min_instances are kept (start=always, or after a first request)
	instances []*Instance
	free      []*Instance // ready instances with a free slot; most recently used last
	waiters   waitList
	starting  int // instances in stateStarting
	nextID    int
	failures  int // consecutive startup failures, for backoff
	lastErr   error
	retryAt   time.Time   // no spawn before this (backoff)
	retry     *time.Timer // wakes maybeSpawn after backoff
	idle      *time.Timer // reaps idle instances; nil when not armed
	health    *time.Timer // next round of pings; nil when not armed

	stopReason string         // why state is Stopped: "admin", "rapid-fail"
	failTimes  []time.Time    // failures within rapid_fail.interval
	orphans    []*Instance    // hung instances left running for a debugger
	pending    []events.Event // emitted by unlock

	recycleQ     []*Instance   // instances waiting to be replaced, in order
	recycling    bool          // the recycler goroutine runs
	recycleTimer Timer         // next interval/schedule check; nil when not armed
	nextSched    time.Time     // next recycle.schedule time
	memTimer     *time.Timer   // next RSS sample; nil when not armed
	quiet        chan struct{} // closed when Drain's wait is over
	cpuTimer     *time.Timer   // next CPU sample; nil when not armed
	cpuLast      map[int]int64 // CPU ticks per instance pid at the last sample
}

// New creates a pool. It starts nothing; call Start.
func New(o Options) (*Pool, error) {
	cfg := o.Config
	p := &Pool{
		name:   cfg.Name,
		cfg:    cfg,
		kind:   o.Kind,
		events: o.Events,
		log:    o.Logger,
		clock:  o.Clock,
		state:  Running,

		memInterval: o.MemoryInterval,
	}
	if p.clock == nil {
		p.clock = realClock{}
	}
	p.now = p.clock.Now
	if p.memInterval <= 0 {
		p.memInterval = 5 * time.Second
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.events == nil {
		p.events = events.New(nil, 16)
	}
	spec, err := baseSpec(cfg, p.log)
	if err != nil {
		return nil, fmt.Errorf("pool %q: %w", p.name, err)
	}
	if o.Cgroup {
		spec.UseCgroupFD, spec.CgroupFD = true, o.CgroupFD
	}
	p.spec = spec
	p.cpuWindow = o.CPUWindow
	if p.cpuWindow <= 0 {
		p.cpuWindow = 5 * time.Second
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// baseSpec builds the process template: command, clean environment,
// identity and limits.
func baseSpec(cfg *config.Pool, log *slog.Logger) (process.Spec, error) {
	spec := process.Spec{
		Args: append([]string(nil), cfg.Command...),
		Dir:  cfg.Dir,
		Output: func(stream, line string) {
			log.Info(line, "pool", cfg.Name, "stream", stream)
		},
	}
	spec.Limits = process.Limits{
		AddressSpace: int64(cfg.Limits.AddressSpace),
		OpenFiles:    cfg.Limits.OpenFiles,
		Nice:         cfg.Limits.Nice,
		CPUs:         cfg.Limits.CPUAffinity,
	}
	if err := process.SetIdentity(&spec, cfg.User, cfg.Group, cfg.Env); err != nil {
		return spec, err
	}
	return spec, nil
}

// Name returns the pool's name.
func (p *Pool) Name() string { return p.name }

// Config returns the pool's configuration. It must not be modified.
func (p *Pool) Config() *config.Pool { return p.cfg }

// Start brings the pool up: with start = "always" its min_instances are
// started now; with "on-demand" nothing starts until a request comes.
func (p *Pool) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Start == "always" {
		p.activated = true
		p.ensureMinLocked()
	}
}

// Acquire returns an instance with a slot reserved for the caller, waiting
// in FIFO order when none is free. The caller must call Release (or Kill
// then Release) exactly once. Errors are ErrQueueFull, ErrWaitTimeout,
// ErrStopped, ErrUnavailable (wrapped), or ctx's error.
func (p *Pool) Acquire(ctx context.Context) (*Instance, error) {
	p.mu.Lock()
	if p.state != Running || p.closed {
		p.mu.Unlock()
		return nil, ErrStopped
	}
	if inst := p.takeFreeLocked(); inst != nil {
		p.mu.Unlock()
		return inst, nil
	}
	if p.waiters.n >= p.cfg.QueueLength && p.backlogLocked() >= p.cfg.QueueLength {
		p.mu.Unlock()
		return nil, ErrQueueFull
	}
	if p.lastErr != nil && p.starting == 0 && p.readyCountLocked() == 0 && p.now().Before(p.retryAt) {
		// The command cannot start and nothing else can serve: answer
		// now rather than queue for a spawn that is backing off.
		err := p.lastErr
		p.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !p.activated {
		p.activated = true
	}
	w := newWaiter()
	p.waiters.push(w)
	p.maybeSpawnLocked()
	p.mu.Unlock()

	var timeout <-chan time.Time
	if d := p.cfg.MaxWait.D(); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case r := <-w.ch:
		return r.inst, r.err
	case <-ctx.Done():
		return nil, p.abandon(w, ctx.Err())
	case <-timeout:
		return nil, p.abandon(w, ErrWaitTimeout)
	}
}

// TryAcquire reserves a slot on an instance that has one free now, without
// waiting and without starting anything: nil when the pool is not running,
// no slot is free, or requests are already waiting (a slot that frees goes
// to them first, so FIFO order holds). The caller owes Release as after
// Acquire. The front end's event loops use it; whatever gets nil takes
// the Acquire path.
func (p *Pool) TryAcquire() *Instance {
	p.mu.Lock()
	var inst *Instance
	if p.state == Running && !p.closed {
		inst = p.takeFreeLocked()
	}
	p.mu.Unlock()
	return inst
}

// takeFreeLocked reserves a slot on a free instance, if there is one.
// Free slots exist only while nobody waits: Release hands a slot to the
// oldest waiter directly.
func (p *Pool) takeFreeLocked() *Instance {
	n := len(p.free)
	if n == 0 {
		return nil
	}
	inst := p.free[n-1]
	inst.inFlight++
	if inst.inFlight >= p.cfg.InstanceConcurrency {
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		inst.inFree = false
	}
	return inst
}

// backlogLocked is how many waiting requests no instance is on its way
// for: queue_length bounds these, not the requests that instances
// starting now, or that can still be started, will take.
func (p *Pool) backlogLocked() int {
	coming := p.starting
	if !p.now().Before(p.retryAt) {
		coming += max(p.cfg.MaxInstances-len(p.instances), 0)
	}
	return p.waiters.n - coming*p.cfg.InstanceConcurrency
}

// abandon takes a waiter out of the queue after its caller gave up. If a
// slot was handed to it in the meantime, the slot is passed on.
func (p *Pool) abandon(w *waiter, err error) error {
	p.mu.Lock()
	if w.queued {
		p.waiters.remove(w)
		if p.quiet != nil {
			p.noteQuietLocked()
		}
		p.mu.Unlock()
		return err
	}
	p.mu.Unlock()
	if r := <-w.ch; r.inst != nil {
		p.Release(r.inst)
	}
	return err
}

// Release gives back the slot reserved by Acquire.
func (p *Pool) Release(inst *Instance) {
	p.mu.Lock()
	inst.served++
	inst.lastUsed = p.now()
	if inst.threshold > 0 && inst.served >= inst.threshold && inst.state == stateReady {
		p.queueRecycleLocked(inst, "requests")
	}
	if inst.state == stateReady {
		if w := p.waiters.pop(); w != nil {
			// Straight to the oldest waiter; the slot stays taken.
			w.ch <- result{inst: inst}
			p.mu.Unlock()
			return
		}
		inst.inFlight--
		if !inst.inFree {
			inst.inFree = true
			p.free = append(p.free, inst)
		}
		if p.quiet != nil {
			p.noteQuietLocked()
		}
		p.unlock()
		return
	}
	inst.inFlight--
	if inst.state == stateDraining && inst.inFlight == 0 {
		p.stopLocked(inst, "")
	}
	if p.quiet != nil {
		p.noteQuietLocked()
	}
	p.unlock()
}

// Shutdown stops the pool for good: waiting requests get ErrStopped, every
// instance is stopped (SIGTERM, then SIGKILL after shutdown_timeout or when
// ctx ends), and Shutdown returns when every process is reaped.
func (p *Pool) Shutdown(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	p.failWaitersLocked(ErrStopped)
	p.stopTimersLocked()
	for _, inst := range p.instances {
		p.stopLocked(inst, "")
	}
	for _, inst := range p.orphans {
		// Orphans were kept for debugging while drover ran; they do
		// not outlive it.
		inst.proc.Kill()
	}
	p.unlock()
	stop := context.AfterFunc(ctx, p.cancel)
	defer stop()
	p.wg.Wait()
	p.cancel()
}

func (p *Pool) stopTimersLocked() {
	if p.idle != nil {
		p.idle.Stop()
		p.idle = nil
	}
	if p.retry != nil {
		p.retry.Stop()
		p.retry = nil
	}
	if p.health != nil {
		p.health.Stop()
		p.health = nil
	}
	if p.recycleTimer != nil {
		p.recycleTimer.Stop()
		p.recycleTimer = nil
	}
	if p.memTimer != nil {
		p.memTimer.Stop()
		p.memTimer = nil
	}
	if p.cpuTimer != nil {
		p.cpuTimer.Stop()
		p.cpuTimer = nil
	}
}

func (p *Pool) failWaitersLocked(err error) {
	for w := p.waiters.pop(); w != nil; w = p.waiters.pop() {
		w.ch <- result{err: err}
	}
	if p.quiet != nil {
		p.noteQuietLocked()
	}
}

func (p *Pool) readyCountLocked() int {
	n := 0
	for _, inst := range p.instances {
		if inst.state == stateReady {
			n++
		}
	}
	return n
}

// serving counts instances that are or will be serving: starting or ready.
func (p *Pool) servingCountLocked() int {
	return p.starting + p.readyCountLocked()
}

// maybeSpawnLocked starts instances for waiters that the instances already
// starting will not cover, up to max_instances processes.
func (p *Pool) maybeSpawnLocked() {
	if p.closed || p.state != Running {
		return
	}
	conc := p.cfg.InstanceConcurrency
	for p.waiters.n > p.starting*conc && len(p.instances) < p.cfg.MaxInstances {
		if !p.spawnAllowedLocked() {
			return
		}
		p.spawnLocked()
	}
}

// ensureMinLocked keeps min_instances serving once the pool is activated.
func (p *Pool) ensureMinLocked() {
	if p.closed || p.state != Running || !p.activated {
		return
	}
	for p.servingCountLocked() < p.cfg.MinInstances && len(p.instances) < p.cfg.MaxInstances {
		if !p.spawnAllowedLocked() {
			return
		}
		p.spawnLocked()
	}
}

// spawnAllowedLocked applies the startup-failure backoff; when a spawn
// must wait, it arms one timer to try again.
func (p *Pool) spawnAllowedLocked() bool {
	now := p.now()
	if !now.Before(p.retryAt) {
		return true
	}
	if p.retry == nil {
		p.retry = time.AfterFunc(p.retryAt.Sub(now), func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.retry = nil
			p.ensureMinLocked()
			p.maybeSpawnLocked()
		})
	}
	return false
}

// backoff is the pause after n consecutive startup failures: 100ms
// doubling to 10s, with jitter so that pools do not retry in step.
func backoff(n int) time.Duration {
	d := 100 * time.Millisecond << min(n-1, 7)
	d = min(d, 10*time.Second)
	return d/2 + rand.N(d/2+1)
}

func (p *Pool) spawnLocked() *Instance {
	p.nextID++
	inst := &Instance{
		pool:      p,
		id:        p.nextID,
		state:     stateStarting,
		started:   p.now(),
		threshold: p.requestThreshold(),
		readyCh:   make(chan bool, 1),
		gone:      make(chan struct{}),
	}
	inst.ctx, inst.cancelStop = context.WithCancel(p.ctx)
	p.instances = append(p.instances, inst)
	p.starting++
	p.wg.Add(1)
	go p.run(inst)
	return inst
}

// retireLocked takes inst out of rotation: no new slots go to it.
func (p *Pool) retireLocked(inst *Instance) {
	if inst.inFree {
		for i, f := range p.free {
			if f == inst {
				p.free = append(p.free[:i], p.free[i+1:]...)
				break
			}
		}
		inst.inFree = false
	}
	if inst.state == stateStarting {
		// It leaves the starting state without becoming ready.
		p.starting--
		inst.readyCh <- false
	}
}

// stopLocked asks an instance to stop gracefully once it has no request in
// flight; it drains until then. reason, when set, is recorded as an event.
func (p *Pool) stopLocked(inst *Instance, reason string) {
	switch inst.state {
	case stateDead, stateKilled, stateStopping, stateOrphaned:
		return
	}
	p.retireLocked(inst)
	if inst.inFlight > 0 && !p.closed {
		inst.state = stateDraining
		return
	}
	inst.state = stateStopping
	inst.cancelStop()
}

// removeLocked forgets a dead instance.
func (p *Pool) removeLocked(inst *Instance) {
	if inst.state == stateDead {
		return
	}
	p.retireLocked(inst)
	inst.state = stateDead
	inst.cancelStop()
	close(inst.gone)
	for i, x := range p.instances {
		if x == inst {
			p.instances = append(p.instances[:i], p.instances[i+1:]...)
			break
		}
	}
}

// Owner returns the uid and gid the pool's instances run as, when the
// pool names a user or group.
func (p *Pool) Owner() (uid, gid int, ok bool) {
	if c := p.spec.Credential; c != nil {
		return int(c.Uid), int(c.Gid), true
	}
	return 0, 0, false
}
