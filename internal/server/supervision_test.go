package server_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/cgroup"
	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/drovertest"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/pool"
	"github.com/drover-pool/drover/internal/server"
)

func pidOf(t *testing.T, url string) int {
	t.Helper()
	code, body, _ := get(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	pid, _ := strconv.Atoi(body)
	return pid
}

func eventsOf(d *drovertest.Drover, kind string) []events.Event {
	return d.Events().Find(func(e events.Event) bool { return e.Kind == kind })
}

// TestRunAsNobody: an instance with user = "nobody" runs as 65534 with no
// root group among its groups.
func TestRunAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root, as drover needs root to change identity; CI runs as root")
	}
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
user = "nobody"
`)
	pid := pidOf(t, d.URL+"/pid")
	uid := strings.Fields(drovertest.Status(pid, "Uid"))
	gid := strings.Fields(drovertest.Status(pid, "Gid"))
	groups := strings.Fields(drovertest.Status(pid, "Groups"))
	if len(uid) == 0 || uid[0] != "65534" || uid[1] != "65534" || gid[0] != "65534" {
		t.Fatalf("Uid %v Gid %v, want 65534", uid, gid)
	}
	for _, g := range groups {
		if g == "0" {
			t.Fatalf("Groups %v include root's group 0", groups)
		}
	}
	if nnp := drovertest.Status(pid, "NoNewPrivs"); nnp != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", nnp)
	}
}

// TestLimits: address_space, open_files, nice and cpu_affinity are in
// force in the worker (a Python app: CPython starts under 256 MiB of
// address space, a Go program does not).
func TestLimits(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["python3", "{{.PyApp}}"]
[pool.app.limits]
address_space = "256MiB"
open_files = 123
nice = 5
cpu_affinity = [1]
`)
	pid := pidOf(t, d.URL+"/pid")
	code, body, _ := get(t, d.URL+"/alloc?mb=512")
	if code != 507 {
		t.Errorf("512 MiB allocation under a 256 MiB limit: %d %s, want it refused inside the app (507)", code, body)
	}
	if code, _, _ := get(t, d.URL+"/alloc?mb=16"); code != 200 {
		t.Errorf("16 MiB allocation: %d, want 200", code)
	}
	limits, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	for _, want := range []string{`Max address space\s+268435456\s+268435456`, `Max open files\s+123\s+123`} {
		if !matches(want, string(limits)) {
			t.Errorf("/proc/%d/limits lacks %s:\n%s", pid, want, limits)
		}
	}
	stat, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	if nice := f[16]; nice != "5" { // field 19 of stat
		t.Errorf("nice %s, want 5", nice)
	}
	if cpus := drovertest.Status(pid, "Cpus_allowed_list"); cpus != "1" {
		t.Errorf("Cpus_allowed_list %q, want 1", cpus)
	}
}

// TestLimitTooLowToStart: a limit below what a program needs to start
// (the Go runtime under 256 MiB of address space) is a startup failure
// that names the pool and the key, and the other pools keep serving.
func TestLimitTooLowToStart(t *testing.T) {
	d := drovertest.Start(t, `
[server]
listen = ["{{.Listen}}"]
admin = ""
access_log = ""
runtime_dir = "{{.Runtime}}"
[[route]]
path = "/tight"
pool = "tight"
strip_prefix = true
[[route]]
path = "/"
pool = "app"
[pool.tight]
command = ["{{.App}}"]
[pool.tight.limits]
address_space = "256MiB"
[pool.app]
command = ["{{.App}}"]
`)
	if code, _, reason := get(t, d.URL+"/tight/pid"); code != 502 || reason != "bad-gateway" {
		t.Fatalf("tight pool: %d %q, want 502 bad-gateway", code, reason)
	}
	var fails []events.Event
	drovertest.Eventually(t, 5*time.Second, "startup-failure event", func() bool {
		fails = eventsOf(d, events.StartupFailure)
		return len(fails) > 0
	})
	if !strings.Contains(fails[0].Detail, `pool "tight"`) || !strings.Contains(fails[0].Detail, "limits.address_space") {
		t.Fatalf("startup failure events %+v: want the pool and limits.address_space named", fails)
	}
	if code, _, _ := get(t, d.URL+"/pid"); code != 200 {
		t.Fatalf("other pool: %d, want 200", code)
	}
}

// TestStartupTimeout: a worker that never becomes ready is killed at
// startup_timeout and the failure is counted.
func TestStartupTimeout(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
startup_timeout = "300ms"
env = { SAMPLE_NEVER_READY = "1" }
`)
	start := time.Now()
	if code, _, _ := get(t, d.URL+"/pid"); code != 502 {
		t.Fatalf("got %d, want 502", code)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 3*time.Second {
		t.Errorf("answered after %s, want about startup_timeout", el)
	}
	// Events are emitted just after the pool lets go of its lock, which
	// can be just after the request got its answer.
	var spawns, fails []events.Event
	drovertest.Eventually(t, 5*time.Second, "spawn and startup-failure events", func() bool {
		spawns, fails = eventsOf(d, events.Spawn), eventsOf(d, events.StartupFailure)
		return len(spawns) > 0 && len(fails) > 0
	})
	if !strings.Contains(fails[0].Detail, "startup_timeout") {
		t.Fatalf("startup failure %+v does not name startup_timeout", fails[0])
	}
	drovertest.Eventually(t, 15*time.Second, "never-ready worker killed", func() bool { return !drovertest.Alive(spawns[0].PID) })
}

// TestShutdownTimeout: a worker that ignores SIGTERM is killed at
// shutdown_timeout, together with the grandchild it spawned.
func TestShutdownTimeout(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
shutdown_timeout = "500ms"
env = { SAMPLE_IGNORE_TERM = "1" }
`)
	pid := pidOf(t, d.URL+"/pid")
	child := pidOf(t, d.URL+"/spawn")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.Pool("app").Shutdown(ctx)
	el := time.Since(start)
	if el < 500*time.Millisecond || el > 3*time.Second {
		t.Errorf("shutdown took %s, want about shutdown_timeout 500ms", el)
	}
	drovertest.Eventually(t, 15*time.Second, "worker and grandchild gone", func() bool {
		return !drovertest.Alive(pid) && !drovertest.Alive(child)
	})
}

// TestHealthPing: a worker that stops answering pings is replaced within
// interval + timeout, and no client request waits for a ping.
func TestHealthPing(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
start = "always"
min_instances = 1
instance_concurrency = 4
[pool.app.health]
path = "/health"
interval = "200ms"
timeout = "300ms"
`)
	p := d.Pool("app")
	drovertest.Eventually(t, 15*time.Second, "ready", func() bool { return len(p.PIDs("ready")) == 1 })
	old := pidOf(t, d.URL+"/pid")
	// Clients keep asking while the instance freezes and is replaced.
	var mu sync.Mutex
	var slowest time.Duration
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := time.Now()
			resp, err := http.Get(d.URL + "/pid")
			if err == nil {
				resp.Body.Close()
			}
			mu.Lock()
			slowest = max(slowest, time.Since(s))
			mu.Unlock()
			time.Sleep(10 * time.Millisecond) // pacing of the client loop
		}
	}()
	frozeAt := time.Now()
	get(t, d.URL+"/freeze")
	drovertest.Eventually(t, 15*time.Second, "frozen instance replaced", func() bool {
		pids := p.PIDs("ready")
		return len(pids) == 1 && pids[0] != old
	})
	replacedAfter := time.Since(frozeAt)
	close(stop)
	wg.Wait()
	// interval + timeout + the replacement's start.
	if replacedAfter > 2500*time.Millisecond {
		t.Errorf("replaced after %s, want within interval+timeout (500ms) plus a start", replacedAfter)
	}
	if slowest > 500*time.Millisecond {
		t.Errorf("a client request took %s while pings ran, want no request delayed by a ping", slowest)
	}
	if len(eventsOf(d, events.PingFailure)) == 0 {
		t.Error("no ping-failure event")
	}
}

// TestRapidFail: a crash-looping app stops the pool after max_failures;
// requests then get 503 pool-stopped; starting the pool again serves once
// the app is fixed.
func TestRapidFail(t *testing.T) {
	for _, mode := range []string{"503", "reset"} {
		t.Run(mode, func(t *testing.T) {
			broken := filepath.Join(t.TempDir(), "broken")
			os.WriteFile(broken, nil, 0o644)
			d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
env = { SAMPLE_CRASH_IF_EXISTS = "`+broken+`" }
[pool.app.rapid_fail]
max_failures = 3
interval = "1m"
on_stopped = "`+mode+`"
`)
			p := d.Pool("app")
			// Each request meets a failed start (with backoff between).
			drovertest.Eventually(t, 20*time.Second, "pool stopped by rapid-fail", func() bool {
				resp, err := http.Get(d.URL + "/pid")
				if err == nil {
					resp.Body.Close()
				}
				s, _ := p.State()
				return s == pool.Stopped
			})
			if _, why := p.State(); why != "rapid-fail" {
				t.Fatalf("stopped because %q", why)
			}
			// The last failure's event follows the stop by a moment.
			drovertest.Eventually(t, 5*time.Second, "three startup-failure events", func() bool {
				return len(eventsOf(d, events.StartupFailure)) >= 3
			})
			if n := len(eventsOf(d, events.StartupFailure)); n != 3 {
				t.Errorf("%d startup failures before the stop, want max_failures 3", n)
			}
			resp, err := http.Get(d.URL + "/pid")
			if mode == "503" {
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 503 || resp.Header.Get("Drover-Error") != "pool-stopped" {
					t.Fatalf("stopped pool: %d %q, want 503 pool-stopped", resp.StatusCode, resp.Header.Get("Drover-Error"))
				}
			} else {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("stopped pool with on_stopped=reset answered %d, want the connection closed", resp.StatusCode)
				}
			}
			os.Remove(broken) // the app is fixed
			p.StartPool()
			if code, _, _ := get(t, d.URL+"/pid"); code != 200 {
				t.Fatalf("after StartPool: %d, want 200", code)
			}
		})
	}
}

// TestOrphan: a hung instance is left running for a debugger, orphan.exec
// runs with its pid, and the pool never routes to it again.
func TestOrphan(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
max_instances = 1
request_timeout = "300ms"
[pool.app.orphan]
enabled = true
exec = ["sh", "-c", "echo {pid} > {{.Dir}}/orphan.pid"]
`)
	old := pidOf(t, d.URL+"/pid")
	if code, _, reason := get(t, d.URL+"/hang"); code != 504 || reason != "request-timeout" {
		t.Fatalf("hang: %d %q", code, reason)
	}
	var written []byte
	drovertest.Eventually(t, 15*time.Second, "orphan.exec ran", func() bool {
		written, _ = os.ReadFile(filepath.Join(d.Dir, "orphan.pid"))
		return len(written) > 0
	})
	if strings.TrimSpace(string(written)) != strconv.Itoa(old) {
		t.Errorf("orphan.exec wrote %q, want pid %d", written, old)
	}
	for range 5 {
		if pid := pidOf(t, d.URL+"/pid"); pid == old {
			t.Fatal("the pool routed a request to its orphan")
		}
	}
	if !drovertest.Alive(old) {
		t.Fatal("orphan was killed; it should stay for a debugger")
	}
	for _, pid := range d.Pool("app").PIDs() {
		if pid == old {
			t.Fatal("orphan still counted as an instance")
		}
	}
	// It does not outlive drover.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.Shutdown(ctx)
	drovertest.Eventually(t, 15*time.Second, "orphan gone after shutdown", func() bool { return !drovertest.Alive(old) })
}

func matches(pattern, s string) bool { return regexp.MustCompile(pattern).MatchString(s) }

// TestCPUAction: limits.cpu with cpu_action = "kill" kills an instance
// that used more than its share over the window (counted as a failure);
// with "log" it only records an event.
func TestCPUAction(t *testing.T) {
	for _, action := range []string{"kill", "log"} {
		t.Run(action, func(t *testing.T) {
			d := drovertest.StartWith(t, header+`
[pool.app]
command = ["{{.App}}"]
instance_concurrency = 2
[pool.app.limits]
cpu = "20%"
cpu_action = "`+action+`"
`, server.Options{CPUWindow: 200 * time.Millisecond})
			pid := pidOf(t, d.URL+"/pid")
			go http.Get(d.URL + "/burn?d=3s")
			want := events.CPUKill
			if action == "log" {
				want = events.CPULimit
			}
			drovertest.Eventually(t, 15*time.Second, want+" event", func() bool {
				for _, e := range eventsOf(d, want) {
					if e.PID == pid {
						return true
					}
				}
				return false
			})
			if action == "kill" {
				drovertest.Eventually(t, 15*time.Second, "burning instance killed", func() bool { return !drovertest.Alive(pid) })
			} else if !drovertest.Alive(pid) {
				t.Fatal("cpu_action = log killed the instance")
			}
		})
	}
}

// TestCgroupLimitsRefusedWithoutDelegation: on a machine without a
// delegated cgroup v2 tree, a pool that asks for cgroup limits is refused
// with a message that says why and what to do; nothing is silently
// unlimited.
func TestCgroupLimitsRefusedWithoutDelegation(t *testing.T) {
	if _, err := cgroup.Detect(); err == nil {
		t.Skip("this machine delegates cgroup v2 to drover; the refusal cannot be shown here")
	}
	file, _ := drovertest.WriteConfig(t, header+`
[pool.app]
command = ["{{.App}}"]
[pool.app.limits]
memory = "256MiB"
`)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	err = server.Preflight(cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "pool.app.limits.memory") || !strings.Contains(err.Error(), ":15:") || !strings.Contains(err.Error(), "Delegate=yes") {
		t.Fatalf("preflight: %v", err)
	}
	if _, err := server.New(cfg, server.Options{}); err == nil || !strings.Contains(err.Error(), `pool "app"`) {
		t.Fatalf("server.New: %v, want the pool refused", err)
	}

	// Services are held to the same rule.
	file, _ = drovertest.WriteConfig(t, header+`
[pool.app]
command = ["{{.App}}"]
[service.indexer]
command = ["sleep", "1000"]
[service.indexer.limits]
pids = 10
`)
	if cfg, err = config.Load(file); err != nil {
		t.Fatal(err)
	}
	if err := server.Preflight(cfg, nil); err == nil || !strings.Contains(err.Error(), "service.indexer.limits.pids") {
		t.Fatalf("preflight of a service: %v", err)
	}
	if _, err := server.New(cfg, server.Options{}); err == nil || !strings.Contains(err.Error(), `service "indexer"`) {
		t.Fatalf("server.New: %v, want the service refused", err)
	}
}
