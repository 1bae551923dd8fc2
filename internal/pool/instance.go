package pool

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/drover-pool/drover/internal/backend"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/process"
)

type instState int

const (
	stateStarting instState = iota // process starting, not ready yet
	stateReady                     // taking requests
	stateDraining                  // no new requests; stops when the last one ends
	stateStopping                  // SIGTERM sent or about to be
	stateKilled                    // SIGKILL sent; waiting for the exit
	stateOrphaned                  // out of the pool, left running for a debugger
	stateDead                      // reaped and removed
)

var stateNames = [...]string{"starting", "ready", "draining", "stopping", "killed", "orphaned", "dead"}

func (s instState) String() string { return stateNames[s] }

// Instance is one worker process of a pool. Its exported methods are safe
// to call while holding a slot on it.
type Instance struct {
	pool    *Pool
	id      int
	started time.Time
	// ctx is cancelled by stopLocked (or the pool's hard stop): the run
	// goroutine then stops the process.
	ctx        context.Context
	cancelStop context.CancelFunc

	// Set by the run goroutine under pool.mu before the instance is ready;
	// read-only afterwards.
	pid  int
	proc *process.Process
	ep   backend.Endpoint

	// Guarded by pool.mu.
	state    instState
	inFlight int
	inFree   bool
	served   uint64
	lastUsed time.Time
	pinging  bool
	// recycleReason is set while the instance is queued for recycling.
	recycleReason string
	// threshold is the request count that recycles it; 0 = never.
	threshold uint64
	// readyCh receives true when the instance became ready, false when
	// it failed to start or was stopped first; buffered, sent once.
	readyCh chan bool
	// gone is closed once the process has been reaped.
	gone chan struct{}
}

// ID is the instance's number within its pool.
func (i *Instance) ID() int { return i.id }

// Pid is the instance's process id.
func (i *Instance) Pid() int { return i.pid }

// RoundTrip sends one request to the instance.
func (i *Instance) RoundTrip(req *http.Request) (*http.Response, error) {
	return i.ep.RoundTrip(req)
}

// Endpoint returns the instance's backend endpoint, for callers that
// reach the instance by their own means (the front end's event loops).
func (i *Instance) Endpoint() backend.Endpoint { return i.ep }

// Exited reports whether the instance's process is gone.
func (i *Instance) Exited() bool { return i.proc == nil || i.proc.Exited() }

// run owns one instance from spawn to reaping.
func (p *Pool) run(inst *Instance) {
	defer p.wg.Done()
	ep, proc, err := p.launch(inst)
	if err != nil {
		p.startFailed(inst, events.SpawnFailure, err)
		return
	}
	if proc == nil {
		p.runVirtual(inst, ep)
		return
	}
	p.events.Emit(events.Event{Kind: events.Spawn, Pool: p.name, PID: proc.Pid})

	// A stop request during startup ends the wait early.
	ctx, cancel := context.WithTimeout(inst.ctx, p.cfg.StartupTimeout.D())
	err = ep.WaitReady(ctx, proc.Done())
	cancel()
	if err != nil {
		stopping := p.isStopping(inst)
		proc.Kill()
		<-proc.Done()
		_ = ep.Close()
		if stopping {
			p.exited(inst, proc, true)
			return
		}
		if errors.Is(err, backend.ErrExited) {
			err = fmt.Errorf("%w: %s", err, proc.ExitString())
		} else if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("not ready within startup_timeout %s", p.cfg.StartupTimeout.D())
		}
		if hint := p.limitsHint(); hint != "" {
			err = fmt.Errorf("%w (%s)", err, hint)
		}
		p.startFailed(inst, events.StartupFailure, err)
		return
	}
	if !p.ready(inst) {
		proc.Stop(p.ctx, p.cfg.ShutdownTimeout.D())
		_ = ep.Close()
		p.exited(inst, proc, true)
		return
	}
	p.events.Emit(events.Event{Kind: events.Ready, Pool: p.name, PID: proc.Pid})

	requested := false
	select {
	case <-proc.Done():
	case <-inst.ctx.Done():
		requested = true
		// The instance has no request left; drop its kept-alive
		// connections first: a FastCGI app (php-cgi) blocked reading
		// one does not act on SIGTERM until it closes.
		_ = ep.Close()
		proc.Stop(p.ctx, p.cfg.ShutdownTimeout.D())
	}
	_ = ep.Close()
	p.exited(inst, proc, requested)
}

// launch prepares the endpoint and starts the process.
func (p *Pool) launch(inst *Instance) (backend.Endpoint, *process.Process, error) {
	ep, err := p.kind.NewEndpoint(inst.id)
	if err != nil {
		return nil, nil, err
	}
	spec := p.spec
	spec.Env = append([]string(nil), p.spec.Env...)
	if err := ep.Configure(&spec); err != nil {
		_ = ep.Close()
		return nil, nil, err
	}
	if _, ok := ep.(backend.Virtual); ok {
		p.mu.Lock()
		inst.ep = ep
		p.mu.Unlock()
		return ep, nil, nil
	}
	proc, err := process.Start(spec)
	ep.Started()
	if err != nil {
		_ = ep.Close()
		return nil, nil, err
	}
	p.mu.Lock()
	inst.pid, inst.proc, inst.ep = proc.Pid, proc, ep
	p.mu.Unlock()
	return ep, proc, nil
}

// runVirtual keeps a processless instance (a cgi slot) in rotation until
// it is stopped.
func (p *Pool) runVirtual(inst *Instance, ep backend.Endpoint) {
	if p.ready(inst) {
		<-inst.ctx.Done()
	}
	_ = ep.Close()
	p.mu.Lock()
	p.removeLocked(inst)
	p.ensureMinLocked()
	p.maybeSpawnLocked()
	p.unlock()
}

func (p *Pool) isStopping(inst *Instance) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return inst.state != stateStarting
}

// ready puts a started instance into rotation, handing its slots to the
// oldest waiters first. It reports false when the instance is no longer
// wanted (the pool stopped meanwhile).
func (p *Pool) ready(inst *Instance) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if inst.state != stateStarting {
		return false
	}
	p.starting--
	p.failures, p.lastErr = 0, nil
	inst.state = stateReady
	inst.started = p.now()
	inst.readyCh <- true
	inst.lastUsed = p.now()
	conc := p.cfg.InstanceConcurrency
	for inst.inFlight < conc {
		w := p.waiters.pop()
		if w == nil {
			break
		}
		inst.inFlight++
		w.ch <- result{inst: inst}
	}
	if inst.inFlight < conc {
		inst.inFree = true
		p.free = append(p.free, inst)
	}
	p.armIdleLocked()
	p.armHealthLocked()
	p.armRecycleTimerLocked()
	p.armMemoryLocked()
	p.armCPULocked()
	return true
}

// limitsHint names the limits that may have kept an instance from
// starting, for the startup failure's message.
func (p *Pool) limitsHint() string {
	var keys []string
	l := p.cfg.Limits
	if l.AddressSpace > 0 {
		keys = append(keys, "limits.address_space = "+l.AddressSpace.String())
	}
	if l.OpenFiles > 0 {
		keys = append(keys, "limits.open_files = "+strconv.Itoa(l.OpenFiles))
	}
	if len(keys) == 0 {
		return ""
	}
	return "pool " + strconv.Quote(p.name) + ": check whether " + strings.Join(keys, ", ") + " is too low for it to start"
}

// startFailed records a failed start and backs off. Waiters that nothing
// else will serve get ErrUnavailable rather than waiting out max_wait.
func (p *Pool) startFailed(inst *Instance, kind string, err error) {
	p.mu.Lock()
	defer p.unlock()
	p.emitLocked(events.Event{Kind: kind, PID: inst.pid, Detail: err.Error()})
	p.removeLocked(inst)
	if p.closed {
		return
	}
	p.failureLocked(kind)
	p.failures++
	p.lastErr = err
	p.retryAt = p.now().Add(backoff(p.failures))
	if p.servingCountLocked() == 0 {
		p.failWaitersLocked(fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	p.ensureMinLocked()
	p.maybeSpawnLocked()
}

// exited forgets a reaped instance and replaces it where the pool needs it.
func (p *Pool) exited(inst *Instance, proc *process.Process, requested bool) {
	p.mu.Lock()
	defer p.unlock()
	crashed := !requested && (inst.state == stateReady || inst.state == stateDraining)
	orphan := inst.state == stateOrphaned
	p.removeLocked(inst)
	if orphan {
		for i, x := range p.orphans {
			if x == inst {
				p.orphans = append(p.orphans[:i], p.orphans[i+1:]...)
				break
			}
		}
	}
	kind := events.Exit
	if crashed {
		kind = events.Crash
		p.failureLocked(kind)
	}
	p.emitLocked(events.Event{Kind: kind, PID: proc.Pid, Detail: proc.ExitString()})
	p.ensureMinLocked()
	p.maybeSpawnLocked()
}

// armIdleLocked arms the idle reaper when instances above min_instances
// exist. A pool at or below min_instances has no timer at all.
func (p *Pool) armIdleLocked() {
	d := p.cfg.IdleTimeout.D()
	if d <= 0 || p.idle != nil || p.closed || len(p.instances) <= p.cfg.MinInstances {
		return
	}
	p.idle = time.AfterFunc(d, p.reapIdle)
}

// reapIdle stops instances idle for idle_timeout, oldest-idle first, while
// the pool stays above min_instances, and re-arms for the next candidate.
func (p *Pool) reapIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = nil
	if p.closed {
		return
	}
	d := p.cfg.IdleTimeout.D()
	now := p.now()
	next := d
	for _, inst := range append([]*Instance(nil), p.instances...) {
		if p.servingCountLocked() <= p.cfg.MinInstances {
			break
		}
		if inst.state != stateReady || inst.inFlight > 0 {
			continue
		}
		idle := now.Sub(inst.lastUsed)
		if idle >= d {
			p.stopLocked(inst, "")
			continue
		}
		next = min(next, d-idle)
	}
	if p.servingCountLocked() > p.cfg.MinInstances {
		p.idle = time.AfterFunc(next, p.reapIdle)
	}
}

// result is what a waiter receives: a slot or the reason there is none.
type result struct {
	inst *Instance
	err  error
}

// waiter is one request queued for a slot. Guarded by pool.mu, except ch.
type waiter struct {
	ch         chan result // buffered: the sender never blocks under the lock
	prev, next *waiter
	queued     bool
}

func newWaiter() *waiter { return &waiter{ch: make(chan result, 1)} }

// waitList is the FIFO of waiters, an intrusive list so that a waiter that
// gives up leaves in O(1).
type waitList struct {
	head, tail *waiter
	n          int
}

func (l *waitList) push(w *waiter) {
	w.queued = true
	w.prev = l.tail
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	l.n++
}

func (l *waitList) pop() *waiter {
	w := l.head
	if w != nil {
		l.remove(w)
	}
	return w
}

func (l *waitList) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	l.n--
}
