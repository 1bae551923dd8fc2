package server_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/drovertest"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/pool"
)

func TestMain(m *testing.M) { drovertest.Main(m) }

const header = `
[server]
listen = ["{{.Listen}}"]
admin = ""
access_log = ""
runtime_dir = "{{.Runtime}}"

[[route]]
path = "/"
pool = "app"
`

// get is a GET that returns status, body and the Drover-Error header.
func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	code, body, h := drovertest.Get(t, url)
	return code, strings.TrimSpace(body), h.Get("Drover-Error")
}

// sampleProcs counts the sample workers this test process has spawned.
func sampleProcs() int { return len(drovertest.Children(os.Getpid(), "sampleapp")) }

// TestArcGISPooling is ArcGIS Server's pooling scenario: min 0, max 4, one
// slot each; slow requests make instances start on demand, a fast one waits
// for the first free instance, and no fifth process ever exists.
func TestArcGISPooling(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
min_instances = 0
max_instances = 4
instance_concurrency = 1
`)
	p := d.Pool("app")
	if n := sampleProcs(); n != 0 {
		t.Fatalf("processes before the first request: %d", n)
	}

	// A sampler watches /proc for the whole scenario.
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := int64(sampleProcs()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	code, pid1, _ := get(t, d.URL+"/pid")
	if code != 200 {
		t.Fatalf("R1: %d", code)
	}
	if n := len(p.PIDs()); n != 1 {
		t.Fatalf("after R1: %d instances, want 1", n)
	}

	// R2 and R3 slow, together: a second instance starts.
	slow := d.URL + "/sleep?d=1500ms"
	type res struct {
		name string
		pid  string
		at   time.Time
	}
	results := make(chan res, 6)
	send := func(name, url string) {
		go func() {
			_, body, _ := drovertest.Get(t, url)
			results <- res{name, strings.TrimSpace(body), time.Now()}
		}()
	}
	send("R2", slow)
	send("R3", slow)
	drovertest.Eventually(t, 15*time.Second, "two instances busy", func() bool {
		return busy(p.Info().Instances) == 2
	})
	if n := len(p.PIDs()); n != 2 {
		t.Fatalf("after R2,R3: %d instances, want 2", n)
	}
	// R4, R5 slow and R6 fast together: two more start, R6 waits.
	send("R4", slow)
	send("R5", slow)
	drovertest.Eventually(t, 15*time.Second, "four instances busy", func() bool {
		return busy(p.Info().Instances) == 4
	})
	r6start := time.Now()
	send("R6", d.URL+"/pid")
	drovertest.Eventually(t, 15*time.Second, "R6 queued", func() bool { return p.Info().Waiting == 1 })

	got := map[string]res{}
	for range 5 {
		r := <-results
		got[r.name] = r
	}
	close(stop)
	<-sampled
	if peak.Load() > 4 {
		t.Fatalf("peak of %d sample processes, want at most 4", peak.Load())
	}
	r6 := got["R6"]
	// R6 is served by the first instance that frees: R2's or R3's (the
	// instance of R1), and only after a slow request finished.
	if r6.pid != got["R2"].pid && r6.pid != got["R3"].pid {
		t.Errorf("R6 served by %s, want the first freed instance (R2 %s or R3 %s)", r6.pid, got["R2"].pid, got["R3"].pid)
	}
	if r6.at.Sub(r6start) < 500*time.Millisecond {
		t.Errorf("R6 served after %s: it should have waited for a slow request", r6.at.Sub(r6start))
	}
	pids := map[string]bool{}
	for _, r := range got {
		pids[r.pid] = true
	}
	if len(pids) != 4 || !pids[pid1] {
		t.Errorf("requests served by %v, want 4 distinct instances including R1's %s", pids, pid1)
	}
}

func busy(in []pool.InstanceInfo) int {
	n := 0
	for _, i := range in {
		if i.InFlight > 0 {
			n++
		}
	}
	return n
}

// TestFIFO: one instance with one slot serves 20 queued requests in the
// order they arrived.
func TestFIFO(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
max_instances = 1
`)
	p := d.Pool("app")
	// Hold the only slot so that everything after it queues.
	held := make(chan int, 1)
	go func() {
		code, _, _ := drovertest.Get(t, d.URL+"/sleep?d=300ms")
		held <- code
	}()
	drovertest.Eventually(t, 15*time.Second, "slot held", func() bool { return busy(p.Info().Instances) == 1 })

	seqs := make([]int, 20)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, _ := drovertest.Get(t, fmt.Sprintf("%s/seq?n=%d", d.URL, i))
			if code != 200 {
				t.Errorf("request %d: %d", i, code)
			}
			seqs[i], _ = strconv.Atoi(strings.TrimSpace(body))
		}()
		// Arrival order is what the test controls: wait until this
		// request is in the queue before sending the next.
		drovertest.Eventually(t, 15*time.Second, "request queued", func() bool { return p.Info().Waiting == i+1 })
	}
	wg.Wait()
	<-held
	// The instance numbers the requests it serves: arrival order must
	// be service order.
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("service sequence by arrival %v, want consecutive", seqs)
		}
	}
}

// TestQueueFull: with queue_length = 2 the third waiter gets 503
// queue-full at once, with Retry-After.
func TestQueueFull(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
max_instances = 1
queue_length = 2
`)
	p := d.Pool("app")
	get(t, d.URL+"/pid") // the instance is up: the next request holds its slot
	for i := range 3 {
		go drovertest.Get(t, d.URL+"/sleep?d=1s")
		drovertest.Eventually(t, 15*time.Second, "held or queued", func() bool {
			info := p.Info()
			return busy(info.Instances)+info.Waiting == i+1
		})
	}
	start := time.Now()
	code, _, h := drovertest.Get(t, d.URL+"/pid")
	if code != 503 || h.Get("Drover-Error") != "queue-full" || h.Get("Retry-After") == "" {
		t.Fatalf("got %d %q Retry-After=%q, want 503 queue-full with Retry-After", code, h.Get("Drover-Error"), h.Get("Retry-After"))
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("queue-full took %s, want an answer at once", el)
	}
}

// TestMaxWait: behind a busy instance, max_wait = 200ms answers 503
// wait-timeout, not much after 200ms.
func TestMaxWait(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
max_instances = 1
max_wait = "200ms"
`)
	p := d.Pool("app")
	go drovertest.Get(t, d.URL+"/sleep?d=2s")
	drovertest.Eventually(t, 15*time.Second, "slot held", func() bool { return busy(p.Info().Instances) == 1 })
	start := time.Now()
	code, _, h := drovertest.Get(t, d.URL+"/pid")
	el := time.Since(start)
	if code != 503 || h.Get("Drover-Error") != "wait-timeout" || h.Get("Retry-After") == "" {
		t.Fatalf("got %d %q, want 503 wait-timeout with Retry-After", code, h.Get("Drover-Error"))
	}
	if el < 200*time.Millisecond || el > 1500*time.Millisecond {
		t.Errorf("wait-timeout after %s, want about 200ms", el)
	}
}

// TestRequestTimeout: a hanging request gets 504 after request_timeout,
// the instance and the child it spawned are killed, and the next request
// is served by a new instance.
func TestRequestTimeout(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
max_instances = 1
request_timeout = "500ms"
`)
	_, pid, _ := get(t, d.URL+"/pid")
	start := time.Now()
	resp, err := http.Get(d.URL + "/spawn?then=hang")
	if err != nil {
		t.Fatal(err)
	}
	// Headers and the child's pid were flushed before the hang, so the
	// timeout strikes mid-body: the body ends short. Then a second
	// request that hangs before any header gets a clean 504.
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	child, _ := strconv.Atoi(strings.TrimSpace(string(body)))
	if child == 0 {
		t.Fatalf("no child pid in %q", body)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("hanging streamed request lasted %s", el)
	}
	ipid, _ := strconv.Atoi(pid)
	drovertest.Eventually(t, 15*time.Second, "instance and its child gone", func() bool {
		return !drovertest.Alive(ipid) && !drovertest.Alive(child)
	})

	start = time.Now()
	code, _, reason := get(t, d.URL+"/hang")
	if code != 504 || reason != "request-timeout" {
		t.Fatalf("hang: %d %q, want 504 request-timeout", code, reason)
	}
	if el := time.Since(start); el < 500*time.Millisecond || el > 2*time.Second {
		t.Errorf("504 after %s, want about 500ms", el)
	}
	code, pid2, _ := get(t, d.URL+"/pid")
	if code != 200 || pid2 == pid {
		t.Fatalf("after timeout: %d pid %s (old %s), want 200 from a new instance", code, pid2, pid)
	}
}

// TestOnDemandAndIdle: nothing runs before the first request; after
// idle_timeout the pool is empty again.
func TestOnDemandAndIdle(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
idle_timeout = "300ms"
`)
	if n := sampleProcs(); n != 0 {
		t.Fatalf("%d processes before the first request", n)
	}
	_, pid, _ := get(t, d.URL+"/pid")
	ipid, _ := strconv.Atoi(pid)
	if !drovertest.Alive(ipid) {
		t.Fatal("instance not alive after serving")
	}
	drovertest.Eventually(t, 15*time.Second, "idle instance stopped", func() bool {
		return !drovertest.Alive(ipid) && len(d.Pool("app").PIDs()) == 0
	})
	if n := sampleProcs(); n != 0 {
		t.Fatalf("%d processes after idle_timeout", n)
	}
}

// TestAlwaysMinInstances: start = "always" with min_instances = 2 starts
// two at boot, and replaces one killed with SIGKILL.
func TestAlwaysMinInstances(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
start = "always"
min_instances = 2
idle_timeout = "100ms"
`)
	p := d.Pool("app")
	drovertest.Eventually(t, 15*time.Second, "two ready at boot", func() bool { return len(p.PIDs("ready")) == 2 })
	pids := p.PIDs("ready")
	syscall.Kill(pids[0], syscall.SIGKILL)
	drovertest.Eventually(t, 15*time.Second, "killed instance replaced", func() bool {
		now := p.PIDs("ready")
		return len(now) == 2 && now[0] != pids[0] && now[1] != pids[0]
	})
	// idle_timeout never takes the pool below min_instances.
	time.Sleep(300 * time.Millisecond) // let several idle periods pass
	if n := len(p.PIDs("ready")); n != 2 {
		t.Fatalf("%d ready after idle periods, want min_instances 2", n)
	}
}

// TestKilledMidRequest: an instance that dies mid-request gives 502
// bad-gateway and is replaced.
func TestKilledMidRequest(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
max_instances = 1
`)
	_, pid, _ := get(t, d.URL+"/pid")
	// POST is not retried: the crash is the answer.
	resp, err := http.Post(d.URL+"/crash", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || resp.Header.Get("Drover-Error") != "bad-gateway" {
		t.Fatalf("crash: %d %q, want 502 bad-gateway", resp.StatusCode, resp.Header.Get("Drover-Error"))
	}
	code, pid2, _ := get(t, d.URL+"/pid")
	if code != 200 || pid2 == pid {
		t.Fatalf("after crash: %d from %s (old %s)", code, pid2, pid)
	}
}

// TestRetryAfterKill: a GET whose instance was killed just before it was
// sent succeeds, by one retry on another instance.
func TestRetryAfterKill(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
start = "always"
min_instances = 2
max_instances = 2
[pool.app.rapid_fail]
max_failures = 100 # the test kills instances on purpose
`)
	p := d.Pool("app")
	drovertest.Eventually(t, 15*time.Second, "two ready", func() bool { return len(p.PIDs("ready")) == 2 })
	for range 5 {
		pids := p.PIDs("ready")
		// Kill the instance the pool will hand out next (the most
		// recently used is reused first, so kill both's
		// most-recent: we kill whichever /pid names, then ask again).
		_, victim, _ := get(t, d.URL+"/pid")
		v, _ := strconv.Atoi(victim)
		syscall.Kill(v, syscall.SIGKILL)
		code, got, _ := get(t, d.URL+"/pid")
		if code != 200 || got == victim {
			t.Fatalf("GET after killing %s: %d from %s (pids %v)", victim, code, got, pids)
		}
		drovertest.Eventually(t, 15*time.Second, "replacement ready", func() bool { return len(p.PIDs("ready")) == 2 })
	}
}

// TestClientGoneFreesSlot: a client that disconnects while queued or
// while being served frees its slot; the next request is served at once.
func TestClientGoneFreesSlot(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.App}}"]
max_instances = 1
`)
	p := d.Pool("app")
	get(t, d.URL+"/pid")

	// Served: the client goes away during a long request.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", d.URL+"/sleep?d=30s", nil)
	done := make(chan struct{})
	go func() { defer close(done); http.DefaultClient.Do(req) }()
	drovertest.Eventually(t, 15*time.Second, "slot held", func() bool { return busy(p.Info().Instances) == 1 })

	// Queued: a second client waits, then goes away.
	ctx2, cancel2 := context.WithCancel(context.Background())
	req2, _ := http.NewRequestWithContext(ctx2, "GET", d.URL+"/pid", nil)
	done2 := make(chan struct{})
	go func() { defer close(done2); http.DefaultClient.Do(req2) }()
	drovertest.Eventually(t, 15*time.Second, "second queued", func() bool { return p.Info().Waiting == 1 })
	cancel2()
	<-done2
	drovertest.Eventually(t, 15*time.Second, "queue empty", func() bool { return p.Info().Waiting == 0 })

	cancel()
	<-done
	drovertest.Eventually(t, 15*time.Second, "slot released", func() bool { return busy(p.Info().Instances) == 0 })
	start := time.Now()
	code, _, _ := get(t, d.URL+"/pid")
	if code != 200 || time.Since(start) > time.Second {
		t.Fatalf("next request: %d after %s", code, time.Since(start))
	}
}

// TestSpawnFailure: a command that cannot start answers 502 to the
// request that waited for it, records the failure, and backs off.
func TestSpawnFailure(t *testing.T) {
	d := drovertest.Start(t, header+`
[pool.app]
command = ["{{.Dir}}/does-not-exist"]
`)
	for range 3 {
		code, _, reason := get(t, d.URL+"/")
		if code != 502 || reason != "bad-gateway" {
			t.Fatalf("got %d %q, want 502 bad-gateway", code, reason)
		}
	}
	var fails []events.Event
	drovertest.Eventually(t, 5*time.Second, "spawn-failure event", func() bool {
		fails = d.Events().Find(func(e events.Event) bool { return e.Kind == "spawn-failure" })
		return len(fails) > 0
	})
	// Three requests in quick succession: backoff keeps the spawn count
	// below the request count.
	if len(fails) == 0 || len(fails) >= 3 {
		t.Fatalf("%d spawn failures recorded for 3 quick requests, want 1 or 2 (backoff)", len(fails))
	}
	if !strings.Contains(fails[0].Detail, "does-not-exist") {
		t.Errorf("event detail %q does not name the command", fails[0].Detail)
	}
}

// TestProxying checks what nginx users expect of a proxy: forwarded
// headers, trailers, Upgrade, h2c, unix listeners.
func TestProxying(t *testing.T) {
	sock := t.TempDir() + "/front.sock"
	d := drovertest.Start(t, strings.Replace(header, `listen = ["{{.Listen}}"]`, `listen = ["{{.Listen}}", "unix:`+sock+`"]`, 1)+`
[pool.app]
command = ["{{.App}}"]
instance_concurrency = 4
`)
	t.Run("forwarded", func(t *testing.T) {
		req, _ := http.NewRequest("GET", d.URL+"/headers", nil)
		req.Host = "tiles.example.org"
		req.Header.Set("X-Forwarded-For", "10.1.2.3")
		req.Header.Set("Connection", "X-Secret")
		req.Header.Set("X-Secret", "hop")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		s := string(b)
		for _, want := range []string{`"host":"tiles.example.org"`, `"X-Forwarded-For":["10.1.2.3, 127.0.0.1"]`, `"X-Forwarded-Proto":["http"]`, `"X-Forwarded-Host":["tiles.example.org"]`} {
			if !strings.Contains(s, want) {
				t.Errorf("instance saw %s; missing %s", s, want)
			}
		}
		if strings.Contains(s, "X-Secret") {
			t.Errorf("hop-by-hop header passed: %s", s)
		}
	})
	t.Run("trailers", func(t *testing.T) {
		resp, err := http.Get(d.URL + "/trailers")
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
			t.Errorf("trailer X-Checksum = %q", got)
		}
	})
	t.Run("upgrade", func(t *testing.T) {
		c, err := net.Dial("tcp", d.Listen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		buf := make([]byte, 4096)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(buf)
		if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 101") {
			t.Fatalf("upgrade answer: %q", buf[:n])
		}
		fmt.Fprintf(c, "ping\n")
		n, _ = c.Read(buf)
		if string(buf[:n]) != "echo: ping\n" {
			t.Fatalf("upgraded echo: %q", buf[:n])
		}
	})
	t.Run("h2c", func(t *testing.T) {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		resp, err := (&http.Client{Transport: tr}).Get(d.URL + "/pid")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("h2c: %s %d", resp.Proto, resp.StatusCode)
		}
	})
	t.Run("unix", func(t *testing.T) {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}
		resp, err := (&http.Client{Transport: tr}).Get("http://drover/pid")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("unix: %d", resp.StatusCode)
		}
	})
	t.Run("no-route", func(t *testing.T) {
		d2 := drovertest.Start(t, `
[server]
listen = ["{{.Listen}}"]
admin = ""
access_log = ""
runtime_dir = "{{.Runtime}}"
[[route]]
host = "a.example.org"
path = "/x"
pool = "app"
[pool.app]
command = ["{{.App}}"]
`)
		code, _, reason := get(t, d2.URL+"/x")
		if code != 404 || reason != "no-route" {
			t.Fatalf("got %d %q, want 404 no-route", code, reason)
		}
	})
}
