package pool

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/drover-pool/drover/internal/events"
)

// Recycling replaces instances without losing a request, the way IIS's
// overlapped recycling does. One goroutine at a time (the recycler, owned
// by the pool's WaitGroup and alive only while there is work) walks the
// queue of instances to replace, one by one:
//
//   - overlap = true: start the replacement, wait until it is ready, then
//     let the old instance drain (no new requests; its in-flight requests
//     finish) and stop. Ready capacity never drops, and a pool at
//     max_instances runs one process more than max_instances for the
//     length of one overlap.
//   - overlap = false (IIS disallowOverlappingRotation): drain and stop the
//     old instance first, then start the replacement; requests wait in the
//     queue meanwhile, and none fails.
//
// A replacement that fails to start leaves the old instance serving; the
// failure counts for rapid-fail, and the recycle is retried with backoff.

// Clock is the pool's time source; tests inject a fake one to exercise
// recycle.interval and recycle.schedule without waiting hours.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a Clock's timer.
type Timer interface{ Stop() bool }

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Recycle replaces every instance, overlapped, and records reason
// ("manual", "admin", "watch", "schedule", "reload"...) in the event log.
func (p *Pool) Recycle(reason string) {
	p.mu.Lock()
	for _, inst := range p.instances {
		if inst.state == stateReady {
			p.queueRecycleLocked(inst, reason)
		}
	}
	p.unlock()
}

// queueRecycleLocked puts inst in the recycler's queue once.
func (p *Pool) queueRecycleLocked(inst *Instance, reason string) {
	if inst.recycleReason != "" || p.closed || p.state != Running {
		return
	}
	inst.recycleReason = reason
	p.recycleQ = append(p.recycleQ, inst)
	if !p.recycling {
		p.recycling = true
		p.wg.Add(1)
		go p.recycler()
	}
}

// recycler replaces the queued instances one at a time.
func (p *Pool) recycler() {
	defer p.wg.Done()
	failures := 0
	for {
		p.mu.Lock()
		if len(p.recycleQ) == 0 || p.closed || p.state != Running {
			for _, inst := range p.recycleQ {
				inst.recycleReason = ""
			}
			p.recycleQ = nil
			p.recycling = false
			p.unlock()
			return
		}
		old := p.recycleQ[0]
		if old.state != stateReady {
			// It went away by itself meanwhile.
			p.recycleQ = p.recycleQ[1:]
			p.unlock()
			continue
		}
		reason := old.recycleReason
		if !p.cfg.Recycle.Overlap {
			p.emitLocked(events.Event{Kind: events.Recycle, PID: old.pid, Reason: reason, Detail: "stop first (overlap = false)"})
			p.stopLocked(old, reason)
			p.recycleQ = p.recycleQ[1:]
			p.unlock()
			// The exit makes room; ensureMin or the waiting requests
			// start the replacement, so the queue never stalls.
			select {
			case <-old.gone:
			case <-p.ctx.Done():
				return
			}
			p.mu.Lock()
			p.replaceLocked()
			p.unlock()
			continue
		}
		repl := p.spawnLocked()
		p.unlock()
		var ok bool
		select {
		case ok = <-repl.readyCh:
		case <-p.ctx.Done():
			return
		}
		p.mu.Lock()
		if !ok {
			// The old instance keeps serving; try again later.
			failures++
			p.emitLocked(events.Event{Kind: events.Recycle, PID: old.pid, Reason: reason, Detail: "replacement failed to start; old instance keeps serving"})
			p.unlock()
			t := time.NewTimer(backoff(failures))
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		failures = 0
		p.recycleQ = p.recycleQ[1:]
		p.emitLocked(events.Event{Kind: events.Recycle, PID: old.pid, Reason: reason, Detail: "replaced by " + strconv.Itoa(repl.pid)})
		if old.state == stateReady {
			p.stopLocked(old, reason)
		}
		p.unlock()
		// The next overlap starts only when this old process is gone,
		// so the pool never runs more than one process over
		// max_instances.
		select {
		case <-old.gone:
		case <-p.ctx.Done():
			return
		}
	}
}

// replaceLocked starts an instance to take a stopped one's place when the
// pool is below what it had (min_instances, or waiting requests).
func (p *Pool) replaceLocked() {
	if p.servingCountLocked() == 0 || p.servingCountLocked() < p.cfg.MinInstances {
		if len(p.instances) < p.cfg.MaxInstances {
			p.spawnLocked()
		}
	}
	p.maybeSpawnLocked()
}

// requestThreshold is when an instance recycles for recycle.requests: the
// configured count plus up to 5% jitter, so that instances started
// together do not all recycle at once.
func (p *Pool) requestThreshold() uint64 {
	n := p.cfg.Recycle.Requests
	if n <= 0 {
		return 0
	}
	return uint64(n + rand.N(n/20+1))
}

// armRecycleTimerLocked arms one timer for the next interval or schedule
// recycle, while the pool has instances.
func (p *Pool) armRecycleTimerLocked() {
	rc := p.cfg.Recycle
	if p.recycleTimer != nil || p.closed || len(p.instances) == 0 || (rc.Interval <= 0 && len(rc.Schedule) == 0) {
		return
	}
	now := p.clock.Now()
	var next time.Time
	if rc.Interval > 0 {
		for _, inst := range p.instances {
			if inst.state == stateReady {
				if due := inst.started.Add(rc.Interval.D()); next.IsZero() || due.Before(next) {
					next = due
				}
			}
		}
	}
	if len(rc.Schedule) > 0 {
		// A time that passed while the pool had no instances is not
		// made up for: fresh instances need no recycle.
		if p.nextSched.IsZero() || p.nextSched.Before(now) {
			p.nextSched = nextSchedule(now, rc.Schedule)
		}
		if next.IsZero() || p.nextSched.Before(next) {
			next = p.nextSched
		}
	}
	if next.IsZero() {
		return
	}
	p.recycleTimer = p.clock.AfterFunc(max(next.Sub(now), 0), p.recycleTick)
}

// recycleTick recycles what is due: the whole pool at a scheduled time,
// and instances older than recycle.interval.
func (p *Pool) recycleTick() {
	p.mu.Lock()
	p.recycleTimer = nil
	if p.closed || p.state != Running {
		p.unlock()
		return
	}
	now := p.clock.Now()
	rc := p.cfg.Recycle
	if !p.nextSched.IsZero() && !now.Before(p.nextSched) {
		p.nextSched = nextSchedule(now, rc.Schedule)
		for _, inst := range p.instances {
			if inst.state == stateReady {
				p.queueRecycleLocked(inst, "schedule")
			}
		}
	}
	if rc.Interval > 0 {
		for _, inst := range p.instances {
			if inst.state == stateReady && !now.Before(inst.started.Add(rc.Interval.D())) {
				p.queueRecycleLocked(inst, "interval")
			}
		}
	}
	p.armRecycleTimerLocked()
	p.unlock()
}

// nextSchedule returns the first of the "HH:MM" local times strictly after
// after, or zero when there is none.
func nextSchedule(after time.Time, schedule []string) time.Time {
	var best time.Time
	for _, s := range schedule {
		h, m, ok := parseHHMM(s)
		if !ok {
			continue
		}
		y, mo, d := after.Date()
		t := time.Date(y, mo, d, h, m, 0, 0, after.Location())
		if !t.After(after) {
			t = time.Date(y, mo, d+1, h, m, 0, 0, after.Location())
		}
		if best.IsZero() || t.Before(best) {
			best = t
		}
	}
	return best
}

func parseHHMM(s string) (int, int, bool) {
	hs, ms, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, false
	}
	h, err1 := strconv.Atoi(hs)
	m, err2 := strconv.Atoi(ms)
	return h, m, err1 == nil && err2 == nil && h >= 0 && h < 24 && m >= 0 && m < 60
}

// armMemoryLocked arms the RSS sampler while the pool has instances and
// recycle.memory is set.
func (p *Pool) armMemoryLocked() {
	if p.cfg.Recycle.Memory <= 0 || p.memTimer != nil || p.closed || len(p.instances) == 0 {
		return
	}
	p.memTimer = time.AfterFunc(p.memInterval, p.memoryTick)
}

// memoryTick samples the RSS of each ready instance's process group and
// queues the ones over recycle.memory. The sampling (reading /proc) runs
// outside the lock.
func (p *Pool) memoryTick() {
	p.mu.Lock()
	p.memTimer = nil
	if p.closed {
		p.unlock()
		return
	}
	var pids []int
	for _, inst := range p.instances {
		if inst.state == stateReady && inst.pid > 0 {
			pids = append(pids, inst.pid)
		}
	}
	p.unlock()
	rss := GroupRSS(pids)
	p.mu.Lock()
	limit := int64(p.cfg.Recycle.Memory)
	for _, inst := range p.instances {
		if inst.state == stateReady && rss[inst.pid] > limit {
			p.queueRecycleLocked(inst, "memory")
		}
	}
	p.armMemoryLocked()
	p.unlock()
}

var pageSize = int64(os.Getpagesize())

// GroupStats is what /proc says of one process group.
type GroupStats struct {
	RSS      int64 // resident bytes
	CPUTicks int64 // utime + stime with reaped children's, in ClockTicks
}

// GroupRSS returns, for each process group id in pgids, the resident
// memory in bytes of all processes in that group: an instance's whole
// process tree, since instances run in their own groups.
func GroupRSS(pgids []int) map[int]int64 {
	out := make(map[int]int64, len(pgids))
	for g, st := range Groups(pgids) {
		out[g] = st.RSS
	}
	return out
}

// Groups reads /proc once and sums memory and CPU time per process group
// for the groups in pgids.
func Groups(pgids []int) map[int]GroupStats {
	want := make(map[int]bool, len(pgids))
	for _, g := range pgids {
		want[g] = true
	}
	out := make(map[int]GroupStats, len(pgids))
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		name := e.Name()
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || len(s) < i+2 {
			continue
		}
		f := strings.Fields(s[i+2:])
		// After comm: state(0) ppid(1) pgrp(2) ... utime(11) stime(12)
		// cutime(13) cstime(14) ... rss(21) in pages.
		if len(f) < 22 {
			continue
		}
		pgrp, _ := strconv.Atoi(f[2])
		if !want[pgrp] {
			continue
		}
		pages, _ := strconv.ParseInt(f[21], 10, 64)
		g := out[pgrp]
		g.RSS += pages * pageSize
		for _, k := range []int{11, 12, 13, 14} {
			n, _ := strconv.ParseInt(f[k], 10, 64)
			g.CPUTicks += n
		}
		out[pgrp] = g
	}
	return out
}

// Warm starts instances until n are starting or ready (at most
// max_instances) and waits until they are ready. It reports whether all
// became ready; hot reload uses it to bring up a changed pool before
// switching traffic to it.
func (p *Pool) Warm(ctx context.Context, n int) bool {
	p.mu.Lock()
	p.activated = true
	var started []*Instance
	for p.servingCountLocked() < n && len(p.instances) < p.cfg.MaxInstances && !p.closed {
		started = append(started, p.spawnLocked())
	}
	p.unlock()
	ok := true
	for _, inst := range started {
		select {
		case r := <-inst.readyCh:
			ok = ok && r
		case <-ctx.Done():
			return false
		}
	}
	return ok
}

// Drain waits until no request waits for or holds a slot of this pool
// (or ctx ends); then the caller can Shutdown without failing anyone.
// Hot reload drains a pool after switching its routes away.
func (p *Pool) Drain(ctx context.Context) {
	p.mu.Lock()
	if p.quietLocked() {
		p.mu.Unlock()
		return
	}
	if p.quiet == nil {
		p.quiet = make(chan struct{})
	}
	ch := p.quiet
	p.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// quietLocked reports that no request waits or is in flight.
func (p *Pool) quietLocked() bool {
	if p.waiters.n > 0 {
		return false
	}
	for _, inst := range p.instances {
		if inst.inFlight > 0 {
			return false
		}
	}
	return true
}

// noteQuietLocked wakes Drain when the pool has become quiet.
func (p *Pool) noteQuietLocked() {
	if p.quiet != nil && p.quietLocked() {
		close(p.quiet)
		p.quiet = nil
	}
}
