package metrics

import (
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/pool"
)

type noPools struct{}

func (noPools) Pools() map[string]*pool.Pool { return nil }

func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

func counterValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i, l := range m.Label {
			if i*2+1 >= len(labels) || l.GetName() != labels[i*2] || l.GetValue() != labels[i*2+1] {
				continue next
			}
		}
		return m.Counter.GetValue()
	}
	return -1
}

// TestEvents: lifecycle events are counted once each: a spawn is a
// start, failure kinds are failures by reason, and a recycle counts when
// an instance was replaced (or stopped first), not when its replacement
// failed to start.
func TestEvents(t *testing.T) {
	ev := events.New(nil, 100)
	m := New(noPools{}, ev)
	for _, e := range []events.Event{
		{Kind: events.Spawn, Pool: "a"},
		{Kind: events.Spawn, Pool: "a"},
		{Kind: events.Ready, Pool: "a"},
		{Kind: events.Crash, Pool: "a"},
		{Kind: events.TimeoutKill, Pool: "a"},
		{Kind: events.Recycle, Pool: "a", Reason: "requests", Detail: "replaced by 42"},
		{Kind: events.Recycle, Pool: "a", Reason: "requests", Detail: "replacement failed to start; old instance keeps serving"},
		{Kind: events.Recycle, Pool: "a", Reason: "memory", Detail: "stop first (overlap = false)"},
		{Kind: events.Spawn, Service: "svc"},
	} {
		ev.Emit(e)
	}
	f := gather(t, m)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"drover_instance_starts_total", []string{"pool", "a"}, 2},
		{"drover_instance_failures_total", []string{"pool", "a", "reason", "crash"}, 1},
		{"drover_instance_failures_total", []string{"pool", "a", "reason", "timeout-kill"}, 1},
		{"drover_recycles_total", []string{"pool", "a", "reason", "requests"}, 1},
		{"drover_recycles_total", []string{"pool", "a", "reason", "memory"}, 1},
	} {
		if got := counterValue(f, tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if s := m.Stats("a"); s.Starts != 2 || s.Failures != 2 || s.Recycles != 2 {
		t.Errorf("stats %+v", s)
	}
}

// TestObserveRequestAllocs: once a pool has seen a status code, observing
// a request allocates nothing.
func TestObserveRequestAllocs(t *testing.T) {
	m := New(noPools{}, nil)
	m.ObserveRequest("app", 200, time.Millisecond, 0)
	if n := testing.AllocsPerRun(1000, func() { m.ObserveRequest("app", 200, 3*time.Millisecond, time.Microsecond) }); n != 0 {
		t.Errorf("ObserveRequest allocates %v times per call", n)
	}
	f := gather(t, m)
	if got := counterValue(f, "drover_requests_total", "code", "200", "pool", "app"); got != 1002 {
		t.Errorf("requests_total %v", got)
	}
	m.ObserveRequest("app", 999, 0, 0) // out of range: code "0", no panic
	if got := counterValue(gather(t, m), "drover_requests_total", "code", "0", "pool", "app"); got != 1 {
		t.Errorf("out-of-range code counted as %v", got)
	}
}

// TestWindow: req/s and p99 come from the last Window seconds only.
func TestWindow(t *testing.T) {
	m := New(noPools{}, nil)
	now := time.Unix(1_000_000, 0)
	m.now = func() time.Time { return now }
	for i := range 100 {
		d := 10 * time.Millisecond
		if i == 99 {
			d = 2 * time.Second
		}
		now = time.Unix(1_000_000+int64(i%5), 0)
		m.ObserveRequest("app", 200, d, 0)
	}
	now = time.Unix(1_000_004, 0)
	s := m.Stats("app")
	if s.Requests != 100 || s.ReqPerSec != 10 {
		t.Errorf("stats %+v, want 100 requests at 10/s", s)
	}
	if s.P99 < 0.010 || s.P99 > 0.0125 {
		t.Errorf("p99 %v, want about 10ms (99 of 100 requests took 10ms)", s.P99)
	}
	m.ObserveRequest("app", 200, 2*time.Second, 0)
	if s := m.Stats("app"); s.P99 < 2 || s.P99 > 2.5 {
		t.Errorf("p99 %v, want about 2s (2 of 101 took 2s)", s.P99)
	}
	now = now.Add(Window)
	if s := m.Stats("app"); s.ReqPerSec != 0 || s.P99 != 0 || s.Requests != 101 {
		t.Errorf("after the window: %+v", s)
	}
}

// TestBuckets: every duration falls in a bucket whose bounds hold it,
// and buckets are at most 25% wide.
func TestBuckets(t *testing.T) {
	prev := time.Duration(0)
	for i := range nBuckets - 1 {
		up := bucketUpper(i)
		if up <= prev {
			t.Fatalf("bucket %d upper %v <= %v", i, up, prev)
		}
		if i >= 4 && float64(up)/float64(prev) > 1.25+1e-9 {
			t.Errorf("bucket %d from %v to %v is too wide", i, prev, up)
		}
		prev = up
	}
	for _, us := range []int64{0, 1, 3, 4, 5, 7, 8, 9, 100, 999, 1000, 12345, 1_000_000, 59_999_999} {
		d := time.Duration(us) * time.Microsecond
		b := bucketOf(d)
		lo := time.Duration(0)
		if b > 0 {
			lo = bucketUpper(b - 1)
		}
		if d < lo || d >= bucketUpper(b) {
			t.Errorf("%v in bucket %d [%v, %v)", d, b, lo, bucketUpper(b))
		}
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	m := New(noPools{}, nil)
	pools := make([]string, 8)
	for i := range pools {
		pools[i] = "pool" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.ObserveRequest(pools[i%len(pools)], 200, time.Duration(i%1000)*time.Microsecond, 0)
			i++
		}
	})
}
