package pool

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/process"
)

// Supervision: failures and rapid-fail protection, health pings of idle
// instances, orphaning, and the admin's start and stop. Like the rest of
// the pool, all of it is guarded by Pool.mu; events are queued under the
// lock and emitted after it (unlock), because emitting writes a log.

// emitLocked queues an event to be emitted by unlock.
func (p *Pool) emitLocked(e events.Event) {
	e.Pool = p.name
	if e.Time.IsZero() {
		e.Time = p.now()
	}
	p.pending = append(p.pending, e)
}

// unlock releases p.mu and then emits the queued events.
func (p *Pool) unlock() {
	evs := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, e := range evs {
		p.events.Emit(e)
	}
}

// countsAsFailure says which events count toward rapid-fail protection:
// crashes, startup failures, failed pings and CPU kills, as in IIS. A
// request timeout is the request's fault as much as the worker's.
func countsAsFailure(kind string) bool {
	switch kind {
	case events.Crash, events.StartupFailure, events.SpawnFailure, events.PingFailure, events.CPUKill:
		return true
	}
	return false
}

// failureLocked records one failure and stops the pool when rapid_fail's
// max_failures are reached within its interval.
func (p *Pool) failureLocked(kind string) {
	if !countsAsFailure(kind) || p.closed || p.state != Running {
		return
	}
	rf := p.cfg.RapidFail
	if rf.MaxFailures <= 0 {
		return
	}
	now := p.now()
	keep := p.failTimes[:0]
	for _, t := range p.failTimes {
		if rf.Interval <= 0 || now.Sub(t) < rf.Interval.D() {
			keep = append(keep, t)
		}
	}
	p.failTimes = append(keep, now)
	if len(p.failTimes) >= rf.MaxFailures {
		p.emitLocked(events.Event{Kind: events.RapidFail, Reason: kind,
			Detail: strconv.Itoa(len(p.failTimes)) + " failures within " + rf.Interval.D().String() + "; pool stopped until started again"})
		p.stopPoolLocked("rapid-fail")
	}
}

// stopPoolLocked takes the pool out of service: waiters and new requests
// get ErrStopped, instances stop once their requests are done.
func (p *Pool) stopPoolLocked(reason string) {
	p.state = Stopped
	p.stopReason = reason
	p.failWaitersLocked(ErrStopped)
	p.stopTimersLocked()
	for _, inst := range p.instances {
		p.stopLocked(inst, reason)
	}
}

// StopPool stops the pool on an admin's request: its instances stop, and
// requests get 503 pool-stopped (or a reset) until StartPool.
func (p *Pool) StopPool() {
	p.mu.Lock()
	if p.state == Running && !p.closed {
		p.stopPoolLocked("admin")
		p.emitLocked(events.Event{Kind: events.PoolStop, Reason: "admin"})
	}
	p.unlock()
}

// StartPool puts a stopped pool (by an admin or rapid-fail protection)
// back in service with a clean failure record.
func (p *Pool) StartPool() {
	p.mu.Lock()
	if p.state != Running && !p.closed {
		p.state = Running
		p.stopReason = ""
		p.failTimes = nil
		p.failures, p.lastErr, p.retryAt = 0, nil, time.Time{}
		p.emitLocked(events.Event{Kind: events.PoolStart, Reason: "admin"})
		if p.cfg.Start == "always" {
			p.activated = true
		}
		p.ensureMinLocked()
	}
	p.unlock()
}

// State returns the pool's state and, when stopped, why.
func (p *Pool) State() (State, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state, p.stopReason
}

// Fail takes a misbehaving instance out of the pool. kind says why
// (events.Crash when it broke a request, events.TimeoutKill, events.PingFailure,
// events.CPUKill). The instance is killed with its whole process group, or,
// with orphan.enabled and a hung instance, left running for a debugger.
// A caller holding a slot on it still owes Release.
func (p *Pool) Fail(inst *Instance, kind, detail string) {
	p.mu.Lock()
	switch inst.state {
	case stateDead, stateKilled, stateOrphaned:
		p.unlock()
		return
	}
	p.emitLocked(events.Event{Kind: kind, PID: inst.pid, Detail: detail})
	p.failureLocked(kind)
	if p.cfg.Orphan.Enabled && (kind == events.TimeoutKill || kind == events.PingFailure) && inst.proc != nil {
		p.orphanLocked(inst, kind)
		p.unlock()
		return
	}
	p.retireLocked(inst)
	inst.state = stateKilled
	proc := inst.proc
	if proc == nil {
		// A virtual instance has no process of its own: its request's
		// process dies with the request's context.
		inst.cancelStop()
	}
	p.ensureMinLocked()
	p.unlock()
	if proc != nil {
		proc.Kill()
	}
}

// orphanLocked leaves a hung instance running, outside the pool, for
// someone to attach a debugger (IIS's orphanWorkerProcess): it is never
// counted or routed to again, and orphan.exec runs with its pid.
func (p *Pool) orphanLocked(inst *Instance, why string) {
	p.retireLocked(inst)
	inst.state = stateOrphaned
	for i, x := range p.instances {
		if x == inst {
			p.instances = append(p.instances[:i], p.instances[i+1:]...)
			break
		}
	}
	p.orphans = append(p.orphans, inst)
	p.emitLocked(events.Event{Kind: events.Orphan, PID: inst.pid, Reason: why})
	if argv := p.cfg.Orphan.Exec; len(argv) > 0 {
		args := make([]string, len(argv))
		for i, a := range argv {
			args[i] = strings.ReplaceAll(a, "{pid}", strconv.Itoa(inst.pid))
		}
		p.wg.Add(1)
		go p.runOrphanExec(args)
	}
	p.ensureMinLocked()
	p.maybeSpawnLocked()
}

// runOrphanExec runs orphan.exec as drover itself (it is a debugging aid
// set by the operator, e.g. gcore), with its output in the log.
func (p *Pool) runOrphanExec(args []string) {
	defer p.wg.Done()
	proc, err := process.Start(process.Spec{
		Args: args,
		Env:  p.spec.Env,
		Output: func(stream, line string) {
			p.log.Info(line, "pool", p.name, "orphan_exec", args[0], "stream", stream)
		},
	})
	if err != nil {
		p.log.Warn("orphan.exec failed", "pool", p.name, "err", err)
		return
	}
	select {
	case <-proc.Done():
	case <-p.ctx.Done():
		proc.Kill()
		<-proc.Done()
	}
	p.log.Info("orphan.exec finished", "pool", p.name, "status", proc.ExitString())
}

// armHealthLocked arms the next round of pings while the pool has
// instances; a pool without instances has no timer.
func (p *Pool) armHealthLocked() {
	d := p.cfg.Health.Interval.D()
	if d <= 0 || p.health != nil || p.closed || len(p.instances) == 0 {
		return
	}
	p.health = time.AfterFunc(d, p.healthTick)
}

// healthTick pings every idle ready instance. A ping takes no slot: a
// request that arrives meanwhile gets the instance as usual.
func (p *Pool) healthTick() {
	p.mu.Lock()
	p.health = nil
	if p.closed || p.state != Running {
		p.unlock()
		return
	}
	var targets []*Instance
	for _, inst := range p.instances {
		if inst.state == stateReady && inst.inFlight == 0 && !inst.pinging {
			inst.pinging = true
			targets = append(targets, inst)
		}
	}
	p.wg.Add(len(targets))
	p.armHealthLocked()
	p.unlock()
	for _, inst := range targets {
		go p.ping(inst)
	}
}

func (p *Pool) ping(inst *Instance) {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(inst.ctx, p.cfg.Health.Timeout.D())
	err := inst.ep.Ping(ctx)
	cancel()
	p.mu.Lock()
	inst.pinging = false
	stillServing := inst.state == stateReady && inst.ctx.Err() == nil
	p.mu.Unlock()
	if err != nil && stillServing {
		p.Fail(inst, events.PingFailure, "no answer to health ping within "+p.cfg.Health.Timeout.D().String()+": "+err.Error())
	}
}
