package service_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/proctest"

	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/process"
	"github.com/drover-pool/drover/internal/service"
)

// TestMain checks that no supervisor, readiness or notify goroutine
// outlives the Managers of the tests (without a dependency: the goroutines
// of this package are recognised by their frames).
//
// process.Init comes first: a service with limits is started through
// the process package's helper stage, which re-executes this test binary.
func TestMain(m *testing.M) {
	process.Init()
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(5 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines of internal/service outlived the tests:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// leakedGoroutines returns the stacks of goroutines still running code of
// this package (not its tests), waiting up to timeout for them to end.
func leakedGoroutines(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "drover/internal/service.") && !strings.Contains(g, "service_test.") &&
				!strings.Contains(g, "leakedGoroutines") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fastBackoff keeps restart tests quick; its shape is DefaultBackoff's.
var fastBackoff = service.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond, Factor: 2, ResetAfter: 5 * time.Second}

type harness struct {
	*service.Manager
	ev *events.Log
}

// newManager builds a Manager from the [service.*] tables of a TOML
// document. Cleanup shuts it down and checks that no process it ever
// spawned is still alive.
func newManager(t *testing.T, toml string) *harness {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	ev := events.New(nil, 4096)
	m, err := service.NewManager(cfg.Services, ev, nil, service.WithBackoff(fastBackoff), service.WithNotifyDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{Manager: m, ev: ev}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		for _, pid := range h.spawned("") {
			if proctest.Alive(pid) {
				t.Errorf("pid %d outlived Shutdown", pid)
			}
		}
	})
	return h
}

func (h *harness) info(t *testing.T, name string) service.Info {
	t.Helper()
	for _, in := range h.List() {
		if in.Name == name {
			return in
		}
	}
	t.Fatalf("service %q not listed", name)
	return service.Info{}
}

// events returns the events of one kind for service name ("" = any).
func (h *harness) events(kind, name string) []events.Event {
	return h.ev.Find(func(e events.Event) bool {
		return e.Kind == kind && (name == "" || e.Service == name)
	})
}

// spawned returns the pids spawned for service name ("" = any).
func (h *harness) spawned(name string) []int {
	var pids []int
	for _, e := range h.events(events.Spawn, name) {
		pids = append(pids, e.PID)
	}
	return pids
}

// python returns the real python3 interpreter (not a version manager's
// shim, which would need drover's environment), or skips the test.
func python(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("python3: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func script(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// notifyScript sends READY=1 the way sd_notify does; with the argument
// "ignore-term" it first makes itself deaf to SIGTERM.
const notifyScript = `
import os, signal, socket, sys
if sys.argv[1:] == ["ignore-term"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"STATUS=warming up\nREADY=1\n", os.environ["NOTIFY_SOCKET"])
while True:
    signal.pause()
`

// listenScript listens on tcp PORT or unix PATH and accepts forever.
const listenScript = `
import socket, sys
kind, addr = sys.argv[1], sys.argv[2]
if kind == "tcp":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(addr)))
else:
    s = socket.socket(socket.AF_UNIX)
    s.bind(addr)
s.listen(16)
while True:
    s.accept()[0].close()
`

func q(s string) string { return strconv.Quote(s) }

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestAlwaysServiceRestartedAfterKill(t *testing.T) {
	h := newManager(t, `
[service.worker]
command = ["sleep", "600"]
`)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 5*time.Second, "worker running", func() bool { return h.info(t, "worker").State == service.StateRunning })
	first := h.info(t, "worker")
	if first.PID == 0 || !proctest.Alive(first.PID) || first.Start != "always" || first.Restarts != 0 {
		t.Fatalf("after Start: %+v", first)
	}

	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 5*time.Second, "worker restarted", func() bool {
		in := h.info(t, "worker")
		return in.State == service.StateRunning && in.PID != first.PID
	})
	in := h.info(t, "worker")
	if in.Restarts != 1 || in.LastExit != "signal: killed" || !proctest.Alive(in.PID) {
		t.Fatalf("after restart: %+v; want 1 restart, last exit signal: killed", in)
	}
	crashes := h.events(events.Crash, "worker")
	if len(crashes) != 1 || crashes[0].PID != first.PID || crashes[0].Detail != "signal: killed" {
		t.Fatalf("crash events %+v", crashes)
	}
	if n := len(h.events(service.EventRestart, "worker")); n != 1 {
		t.Fatalf("%d restart events, want 1", n)
	}
	// The restart came after the first backoff pause, not after some poll.
	spawns := h.events(events.Spawn, "worker")
	gap := spawns[1].Time.Sub(crashes[0].Time)
	if limit := fastBackoff.Next(1, nil) + time.Second; gap > limit {
		t.Fatalf("restarted %s after the crash, want within %s", gap, limit)
	}
}

func TestOnDemandServiceStartsOnlyWhenAsked(t *testing.T) {
	h := newManager(t, `
[service.indexer]
command = ["sleep", "600"]
start = "on-demand"
restart = "always"
`)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if in := h.info(t, "indexer"); in.State != service.StateStopped || in.PID != 0 || in.Start != "on-demand" {
		t.Fatalf("after Start: %+v, want stopped", in)
	}
	if n := len(h.spawned("indexer")); n != 0 {
		t.Fatalf("on-demand service spawned %d times by Start", n)
	}

	if err := h.StartService(context.Background(), "indexer", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	in := h.info(t, "indexer")
	if in.State != service.StateRunning || !proctest.Alive(in.PID) {
		t.Fatalf("after StartService: %+v", in)
	}
	// Starting a running service is a no-op.
	if err := h.StartService(context.Background(), "indexer", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(h.spawned("indexer")); n != 1 {
		t.Fatalf("spawned %d times, want 1", n)
	}

	// A stop is not a crash: even restart = "always" leaves it down.
	if err := h.StopService(context.Background(), "indexer"); err != nil {
		t.Fatal(err)
	}
	if after := h.info(t, "indexer"); after.State != service.StateStopped || after.PID != 0 || proctest.Alive(in.PID) {
		t.Fatalf("after StopService: %+v, old pid alive %v", after, proctest.Alive(in.PID))
	}
	if n := len(h.events(events.Crash, "indexer")); n != 0 {
		t.Fatalf("%d crash events for a requested stop", n)
	}
	exits := h.events(events.Exit, "indexer")
	if len(exits) != 1 || exits[0].Reason != "admin" {
		t.Fatalf("exit events %+v", exits)
	}
}

func TestTCPReadyNeverListensTimesOut(t *testing.T) {
	port := freePort(t)
	h := newManager(t, `
[service.slow]
command = ["sleep", "600"]
start = "on-demand"
ready = "tcp:127.0.0.1:`+strconv.Itoa(port)+`"
`)
	start := time.Now()
	err := h.StartService(context.Background(), "slow", 300*time.Millisecond)
	if !errors.Is(err, service.ErrWaitTimeout) {
		t.Fatalf("StartService = %v, want ErrWaitTimeout", err)
	}
	if !strings.Contains(err.Error(), `service "slow": start:`) {
		t.Errorf("error %q does not name the service", err)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("StartService returned after %s, want the 300ms wait", took)
	}
	// The start goes on.
	in := h.info(t, "slow")
	if in.State != service.StateStarting || !proctest.Alive(in.PID) {
		t.Fatalf("after the timeout: %+v, want starting with a live process", in)
	}
}

func TestConnectReady(t *testing.T) {
	py := python(t)
	listen := script(t, "listen.py", listenScript)
	port := freePort(t)
	sock := filepath.Join(t.TempDir(), "svc.sock")
	h := newManager(t, `
[service.tcp]
command = [`+q(py)+`, `+q(listen)+`, "tcp", "`+strconv.Itoa(port)+`"]
start = "on-demand"
ready = "tcp:127.0.0.1:`+strconv.Itoa(port)+`"

[service.unix]
command = [`+q(py)+`, `+q(listen)+`, "unix", `+q(sock)+`]
start = "on-demand"
ready = `+q("unix:"+sock)+`
`)
	for _, name := range []string{"tcp", "unix"} {
		if err := h.StartService(context.Background(), name, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if in := h.info(t, name); in.State != service.StateReady || !proctest.Alive(in.PID) {
			t.Fatalf("%s: %+v, want ready", name, in)
		}
		if n := len(h.events(events.Ready, name)); n != 1 {
			t.Fatalf("%s: %d ready events", name, n)
		}
	}
}

func TestNotifyReady(t *testing.T) {
	py := python(t)
	h := newManager(t, `
[service.notifier]
command = [`+q(py)+`, `+q(script(t, "notify.py", notifyScript))+`]
start = "on-demand"
ready = "notify"
`)
	if err := h.StartService(context.Background(), "notifier", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	in := h.info(t, "notifier")
	if in.State != service.StateReady || !proctest.Alive(in.PID) {
		t.Fatalf("%+v, want ready", in)
	}
	ready := h.events(events.Ready, "notifier")
	if len(ready) != 1 || ready[0].PID != in.PID {
		t.Fatalf("ready events %+v", ready)
	}
}

func TestNotifyNeverReady(t *testing.T) {
	h := newManager(t, `
[service.mute]
command = ["sh", "-c", "test -n \"$NOTIFY_SOCKET\" && exec sleep 600"]
start = "on-demand"
ready = "notify"
`)
	err := h.StartService(context.Background(), "mute", 200*time.Millisecond)
	if !errors.Is(err, service.ErrWaitTimeout) {
		t.Fatalf("StartService = %v, want ErrWaitTimeout", err)
	}
	// Running (so NOTIFY_SOCKET was set) but not ready.
	if in := h.info(t, "mute"); in.State != service.StateStarting || !proctest.Alive(in.PID) {
		t.Fatalf("%+v, want starting", in)
	}
}

func TestRapidFail(t *testing.T) {
	h := newManager(t, `
[service.broken]
command = ["sh", "-c", "exit 3"]
restart = "on-failure"
[service.broken.rapid_fail]
max_failures = 3
interval = "1m"
`)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "broken failed", func() bool { return h.info(t, "broken").State == service.StateFailed })
	in := h.info(t, "broken")
	if in.Restarts != 2 || in.LastExit != "exit status 3" || in.PID != 0 {
		t.Fatalf("%+v, want 2 restarts, exit status 3", in)
	}
	if n := len(h.spawned("broken")); n != 3 {
		t.Fatalf("spawned %d times, want max_failures = 3", n)
	}
	if n := len(h.events(events.RapidFail, "broken")); n != 1 {
		t.Fatalf("%d rapid-fail events, want 1", n)
	}

	// Failed answers ErrFailed (409) until stopped...
	for range 2 {
		err := h.StartService(context.Background(), "broken", time.Second)
		if !errors.Is(err, service.ErrFailed) {
			t.Fatalf("StartService on failed = %v, want ErrFailed", err)
		}
	}
	if n := len(h.spawned("broken")); n != 3 {
		t.Fatalf("StartService on a failed service spawned it")
	}
	// ...and then starts again, with a fresh rapid-fail window.
	if err := h.StopService(context.Background(), "broken"); err != nil {
		t.Fatal(err)
	}
	if st := h.info(t, "broken").State; st != service.StateStopped {
		t.Fatalf("after StopService: %s, want stopped", st)
	}
	if err := h.StartService(context.Background(), "broken", 5*time.Second); err != nil {
		t.Fatalf("StartService after stop = %v", err)
	}
	proctest.Eventually(t, 10*time.Second, "broken failed again", func() bool { return h.info(t, "broken").State == service.StateFailed })
	if n := len(h.spawned("broken")); n != 6 {
		t.Fatalf("spawned %d times, want 3 more", n)
	}
}

func TestSpawnFailureCountsAsFailure(t *testing.T) {
	h := newManager(t, `
[service.missing]
command = ["/nonexistent/drover-test-program"]
[service.missing.rapid_fail]
max_failures = 2
`)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "missing failed", func() bool { return h.info(t, "missing").State == service.StateFailed })
	in := h.info(t, "missing")
	if !strings.HasPrefix(in.LastError, "spawn: ") || in.Restarts != 1 {
		t.Fatalf("%+v, want a spawn error and 1 restart", in)
	}
	if n := len(h.events(events.SpawnFailure, "missing")); n != 2 {
		t.Fatalf("%d spawn-failure events, want 2", n)
	}
	err := h.StartService(context.Background(), "missing", time.Second)
	if !errors.Is(err, service.ErrFailed) || !strings.Contains(err.Error(), `service "missing"`) {
		t.Fatalf("StartService = %v, want ErrFailed naming the service", err)
	}
}

func TestRestartPolicy(t *testing.T) {
	tests := []struct {
		restart, script string
		restarts        bool
		lastExit        string
	}{
		{"never", "exit 1", false, "exit status 1"},
		{"never", "exit 0", false, "exit status 0"},
		{"on-failure", "exit 0", false, "exit status 0"},
		{"on-failure", "exit 1", true, "exit status 1"},
		{"always", "exit 0", true, "exit status 0"},
		{"always", "exit 1", true, "exit status 1"},
	}
	for _, tc := range tests {
		t.Run(tc.restart+"/"+tc.script, func(t *testing.T) {
			h := newManager(t, `
[service.s]
command = ["sh", "-c", `+q(tc.script)+`]
restart = `+q(tc.restart)+`
`)
			if err := h.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			if tc.restarts {
				proctest.Eventually(t, 10*time.Second, "a restart", func() bool { return h.info(t, "s").Restarts >= 1 })
				if got := h.info(t, "s").LastExit; got != tc.lastExit {
					t.Fatalf("last exit %q, want %q", got, tc.lastExit)
				}
				return
			}
			// Once stopped the service has no supervisor, so nothing can
			// spawn it again: "stays down" needs no waiting.
			proctest.Eventually(t, 10*time.Second, "stopped", func() bool {
				in := h.info(t, "s")
				return in.State == service.StateStopped && in.LastExit != ""
			})
			in := h.info(t, "s")
			if in.LastExit != tc.lastExit || in.Restarts != 0 || len(h.spawned("s")) != 1 {
				t.Fatalf("%+v, spawned %d; want one run ending %q", in, len(h.spawned("s")), tc.lastExit)
			}
		})
	}
}

func TestRestartNeverStaysDownAfterKill(t *testing.T) {
	h := newManager(t, `
[service.once]
command = ["sleep", "600"]
restart = "never"
`)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 5*time.Second, "once running", func() bool { return h.info(t, "once").State == service.StateRunning })
	pid := h.info(t, "once").PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 5*time.Second, "once stopped", func() bool { return h.info(t, "once").State == service.StateStopped })
	in := h.info(t, "once")
	if in.LastExit != "signal: killed" || in.Restarts != 0 || in.PID != 0 || len(h.spawned("once")) != 1 {
		t.Fatalf("%+v, want down after one run", in)
	}
	// It can still be started explicitly.
	if err := h.StartService(context.Background(), "once", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestShutdownStopsInReverseStartOrder(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	h := newManager(t, `
[service.a]
command = ["sleep", "600"]
[service.b]
command = ["sh", "-c", "sleep 600 & echo $! > `+pidFile+`; wait"]
[service.c]
command = ["sleep", "600"]
[service.d]
command = ["sleep", "600"]
start = "on-demand"
[service.e]
command = ["sleep", "600"]
start = "on-demand"
`)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.StartService(context.Background(), "e", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := h.StartService(context.Background(), "d", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var spawnOrder []string
	for _, e := range h.events(events.Spawn, "") {
		spawnOrder = append(spawnOrder, e.Service)
	}
	if want := []string{"a", "b", "c", "e", "d"}; !slices.Equal(spawnOrder, want) {
		t.Fatalf("spawn order %v, want %v", spawnOrder, want)
	}
	var grandchild int
	proctest.Eventually(t, 5*time.Second, "grandchild pid file", func() bool {
		b, _ := os.ReadFile(pidFile)
		grandchild, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return grandchild > 0
	})
	pids := h.spawned("")
	for _, pid := range append(pids, grandchild) {
		if !proctest.Alive(pid) {
			t.Fatalf("pid %d not running before Shutdown", pid)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var stopOrder []string
	for _, e := range h.events(events.Stop, "") {
		stopOrder = append(stopOrder, e.Service)
	}
	if want := []string{"d", "e", "c", "b", "a"}; !slices.Equal(stopOrder, want) {
		t.Fatalf("stop order %v, want %v", stopOrder, want)
	}
	// Each service's exit comes before the next one's stop.
	var seq []string
	for _, e := range h.ev.Since(0) {
		if e.Kind == events.Stop || e.Kind == events.Exit {
			seq = append(seq, e.Kind+":"+e.Service)
		}
	}
	want := []string{"stop:d", "exit:d", "stop:e", "exit:e", "stop:c", "exit:c", "stop:b", "exit:b", "stop:a", "exit:a"}
	if !slices.Equal(seq, want) {
		t.Fatalf("stop/exit sequence %v, want %v", seq, want)
	}
	for _, pid := range pids {
		if proctest.Alive(pid) {
			t.Errorf("service pid %d outlived Shutdown", pid)
		}
	}
	// The grandchild was killed with its process group; being reparented,
	// it is reaped by someone else, so allow for that.
	proctest.Eventually(t, 5*time.Second, "grandchild gone", func() bool { return !proctest.Alive(grandchild) })
	for _, in := range h.List() {
		if in.State != service.StateStopped || in.PID != 0 {
			t.Errorf("after Shutdown: %+v", in)
		}
	}
	if err := h.StartService(context.Background(), "a", time.Second); !errors.Is(err, service.ErrShutdown) {
		t.Errorf("StartService after Shutdown = %v, want ErrShutdown", err)
	}
}

func TestShutdownKillsServiceIgnoringSIGTERM(t *testing.T) {
	py := python(t)
	h := newManager(t, `
[service.stubborn]
command = [`+q(py)+`, `+q(script(t, "notify.py", notifyScript))+`, "ignore-term"]
ready = "notify"
shutdown_timeout = "400ms"
`)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Ready means the SIGTERM handler is in place.
	if err := h.StartService(context.Background(), "stubborn", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	pid := h.info(t, "stubborn").PID
	start := time.Now()
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if took < 400*time.Millisecond || took > 10*time.Second {
		t.Errorf("Shutdown took %s, want shutdown_timeout (400ms) and a little", took)
	}
	exits := h.events(events.Exit, "stubborn")
	if len(exits) != 1 || exits[0].Detail != "signal: killed" || exits[0].Reason != "shutdown" {
		t.Fatalf("exit events %+v, want one signal: killed", exits)
	}
	if proctest.Alive(pid) {
		t.Fatalf("pid %d outlived Shutdown", pid)
	}
}

func TestShutdownDeadlineKillsAtOnce(t *testing.T) {
	py := python(t)
	h := newManager(t, `
[service.stubborn]
command = [`+q(py)+`, `+q(script(t, "notify.py", notifyScript))+`, "ignore-term"]
ready = "notify"
shutdown_timeout = "1m"
`)
	if err := h.StartService(context.Background(), "stubborn", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	pid := h.info(t, "stubborn").PID
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := h.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want the deadline", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("Shutdown took %s despite its deadline", took)
	}
	if proctest.Alive(pid) {
		t.Fatalf("pid %d outlived Shutdown", pid)
	}
}

func TestStopDuringBackoff(t *testing.T) {
	cfg, err := config.Parse("test.toml", []byte(`
[service.flaky]
command = ["sh", "-c", "exit 1"]
[service.flaky.rapid_fail]
max_failures = 0
`))
	if err != nil {
		t.Fatal(err)
	}
	ev := events.New(nil, 256)
	// A long pause: the stop must not wait it out.
	m, err := service.NewManager(cfg.Services, ev, nil, service.WithBackoff(service.Backoff{Min: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown(context.Background())
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 5*time.Second, "backoff", func() bool { return m.List()[0].State == service.StateBackoff })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.StopService(ctx, "flaky"); err != nil {
		t.Fatal(err)
	}
	if in := m.List()[0]; in.State != service.StateStopped || in.Restarts != 0 {
		t.Fatalf("%+v, want stopped without a restart", in)
	}
}

func TestUnknownService(t *testing.T) {
	h := newManager(t, `
[service.x]
command = ["sleep", "600"]
start = "on-demand"
`)
	if err := h.StartService(context.Background(), "nope", time.Second); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("StartService = %v, want ErrNotFound", err)
	}
	if err := h.StopService(context.Background(), "nope"); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("StopService = %v, want ErrNotFound", err)
	}
	// Stopping a stopped service is a no-op.
	if err := h.StopService(context.Background(), "x"); err != nil {
		t.Errorf("StopService on stopped = %v", err)
	}
}

func TestNewManagerRejectsBadConfig(t *testing.T) {
	_, err := service.NewManager(map[string]*config.Service{
		"indexer": {Command: []string{"x"}, Start: "always", Restart: "sometimes"},
	}, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `service "indexer": restart "sometimes"`) {
		t.Fatalf("NewManager = %v", err)
	}
}

func TestLimitsAndCleanEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	t.Setenv("DROVER_TEST_SECRET", "leak")
	h := newManager(t, `
[service.limited]
command = ["sh", "-c", "env > `+out+`.tmp && mv `+out+`.tmp `+out+` && exec sleep 600"]
env = { INDEX_DIR = "/srv/index" }
[service.limited.limits]
open_files = 123
`)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	proctest.Eventually(t, 10*time.Second, "env written", func() bool { _, err := os.Stat(out); return err == nil })
	pid := h.info(t, "limited").PID
	limits, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		t.Fatal(err)
	}
	var nofile []string
	for line := range strings.SplitSeq(string(limits), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			nofile = strings.Fields(line)
		}
	}
	if len(nofile) < 5 || nofile[3] != "123" || nofile[4] != "123" {
		t.Fatalf("open files limit %v, want 123", nofile)
	}
	env, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), "INDEX_DIR=/srv/index\n") {
		t.Errorf("configured env missing:\n%s", env)
	}
	for _, leak := range []string{"DROVER_TEST_SECRET", "DROVER_EXEC_HELPER", "NOTIFY_SOCKET"} {
		if strings.Contains(string(env), leak+"=") {
			t.Errorf("%s leaked into the service's environment:\n%s", leak, env)
		}
	}
}
