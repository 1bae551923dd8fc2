package pool

import (
	"fmt"
	"time"

	"github.com/drover-pool/drover/internal/events"
)

// limits.cpu with cpu_action "kill" or "log" (IIS's CPU limit actions)
// needs no cgroup: the pool samples each instance's process-group CPU time
// from /proc once per window, while it has instances, and acts on an
// instance that used more than its share over the last window. "throttle"
// is the cgroup's cpu.max instead (package cgroup).

// ClockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on every
// Linux architecture drover runs on.
const ClockTicks = 100

func (p *Pool) cpuWatched() bool {
	a := p.cfg.Limits.CPUAction
	return p.cfg.Limits.CPU > 0 && (a == "kill" || a == "log")
}

// armCPULocked arms the next CPU sample while the pool has instances.
func (p *Pool) armCPULocked() {
	if !p.cpuWatched() || p.cpuTimer != nil || p.closed || len(p.instances) == 0 {
		return
	}
	p.cpuTimer = time.AfterFunc(p.cpuWindow, p.cpuTick)
}

func (p *Pool) cpuTick() {
	p.mu.Lock()
	p.cpuTimer = nil
	if p.closed {
		p.unlock()
		return
	}
	insts := map[int]*Instance{}
	var pids []int
	for _, inst := range p.instances {
		if (inst.state == stateReady || inst.state == stateDraining) && inst.pid > 0 {
			insts[inst.pid] = inst
			pids = append(pids, inst.pid)
		}
	}
	last := p.cpuLast
	p.unlock()

	stats := Groups(pids)
	budget := float64(p.cfg.Limits.CPU) / 100 * p.cpuWindow.Seconds() * ClockTicks
	now := map[int]int64{}
	var over []*Instance
	var used []float64
	for pid, st := range stats {
		now[pid] = st.CPUTicks
		if prev, ok := last[pid]; ok && float64(st.CPUTicks-prev) > budget {
			over = append(over, insts[pid])
			used = append(used, float64(st.CPUTicks-prev)/ClockTicks/p.cpuWindow.Seconds()*100)
		}
	}

	p.mu.Lock()
	p.cpuLast = now
	if p.cfg.Limits.CPUAction == "log" {
		for i, inst := range over {
			p.emitLocked(events.Event{Kind: events.CPULimit, PID: inst.pid,
				Detail: fmt.Sprintf("used %.0f%% CPU over %s, limit %v%% (cpu_action = log)", used[i], p.cpuWindow, float64(p.cfg.Limits.CPU))})
		}
	}
	p.armCPULocked()
	p.unlock()
	if p.cfg.Limits.CPUAction == "kill" {
		for i, inst := range over {
			p.Fail(inst, events.CPUKill, fmt.Sprintf("used %.0f%% CPU over %s, limit %v%%", used[i], p.cpuWindow, float64(p.cfg.Limits.CPU)))
		}
	}
}
