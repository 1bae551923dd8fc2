package service

import (
	"math"
	"time"
)

// Backoff is the pause before an automatic restart. It is a pure policy
// (no clock, no randomness of its own) so that it can be table-tested and
// so that the supervisor alone decides when time passes.
//
// The pause grows exponentially with the number of consecutive failures,
// because a service that keeps crashing right after it starts would
// otherwise burn a CPU forking it; it is capped, because a service whose
// dependency comes back after an outage should not wait an hour; and it is
// jittered, because services that failed together (a database went away)
// should not all come back in the same instant.
type Backoff struct {
	// Min is the pause after the first failure; 0 restarts at once.
	Min time.Duration
	// Max caps the pause before jitter; 0 is no cap.
	Max time.Duration
	// Factor multiplies the pause for every further consecutive failure;
	// values <= 1 keep the pause at Min.
	Factor float64
	// Jitter is the fraction (0..1) by which a pause may be shortened at
	// random: the result lies in [(1-Jitter)*d, d], never above the cap.
	Jitter float64
	// ResetAfter: a process that stayed up at least this long is deemed
	// healthy, and its exit starts the count of failures afresh; 0 never
	// resets (only an explicit start does).
	ResetAfter time.Duration
}

// DefaultBackoff is what services use unless the Manager is given another
// policy: 100ms, doubling up to 30s, up to half of it shaved off at random,
// forgotten after 10s of uptime. It matches the pools' startup backoff.
var DefaultBackoff = Backoff{
	Min:        100 * time.Millisecond,
	Max:        30 * time.Second,
	Factor:     2,
	Jitter:     0.5,
	ResetAfter: 10 * time.Second,
}

// maxPause bounds the computation so that a large failure count with no
// Max never overflows time.Duration.
const maxPause = float64(math.MaxInt64 / 2)

// Next returns the pause before the restart that follows the failures-th
// consecutive failure (1 for the first; smaller values count as 1). rnd
// returns a number in [0, 1), as math/rand's Float64 does; nil means no
// jitter.
func (b Backoff) Next(failures int, rnd func() float64) time.Duration {
	if b.Min <= 0 {
		return 0
	}
	failures = max(failures, 1)
	d := float64(b.Min)
	if b.Factor > 1 {
		d *= math.Pow(b.Factor, float64(failures-1)) // +Inf is capped below
	}
	if b.Max > 0 && d > float64(b.Max) {
		d = float64(b.Max)
	}
	d = min(d, maxPause)
	if j := clamp01(b.Jitter); j > 0 && rnd != nil {
		d -= d * j * clamp01(rnd())
	}
	return time.Duration(d)
}

// Reset reports whether a process that ran for uptime has proved itself,
// so that its exit counts as the first failure rather than the next one.
func (b Backoff) Reset(uptime time.Duration) bool {
	return b.ResetAfter > 0 && uptime >= b.ResetAfter
}

func clamp01(f float64) float64 {
	switch {
	case f != f || f < 0: // NaN or negative
		return 0
	case f > 1:
		return 1
	}
	return f
}

// failureWindow is rapid-fail protection (as in IIS): it remembers the
// failures of the last interval and trips when they reach max. Off when
// max or interval is 0, as "0 means off" everywhere in the config.
type failureWindow struct {
	max      int
	interval time.Duration
	times    []time.Time
}

// add records a failure at now and reports whether protection trips.
func (w *failureWindow) add(now time.Time) bool {
	if w.max <= 0 || w.interval <= 0 {
		return false
	}
	cut := now.Add(-w.interval)
	keep := w.times[:0]
	for _, t := range w.times {
		if t.After(cut) {
			keep = append(keep, t)
		}
	}
	w.times = append(keep, now)
	return len(w.times) >= w.max
}

// reset forgets every failure: an explicit start begins a fresh window.
func (w *failureWindow) reset() { w.times = w.times[:0] }

// shouldRestart applies the restart policy to an exit that drover did not
// ask for; clean is a zero exit status.
func shouldRestart(policy string, clean bool) bool {
	switch policy {
	case "always":
		return true
	case "on-failure":
		return !clean
	default: // "never"
		return false
	}
}
