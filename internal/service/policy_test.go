package service

import (
	"math"
	"testing"
	"time"
)

func TestBackoffNext(t *testing.T) {
	const ms = time.Millisecond
	std := Backoff{Min: 100 * ms, Max: 10 * time.Second, Factor: 2}
	fixed := func(f float64) func() float64 { return func() float64 { return f } }
	tests := []struct {
		name     string
		b        Backoff
		failures int
		rnd      func() float64
		want     time.Duration
	}{
		{"first failure is Min", std, 1, nil, 100 * ms},
		{"zero counts as first", std, 0, nil, 100 * ms},
		{"negative counts as first", std, -3, nil, 100 * ms},
		{"second doubles", std, 2, nil, 200 * ms},
		{"fifth", std, 5, nil, 1600 * ms},
		{"capped at Max", std, 8, nil, 10 * time.Second},
		{"huge count stays at Max", std, 10_000, nil, 10 * time.Second},
		{"factor 1.5", Backoff{Min: 100 * ms, Max: time.Second, Factor: 1.5}, 3, nil, 225 * ms},
		{"factor <= 1 keeps Min", Backoff{Min: 100 * ms, Factor: 0.5}, 9, nil, 100 * ms},
		{"no Max does not overflow", Backoff{Min: time.Second, Factor: 10}, 500, nil, time.Duration(maxPause)},
		{"zero Min restarts at once", Backoff{Max: time.Second, Factor: 2}, 4, nil, 0},
		{"jitter 0.5, rnd 0: full pause", Backoff{Min: 100 * ms, Factor: 2, Jitter: 0.5}, 2, fixed(0), 200 * ms},
		{"jitter 0.5, rnd 0.5: quarter off", Backoff{Min: 100 * ms, Factor: 2, Jitter: 0.5}, 2, fixed(0.5), 150 * ms},
		{"jitter 0.5, rnd near 1: half off", Backoff{Min: 100 * ms, Factor: 2, Jitter: 0.5}, 1, fixed(0.999999), 50*ms + 100},
		{"jitter applies below the cap", Backoff{Min: time.Second, Max: 2 * time.Second, Factor: 2, Jitter: 0.5}, 9, fixed(0.5), 1500 * ms},
		{"jitter above 1 is clamped", Backoff{Min: 100 * ms, Jitter: 7}, 1, fixed(0.5), 50 * ms},
		{"negative jitter is none", Backoff{Min: 100 * ms, Jitter: -1}, 1, fixed(0.5), 100 * ms},
		{"rnd out of range is clamped", Backoff{Min: 100 * ms, Jitter: 1}, 1, fixed(3), 0},
		{"NaN rnd is no jitter", Backoff{Min: 100 * ms, Jitter: 1}, 1, fixed(math.NaN()), 100 * ms},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.b.Next(tc.failures, tc.rnd)
			if d := got - tc.want; d < -time.Microsecond || d > time.Microsecond {
				t.Errorf("Next(%d) = %s, want %s", tc.failures, got, tc.want)
			}
		})
	}
}

func TestBackoffNextStaysInJitterRange(t *testing.T) {
	b := DefaultBackoff
	for n := 1; n < 40; n++ {
		full := b.Next(n, nil)
		for _, r := range []float64{0, 0.1, 0.5, 0.9, 0.9999} {
			got := b.Next(n, func() float64 { return r })
			if got > full || got < full/2 || got > b.Max {
				t.Fatalf("Next(%d) with rnd %v = %s, want within [%s, %s]", n, r, got, full/2, full)
			}
		}
	}
}

func TestBackoffReset(t *testing.T) {
	tests := []struct {
		resetAfter, uptime time.Duration
		want               bool
	}{
		{10 * time.Second, 9 * time.Second, false},
		{10 * time.Second, 10 * time.Second, true},
		{10 * time.Second, time.Hour, true},
		{0, time.Hour, false}, // never resets
	}
	for _, tc := range tests {
		if got := (Backoff{ResetAfter: tc.resetAfter}).Reset(tc.uptime); got != tc.want {
			t.Errorf("ResetAfter %s: Reset(%s) = %v, want %v", tc.resetAfter, tc.uptime, got, tc.want)
		}
	}
}

func TestFailureWindow(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name     string
		max      int
		interval time.Duration
		failures []int // seconds after t0
		want     []bool
	}{
		{"trips at max within interval", 3, time.Minute, []int{0, 1, 2}, []bool{false, false, true}},
		{"old failures are forgotten", 3, time.Minute, []int{0, 1, 70, 71}, []bool{false, false, false, false}},
		{"window slides", 3, time.Minute, []int{0, 30, 61, 62}, []bool{false, false, false, true}},
		{"max 1 trips at once", 1, time.Minute, []int{0}, []bool{true}},
		{"max 0 is off", 0, time.Minute, []int{0, 0, 0, 0}, []bool{false, false, false, false}},
		{"interval 0 is off", 2, 0, []int{0, 0, 0}, []bool{false, false, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := failureWindow{max: tc.max, interval: tc.interval}
			for i, s := range tc.failures {
				if got := w.add(at(s)); got != tc.want[i] {
					t.Fatalf("failure %d at +%ds: tripped = %v, want %v", i, s, got, tc.want[i])
				}
			}
		})
	}
	w := failureWindow{max: 2, interval: time.Minute}
	w.add(at(0))
	w.reset()
	if w.add(at(1)) {
		t.Error("reset did not forget the earlier failure")
	}
}

func TestShouldRestart(t *testing.T) {
	tests := []struct {
		policy string
		clean  bool
		want   bool
	}{
		{"always", true, true},
		{"always", false, true},
		{"on-failure", true, false},
		{"on-failure", false, true},
		{"never", true, false},
		{"never", false, false},
	}
	for _, tc := range tests {
		if got := shouldRestart(tc.policy, tc.clean); got != tc.want {
			t.Errorf("shouldRestart(%q, clean=%v) = %v, want %v", tc.policy, tc.clean, got, tc.want)
		}
	}
}

func TestHasReady(t *testing.T) {
	tests := []struct {
		msg  string
		want bool
	}{
		{"READY=1", true},
		{"READY=1\n", true},
		{"STATUS=starting\nREADY=1\nMAINPID=4", true},
		{"READY=1\r\n", true},
		{"READY=0", false},
		{"STATUS=READY=1", false},
		{"NOTREADY=1", false},
		{"", false},
		{"READY=10", false},
	}
	for _, tc := range tests {
		if got := hasReady([]byte(tc.msg)); got != tc.want {
			t.Errorf("hasReady(%q) = %v, want %v", tc.msg, got, tc.want)
		}
	}
}

func TestParseReady(t *testing.T) {
	tests := []struct {
		in      string
		want    readyRule
		wantErr bool
	}{
		{"", readyRule{}, false},
		{"notify", readyRule{notify: true}, false},
		{"tcp:127.0.0.1:8080", readyRule{network: "tcp", addr: "127.0.0.1:8080"}, false},
		{"tcp:[::1]:8080", readyRule{network: "tcp", addr: "[::1]:8080"}, false},
		{"unix:/run/x.sock", readyRule{network: "unix", addr: "/run/x.sock"}, false},
		{"tcp:nope", readyRule{}, true},
		{"unix:", readyRule{}, true},
		{"http://x", readyRule{}, true},
	}
	for _, tc := range tests {
		got, err := parseReady(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("parseReady(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
