package service

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/process"
)

// outcome is how one process of a run ended.
type outcome struct {
	requested bool          // drover asked it to stop
	clean     bool          // exit status 0 after having been ready
	uptime    time.Duration // from spawn to exit; 0 when the spawn failed
}

// supervise is the one goroutine of a run. It starts the service's process,
// and after every exit that drover did not ask for applies the restart
// policy, rapid-fail protection and the backoff, until the service is
// stopped or fails. Events are emitted before the state they explain
// becomes visible, so that whoever sees a state also finds its event.
func (m *Manager) supervise(s *service, r *run) {
	defer m.wg.Done()
	defer close(r.done)
	defer r.markSpawned() // Start must not wait for a run that never spawned
	quick := 0            // consecutive failures without a healthy uptime, for the backoff
	for {
		res := m.runOnce(s, r)
		if res.requested {
			m.finish(s, r, StateStopped)
			return
		}
		m.mu.Lock()
		tripped := !res.clean && s.window.add(time.Now())
		restart := shouldRestart(s.cfg.Restart, res.clean) && !m.closed && !r.stopping
		m.mu.Unlock()
		if tripped {
			rf := s.cfg.RapidFail
			m.emit(events.RapidFail, s, 0, "", fmt.Sprintf("%d failures within %s", rf.MaxFailures, rf.Interval.D()))
			m.finish(s, r, StateFailed)
			return
		}
		if !restart {
			m.finish(s, r, StateStopped)
			return
		}
		if m.backoff.Reset(res.uptime) {
			quick = 0
		}
		quick++
		pause := m.backoff.Next(quick, m.rnd)
		m.runState(s, r, StateBackoff)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
			m.finish(s, r, StateStopped)
			return
		}
		m.mu.Lock()
		if m.closed || r.stopping {
			m.mu.Unlock()
			m.finish(s, r, StateStopped)
			return
		}
		s.restarts++
		n := s.restarts
		m.mu.Unlock()
		m.emit(EventRestart, s, 0, "", fmt.Sprintf("restart %d after %s", n, pause))
		m.runState(s, r, StateStarting)
	}
}

// runOnce runs one process of the service from spawn to reaping.
func (m *Manager) runOnce(s *service, r *run) outcome {
	m.mu.Lock()
	stopping := r.stopping
	m.mu.Unlock()
	if stopping {
		return outcome{requested: true}
	}
	spec := s.spec
	spec.Env = slices.Clone(s.spec.Env)
	var nt *notifier
	if s.ready.notify {
		var err error
		if nt, err = newNotifier(m.notifyDir, spec.Credential); err != nil {
			return m.spawnFailed(s, r, err)
		}
		defer nt.Close()
		spec.Env = append(spec.Env, "NOTIFY_SOCKET="+nt.path)
	}
	proc, err := process.Start(spec)
	if err != nil {
		return m.spawnFailed(s, r, err)
	}
	started := time.Now()
	m.emit(events.Spawn, s, proc.Pid, "", "")
	m.mu.Lock()
	s.pid, s.started = proc.Pid, started
	m.mu.Unlock()
	r.markSpawned()

	err = m.waitReady(s, r, proc, nt)
	if err == nil {
		m.emit(events.Ready, s, proc.Pid, "", "")
		m.mu.Lock()
		s.readyGen++
		s.lastErr = ""
		st := StateReady
		if s.cfg.Ready == "" {
			st = StateRunning
		}
		m.runStateLocked(s, r, st)
		m.mu.Unlock()
	}
	if !errors.Is(err, errExited) {
		select {
		case <-proc.Done():
		case <-r.ctx.Done():
			// SIGTERM to the group, SIGKILL after shutdown_timeout, or
			// at once when Shutdown's own deadline has passed.
			proc.Stop(m.hard, s.cfg.ShutdownTimeout.D())
		}
	}
	<-proc.Done()
	exit := proc.ExitString()
	m.mu.Lock()
	// An exit while a stop was asked counts as asked for, whoever was first.
	requested := r.stopping
	reason := r.reason
	m.mu.Unlock()
	clean := err == nil && proc.State() != nil && proc.State().Success()
	switch {
	case requested:
		m.emit(events.Exit, s, proc.Pid, reason, exit)
	case errors.Is(err, errExited):
		// Never ready: a startup failure even with status 0.
		m.emit(events.StartupFailure, s, proc.Pid, "", exit)
	case clean:
		m.emit(events.Exit, s, proc.Pid, "", exit)
	default:
		m.emit(events.Crash, s, proc.Pid, "", exit)
	}
	m.mu.Lock()
	s.pid, s.started = 0, time.Time{}
	s.lastExit = exit
	if errors.Is(err, errExited) {
		s.lastErr = "not ready: " + errExited.Error() + " (" + exit + ")"
	}
	m.mu.Unlock()
	return outcome{requested: requested, clean: clean, uptime: time.Since(started)}
}

// waitReady blocks until the process meets the service's readiness rule
// (nil), exits (errExited) or is asked to stop (errStopped). Services have
// no startup timeout: one that never becomes ready stays "starting", and
// StartService callers bound their own wait.
func (m *Manager) waitReady(s *service, r *run, proc *process.Process, nt *notifier) error {
	switch {
	case s.ready.notify:
		select {
		case <-nt.ready:
			return nil
		case <-proc.Done():
			return errExited
		case <-r.ctx.Done():
			return errStopped
		}
	case s.ready.network != "":
		return waitDial(s.ready.network, s.ready.addr, proc.Done(), r.ctx.Done())
	}
	return nil
}

// spawnFailed records a process that could not be started; it counts as a
// failure for restart and rapid-fail purposes.
func (m *Manager) spawnFailed(s *service, r *run, err error) outcome {
	r.markSpawned()
	m.emit(events.SpawnFailure, s, 0, "", err.Error())
	m.mu.Lock()
	defer m.mu.Unlock()
	s.lastErr = "spawn: " + err.Error()
	return outcome{requested: r.stopping}
}

// runState sets s's state on behalf of run r, unless a stop has been asked:
// then the state stays "stopping" until the supervisor finishes.
func (m *Manager) runState(s *service, r *run, st State) {
	m.mu.Lock()
	m.runStateLocked(s, r, st)
	m.mu.Unlock()
}

func (m *Manager) runStateLocked(s *service, r *run, st State) {
	if s.run == r && !r.stopping {
		m.setStateLocked(s, st)
	}
}

// finish ends run r: the service is left in state st with no process.
func (m *Manager) finish(s *service, r *run, st State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.run != r {
		return
	}
	s.run = nil
	s.pid, s.started = 0, time.Time{}
	m.order = slices.DeleteFunc(m.order, func(n string) bool { return n == s.name })
	m.setStateLocked(s, st)
	r.cancel() // releases the context's resources
}
