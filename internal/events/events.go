// Package events records drover's lifecycle events (spawn, ready, exit,
// crash, recycle, rapid-fail, orphan, reload...) twice: as structured log
// records for operators who read logs, and in a bounded in-memory ring that
// the admin API serves with ids, so that a client can ask "what happened
// since event N" and wait for the next one without polling.
package events

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Kinds of event. The set is open; these are the ones drover emits.
const (
	Spawn          = "spawn"
	Ready          = "ready"
	Exit           = "exit"
	Crash          = "crash"
	StartupFailure = "startup-failure"
	SpawnFailure   = "spawn-failure"
	PingFailure    = "ping-failure"
	TimeoutKill    = "timeout-kill"
	CPUKill        = "cpu-kill"
	CPULimit       = "cpu-limit" // over limits.cpu with cpu_action = "log"
	Stop           = "stop"
	Recycle        = "recycle"
	RapidFail      = "rapid-fail"
	Orphan         = "orphan"
	Reload         = "reload"
	PoolStart      = "pool-start"
	PoolStop       = "pool-stop"
)

// Event is one lifecycle step of a pool instance or a service.
type Event struct {
	ID      uint64    `json:"id"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Pool    string    `json:"pool,omitempty"`
	Service string    `json:"service,omitempty"`
	PID     int       `json:"pid,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// Log is the event ring. It is safe for concurrent use; its zero value is
// not usable, call New.
type Log struct {
	logger *slog.Logger

	mu      sync.Mutex // guards everything below
	ring    []Event    // ring[(id-1) % len(ring)] holds event id
	last    uint64     // id of the newest event; 0 = none yet
	changed chan struct{}
	subs    []func(Event)
}

// Subscribe calls f with every event emitted from now on, in the emitting
// goroutine (metrics count lifecycle steps this way). f must be quick and
// must not emit.
func (l *Log) Subscribe(f func(Event)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.subs = append(l.subs, f)
}

// New returns a Log that keeps the last size events and writes each event
// to logger (nil: no log records).
func New(logger *slog.Logger, size int) *Log {
	if size < 1 {
		size = 1
	}
	return &Log{logger: logger, ring: make([]Event, size), changed: make(chan struct{})}
}

// Emit records e, assigning its ID and, when unset, its Time.
func (l *Log) Emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	l.mu.Lock()
	l.last++
	e.ID = l.last
	l.ring[(e.ID-1)%uint64(len(l.ring))] = e
	ch := l.changed
	l.changed = make(chan struct{})
	subs := l.subs
	l.mu.Unlock()
	close(ch)
	for _, f := range subs {
		f(e)
	}
	if l.logger != nil {
		attrs := []slog.Attr{slog.String("event", e.Kind), slog.Uint64("id", e.ID)}
		if e.Pool != "" {
			attrs = append(attrs, slog.String("pool", e.Pool))
		}
		if e.Service != "" {
			attrs = append(attrs, slog.String("service", e.Service))
		}
		if e.PID != 0 {
			attrs = append(attrs, slog.Int("pid", e.PID))
		}
		if e.Reason != "" {
			attrs = append(attrs, slog.String("reason", e.Reason))
		}
		if e.Detail != "" {
			attrs = append(attrs, slog.String("detail", e.Detail))
		}
		level := slog.LevelInfo
		switch e.Kind {
		case Crash, StartupFailure, SpawnFailure, PingFailure, TimeoutKill, CPUKill, RapidFail:
			level = slog.LevelWarn
		}
		l.logger.LogAttrs(context.Background(), level, "lifecycle", attrs...)
	}
}

// Since returns the events with an ID greater than id that are still in
// the ring, oldest first.
func (l *Log) Since(id uint64) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := uint64(1)
	if l.last > uint64(len(l.ring)) {
		first = l.last - uint64(len(l.ring)) + 1
	}
	if id+1 > first {
		first = id + 1
	}
	var out []Event
	for i := first; i <= l.last; i++ {
		out = append(out, l.ring[(i-1)%uint64(len(l.ring))])
	}
	return out
}

// Wait returns the events after id, blocking until there is at least one
// or ctx is done (then it returns what there is, possibly nothing).
func (l *Log) Wait(ctx context.Context, id uint64) []Event {
	for {
		l.mu.Lock()
		last, ch := l.last, l.changed
		l.mu.Unlock()
		if last > id {
			return l.Since(id)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
}

// Last returns the ID of the newest event (0 when none).
func (l *Log) Last() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// Find returns the retained events for which match is true, oldest first.
// Tests and the admin API use it to look for one pool's events.
func (l *Log) Find(match func(Event) bool) []Event {
	var out []Event
	for _, e := range l.Since(0) {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}
