package server_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/drovertest"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/pool"
	"github.com/drover-pool/drover/internal/server"
)

// loadResult is what a bounded load run saw.
type loadResult struct {
	ok, failed int
	slowest    time.Duration
	pids       map[string]int
	errors     []string
}

// runLoad keeps n clients sending GET url until stop is closed. Each
// client sends one request at a time; the run is bounded by the caller.
func runLoad(url string, n int, stop <-chan struct{}) <-chan loadResult {
	out := make(chan loadResult, 1)
	go func() {
		var mu sync.Mutex
		res := loadResult{pids: map[string]int{}}
		var wg sync.WaitGroup
		client := &http.Client{Timeout: 30 * time.Second}
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					start := time.Now()
					resp, err := client.Get(url)
					var body []byte
					code := 0
					if err == nil {
						b := make([]byte, 64)
						k, _ := resp.Body.Read(b)
						body = b[:k]
						code = resp.StatusCode
						resp.Body.Close()
					}
					el := time.Since(start)
					mu.Lock()
					res.slowest = max(res.slowest, el)
					if err != nil || code != 200 {
						res.failed++
						if len(res.errors) < 5 {
							res.errors = append(res.errors, strconv.Itoa(code)+" "+errString(err)+" "+string(body))
						}
					} else {
						res.ok++
						res.pids[strings.TrimSpace(string(body))]++
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		out <- res
	}()
	return out
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

const twoInstances = header + `
[pool.app]
command = ["{{.App}}"]
start = "always"
min_instances = 2
max_instances = 2
instance_concurrency = 4
`

// recycleUnderLoad recycles a pool of two instances five times while 8
// clients keep sending, and checks that no request failed.
func recycleUnderLoad(t *testing.T, d *drovertest.Drover) loadResult {
	p := d.Pool("app")
	drovertest.Eventually(t, 10*time.Second, "two ready", func() bool { return len(p.PIDs("ready")) == 2 })
	first := p.PIDs("ready")
	stop := make(chan struct{})
	results := runLoad(d.URL+"/pid", 8, stop)
	// During an overlapped recycle a pool at max_instances runs one
	// process more, never two: a sampler checks it throughout.
	maxProcs := p.Config().MaxInstances
	if p.Config().Recycle.Overlap {
		maxProcs++
	}
	var peak atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			peak.Store(max(peak.Load(), int64(sampleProcs())))
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	seen := map[int]bool{}
	for _, pid := range first {
		seen[pid] = true
	}
	for i := range 5 {
		before := p.PIDs("ready")
		p.Recycle("manual")
		drovertest.Eventually(t, 20*time.Second, "recycle "+strconv.Itoa(i+1)+" done", func() bool {
			now := p.PIDs()
			if len(now) != 2 {
				return false
			}
			for _, pid := range now {
				if pid == before[0] || pid == before[1] {
					return false
				}
			}
			return len(p.PIDs("ready")) == 2
		})
	}
	close(stop)
	res := <-results
	<-sampled
	if int(peak.Load()) > maxProcs {
		t.Errorf("%d processes at once during recycles, want at most %d", peak.Load(), maxProcs)
	}
	if res.failed > 0 || res.ok == 0 {
		t.Fatalf("%d requests failed, %d ok during 5 recycles: %v", res.failed, res.ok, res.errors)
	}
	// The responses came from more than the first two instances.
	newPids := 0
	for pid := range res.pids {
		n, _ := strconv.Atoi(pid)
		if !seen[n] {
			newPids++
		}
	}
	if newPids < 5 {
		t.Errorf("responses show %d new pids (%v), want the replacements to serve", newPids, res.pids)
	}
	recycles := d.Events().Find(func(e events.Event) bool { return e.Kind == events.Recycle && e.Reason == "manual" })
	if len(recycles) < 10 {
		t.Errorf("%d recycle events, want 10 (two instances, five times)", len(recycles))
	}
	return res
}

func TestRecycleUnderLoad(t *testing.T) {
	d := drovertest.Start(t, twoInstances)
	res := recycleUnderLoad(t, d)
	t.Logf("%d requests, slowest %s", res.ok, res.slowest)
}

// TestRecycleSlowStart: with an app that takes 1s to become ready, the
// overlapped recycle keeps serving from the old instances: no request
// waits for a start.
func TestRecycleSlowStart(t *testing.T) {
	d := drovertest.Start(t, twoInstances+`env = { SAMPLE_STARTUP_DELAY = "1s" }
`)
	p := d.Pool("app")
	drovertest.Eventually(t, 10*time.Second, "two ready", func() bool { return len(p.PIDs("ready")) == 2 })
	// The slowest normal request, measured under the same load.
	stop := make(chan struct{})
	results := runLoad(d.URL+"/pid", 8, stop)
	time.Sleep(time.Second) // a second of normal traffic as the baseline
	close(stop)
	base := <-results
	res := recycleUnderLoad(t, d)
	margin := 400 * time.Millisecond
	if res.slowest > base.slowest+margin {
		t.Errorf("slowest request during recycles %s, normal %s: a request waited for a start", res.slowest, base.slowest)
	}
	t.Logf("normal slowest %s, during recycles slowest %s over %d requests", base.slowest, res.slowest, res.ok)
}

// TestRecycleNoOverlap: with overlap = false the old instance stops first
// and requests wait in the queue: none fails.
func TestRecycleNoOverlap(t *testing.T) {
	d := drovertest.Start(t, twoInstances+`[pool.app.recycle]
overlap = false
`)
	recycleUnderLoad(t, d)
}

// TestRecycleRequests: recycle.requests = 100 recycles the instance after
// its 100th request (plus at most 5% jitter), reason "requests".
func TestRecycleRequests(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
max_instances = 1
[pool.app.recycle]
requests = 100
`)
	first := pidOf(t, d.URL+"/pid")
	for range 98 {
		get(t, d.URL+"/pid")
	}
	if ev := eventsOf(d, events.Recycle); len(ev) != 0 {
		t.Fatalf("recycled before 100 requests: %+v", ev)
	}
	for range 10 {
		get(t, d.URL+"/pid")
	}
	drovertest.Eventually(t, 10*time.Second, "recycled for requests", func() bool {
		ev := eventsOf(d, events.Recycle)
		return len(ev) > 0 && ev[0].Reason == "requests" && ev[0].PID == first
	})
	drovertest.Eventually(t, 10*time.Second, "replacement serves", func() bool { return pidOf(t, d.URL+"/pid") != first })
}

// TestRecycleMemory: an instance that grows past recycle.memory finishes
// the request that crossed the limit (200) and is then recycled, reason
// "memory".
func TestRecycleMemory(t *testing.T) {
	d := drovertest.StartWith(t, header+`
[pool.app]
command = ["{{.App}}"]
start = "always"
min_instances = 1
[pool.app.recycle]
memory = "64MiB"
`, server.Options{MemoryInterval: 100 * time.Millisecond})
	p := d.Pool("app")
	drovertest.Eventually(t, 10*time.Second, "ready", func() bool { return len(p.PIDs("ready")) == 1 })
	first := pidOf(t, d.URL+"/pid")
	code, body, _ := get(t, d.URL+"/grow?mb=100")
	if code != 200 || body != strconv.Itoa(first) {
		t.Fatalf("growing request: %d %s, want 200 from %d", code, body, first)
	}
	drovertest.Eventually(t, 10*time.Second, "recycled for memory", func() bool {
		for _, e := range eventsOf(d, events.Recycle) {
			if e.Reason == "memory" && e.PID == first {
				return true
			}
		}
		return false
	})
	drovertest.Eventually(t, 10*time.Second, "old instance gone", func() bool { return !drovertest.Alive(first) })
}

// fakeClock is a pool.Clock whose time moves only when the test says.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c  *fakeClock
	at time.Time
	f  func()
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) pool.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves time forward and runs the timers that fell due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	keep := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			due = append(due, t)
		} else {
			keep = append(keep, t)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// TestRecycleScheduleAndInterval drives recycle.schedule and
// recycle.interval with a fake clock.
func TestRecycleScheduleAndInterval(t *testing.T) {
	t.Run("schedule", func(t *testing.T) {
		clock := &fakeClock{now: time.Date(2026, 11, 23, 2, 59, 0, 0, time.Local)}
		d := drovertest.StartWith(t, header+`
[pool.app]
command = ["{{.App}}"]
start = "always"
min_instances = 1
[pool.app.recycle]
schedule = ["03:00"]
`, server.Options{Clock: clock})
		p := d.Pool("app")
		for day := range 2 {
			drovertest.Eventually(t, 10*time.Second, "ready and timer armed", func() bool {
				return len(p.PIDs("ready")) == 1 && clock.pending() == 1
			})
			before := p.PIDs("ready")[0]
			clock.Advance(30 * time.Second) // 02:59:30: not yet
			if n := len(eventsOf(d, events.Recycle)); n != day {
				t.Fatalf("day %d: recycled early (%d events)", day, n)
			}
			if day == 0 {
				clock.Advance(30 * time.Second) // 03:00
			} else {
				clock.Advance(24*time.Hour - 30*time.Second) // 03:00 the next day
			}
			drovertest.Eventually(t, 10*time.Second, "scheduled recycle", func() bool {
				ev := eventsOf(d, events.Recycle)
				return len(ev) == day+1 && ev[day].Reason == "schedule" && ev[day].PID == before
			})
			drovertest.Eventually(t, 10*time.Second, "replaced", func() bool {
				pids := p.PIDs("ready")
				return len(pids) == 1 && pids[0] != before && len(p.PIDs()) == 1
			})
		}
	})
	t.Run("interval", func(t *testing.T) {
		clock := &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.Local)}
		d := drovertest.StartWith(t, header+`
[pool.app]
command = ["{{.App}}"]
start = "always"
min_instances = 1
[pool.app.recycle]
interval = "6h"
`, server.Options{Clock: clock})
		p := d.Pool("app")
		drovertest.Eventually(t, 10*time.Second, "ready and timer armed", func() bool {
			return len(p.PIDs("ready")) == 1 && clock.pending() == 1
		})
		before := p.PIDs("ready")[0]
		clock.Advance(5 * time.Hour)
		if n := len(eventsOf(d, events.Recycle)); n != 0 {
			t.Fatalf("recycled after 5h of 6h")
		}
		clock.Advance(time.Hour)
		drovertest.Eventually(t, 10*time.Second, "interval recycle", func() bool {
			ev := eventsOf(d, events.Recycle)
			return len(ev) == 1 && ev[0].Reason == "interval" && ev[0].PID == before
		})
	})
}

// TestRecycleWatch: touching a recycle.watch file recycles the pool.
func TestRecycleWatch(t *testing.T) {
	dir := t.TempDir()
	touch := filepath.Join(dir, "reload.txt")
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
start = "always"
min_instances = 1
[pool.app.recycle]
watch = ["`+touch+`"]
`)
	p := d.Pool("app")
	drovertest.Eventually(t, 10*time.Second, "ready", func() bool { return len(p.PIDs("ready")) == 1 })
	before := p.PIDs("ready")[0]
	os.WriteFile(touch, []byte("x"), 0o644)
	drovertest.Eventually(t, 10*time.Second, "recycled on touch", func() bool {
		ev := eventsOf(d, events.Recycle)
		return len(ev) == 1 && ev[0].Reason == "watch" && ev[0].PID == before
	})
	drovertest.Eventually(t, 10*time.Second, "replaced", func() bool {
		pids := p.PIDs("ready")
		return len(pids) == 1 && pids[0] != before
	})
}

// TestRecycleReplacementFails: a replacement that cannot start leaves the
// old instance serving, and the failure counts.
func TestRecycleReplacementFails(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "broken")
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
start = "always"
min_instances = 1
env = { SAMPLE_CRASH_IF_EXISTS = "`+broken+`" }
[pool.app.rapid_fail]
max_failures = 100
`)
	p := d.Pool("app")
	drovertest.Eventually(t, 10*time.Second, "ready", func() bool { return len(p.PIDs("ready")) == 1 })
	old := p.PIDs("ready")[0]
	os.WriteFile(broken, nil, 0o644)
	p.Recycle("manual")
	drovertest.Eventually(t, 10*time.Second, "two failed replacement starts", func() bool {
		return len(eventsOf(d, events.StartupFailure)) >= 2
	})
	for range 5 {
		if pid := pidOf(t, d.URL+"/pid"); pid != old {
			t.Fatalf("served by %d, want the old instance %d", pid, old)
		}
	}
	os.Remove(broken) // fixed: the retried recycle succeeds
	drovertest.Eventually(t, 20*time.Second, "recycle retried and done", func() bool {
		pids := p.PIDs("ready")
		return len(pids) == 1 && pids[0] != old
	})
}

// TestReload: one pool changed, one added, one removed, one unchanged;
// the unchanged pool keeps its pids and serves throughout.
func TestReload(t *testing.T) {
	base := `
[server]
listen = ["{{.Listen}}"]
admin = ""
access_log = ""
runtime_dir = "{{.Runtime}}"
[[route]]
path = "/same"
pool = "same"
strip_prefix = true
[[route]]
path = "/changed"
pool = "changed"
strip_prefix = true
[pool.same]
command = ["{{.App}}"]
start = "always"
min_instances = 2
max_instances = 2
instance_concurrency = 4
[pool.changed]
command = ["{{.App}}"]
start = "always"
min_instances = 1
`
	d := drovertest.Start(t, base+`
[[route]]
path = "/removed"
pool = "removed"
strip_prefix = true
[pool.removed]
command = ["{{.App}}"]
start = "always"
min_instances = 1
`)
	same, changed, removed := d.Pool("same"), d.Pool("changed"), d.Pool("removed")
	drovertest.Eventually(t, 10*time.Second, "all ready", func() bool {
		return len(same.PIDs("ready")) == 2 && len(changed.PIDs("ready")) == 1 && len(removed.PIDs("ready")) == 1
	})
	samePids := same.PIDs("ready")
	changedPid := changed.PIDs("ready")[0]
	removedPid := removed.PIDs("ready")[0]

	stop := make(chan struct{})
	results := runLoad(d.URL+"/same/pid", 8, stop)

	next := strings.ReplaceAll(base, "{{.Listen}}", d.Listen)
	next = strings.ReplaceAll(next, "{{.Runtime}}", d.Runtime)
	next = strings.ReplaceAll(next, "{{.App}}", d.App)
	next = strings.Replace(next, "[pool.changed]\ncommand", "[pool.changed]\nenv = { CHANGED = \"1\" }\ncommand", 1)
	extra := "127.0.0.1:" + strconv.Itoa(drovertest.FreePort(t))
	next = strings.Replace(next, `listen = ["`+d.Listen+`"]`, `listen = ["`+d.Listen+`", "`+extra+`"]`, 1)
	next += `
[[route]]
path = "/added"
pool = "added"
strip_prefix = true
[pool.added]
command = ["` + d.App + `"]
`
	os.WriteFile(d.File, []byte(next), 0o644)
	if err := d.Reload(d.File); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, d.URL+"/added/pid"); code != 200 {
		t.Errorf("added pool: %d", code)
	}
	if code, _, _ := get(t, "http://"+extra+"/same/pid"); code != 200 {
		t.Errorf("added listener: %d", code)
	}
	if code, _, reason := get(t, d.URL+"/removed/pid"); code != 404 || reason != "no-route" {
		t.Errorf("removed pool's route: %d %q", code, reason)
	}
	newChanged := pidOf(t, d.URL+"/changed/pid")
	if newChanged == changedPid {
		t.Errorf("changed pool still served by %d", changedPid)
	}
	drovertest.Eventually(t, 10*time.Second, "removed and old changed processes gone", func() bool {
		return !drovertest.Alive(removedPid) && !drovertest.Alive(changedPid)
	})
	close(stop)
	res := <-results
	if res.failed > 0 {
		t.Fatalf("%d requests to the unchanged pool failed during reload: %v", res.failed, res.errors)
	}
	if now := d.Pool("same").PIDs("ready"); len(now) != 2 || !sameSet(now, samePids) {
		t.Errorf("unchanged pool pids %v, want %v", now, samePids)
	}

	// A broken file changes nothing and names the line.
	os.WriteFile(d.File, []byte(next+"\n[pool.bad]\nmax_instances = \"x\"\n"), 0o644)
	err := d.Reload(d.File)
	if err == nil || !strings.Contains(err.Error(), "drover.toml:") {
		t.Fatalf("reload of a broken file: %v, want errors with file:line", err)
	}
	if code, _, _ := get(t, d.URL+"/added/pid"); code != 200 {
		t.Errorf("after refused reload: %d", code)
	}
	if now := d.Pool("same").PIDs("ready"); !sameSet(now, samePids) {
		t.Errorf("refused reload touched the unchanged pool: %v", now)
	}
}

func sameSet(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[int]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}
