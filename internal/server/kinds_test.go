package server_test

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/drovertest"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/proctest"
)

// appsDir is examples/apps: the PHP, WSGI and CGI sample apps.
func appsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples", "apps")
}

// need runs a program the test uses; when it does not run, the test
// fails on CI and skips elsewhere (proctest.Missing).
func need(t *testing.T, program string, args ...string) {
	t.Helper()
	if err := exec.Command(program, args...).Run(); err != nil {
		proctest.Missing(t, program)
	}
}

// kindCases are one sample app per kind that sleeps ?ms= and answers its
// pid, with the pool settings that run it.
func kindCases(t *testing.T) []struct{ name, pool, check string } {
	apps := appsDir()
	return []struct{ name, pool, check string }{
		{"http", `command = ["{{.App}}"]
env = { SAMPLE_SLEEP_PARAM = "ms" }`, ""},
		{"fastcgi", `kind = "fastcgi"
command = ["php-cgi", "-n"]
script = "` + apps + `/sleep.php"`, "php-cgi"},
		{"wsgi", `kind = "wsgi"
python = "/usr/bin/python3"
app = "wsgiapp:sleepy"
pythonpath = ["` + apps + `"]`, "/usr/bin/python3"},
		{"cgi", `kind = "cgi"
script = "` + apps + `/pid.cgi"`, ""},
		{"uwsgi", `kind = "uwsgi"
command = ["uwsgi", "--plugin", "python3", "--pythonpath", "` + apps + `", "--module", "wsgiapp:sleepy", "--master", "--processes", "1", "--die-on-term", "--disable-logging"]`, "uwsgi"},
	}
}

// TestPoolingAcrossKinds runs the same pooling scenario on every kind:
// nothing starts before a request, two slow requests start two instances,
// a third waits in the queue, a fourth finds the queue full, and no kind
// ever runs more than max_instances.
func TestPoolingAcrossKinds(t *testing.T) {
	for _, c := range kindCases(t) {
		t.Run(c.name, func(t *testing.T) {
			switch c.check {
			case "php-cgi":
				need(t, "php-cgi", "-v")
			case "/usr/bin/python3":
				need(t, "/usr/bin/python3", "-c", "pass")
			case "uwsgi":
				need(t, "uwsgi", "--plugin", "python3", "--version")
			}
			d := drovertest.Start(t, header+`
[pool.app]
`+c.pool+`
max_instances = 2
queue_length = 1
startup_timeout = "20s"
`)
			p := d.Pool("app")
			if n := len(p.Info().Instances); n != 0 {
				t.Fatalf("%d instances before the first request", n)
			}
			if c.name == "cgi" {
				// Each request's process must be counted: sample the
				// shells running pid.cgi while the scenario runs.
				stop := watchPeak(t, "pid.cgi", 2)
				defer stop()
			}
			var wg sync.WaitGroup
			codes := make(chan int, 3)
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					code, _, _ := drovertest.Get(t, d.URL+"/?ms=1500")
					codes <- code
				}()
			}
			drovertest.Eventually(t, 20*time.Second, "two instances busy", func() bool { return busy(p.Info().Instances) == 2 })
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, _, _ := drovertest.Get(t, d.URL+"/?ms=10")
				codes <- code
			}()
			drovertest.Eventually(t, 15*time.Second, "third request queued", func() bool { return p.Info().Waiting == 1 })
			if code, _, h := drovertest.Get(t, d.URL+"/?ms=10"); code != 503 || h.Get("Drover-Error") != "queue-full" {
				t.Errorf("fourth request: %d %q, want 503 queue-full", code, h.Get("Drover-Error"))
			}
			if n := len(p.Info().Instances); n > 2 {
				t.Errorf("%d instances, max_instances is 2", n)
			}
			wg.Wait()
			close(codes)
			for code := range codes {
				if code != 200 {
					t.Errorf("a pooled request got %d", code)
				}
			}
		})
	}
}

// TestPHPThroughDrover: php-cgi as a FastCGI pool sees the right
// $_SERVER, reads a 10 MiB body exactly, sets a status and a header,
// streams, and redirects.
func TestPHPThroughDrover(t *testing.T) {
	need(t, "php-cgi", "-v")
	apps := appsDir()
	d := drovertest.Start(t, `
[server]
listen = ["{{.Listen}}"]
admin = ""
access_log = ""
runtime_dir = "{{.Runtime}}"
[[route]]
path = "/php"
pool = "php"
strip_prefix = true
[pool.php]
kind = "fastcgi"
command = ["php-cgi", "-n", "-d", "output_buffering=0", "-d", "implicit_flush=1", "-d", "post_max_size=64M"]
root = "`+apps+`"
`)
	body := bytes.Repeat([]byte("drover-"), (10<<20)/7+1)[:10<<20]
	resp, err := http.Post(d.URL+"/php/server.php/extra/path?x=1&y=2&status=201", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	sum := md5.Sum(body)
	want := map[string]any{
		"SCRIPT_NAME": "/server.php", "PATH_INFO": "/extra/path", "QUERY_STRING": "x=1&y=2&status=201",
		"REMOTE_ADDR": "127.0.0.1", "HTTPS": nil, "body_len": float64(10 << 20), "body_md5": hex.EncodeToString(sum[:]),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("$_SERVER/%s = %v, want %v", k, got[k], v)
		}
	}
	if resp.StatusCode != 201 || resp.Header.Get("X-Drover-Test") != "yes" {
		t.Errorf("status %d header %q, want 201 and X-Drover-Test", resp.StatusCode, resp.Header.Get("X-Drover-Test"))
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noRedirect.Get(d.URL + "/php/server.php?redirect=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/elsewhere" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Streaming: the first part arrives while PHP still waits for the
	// gate, which the test opens only after reading it.
	gate := filepath.Join(t.TempDir(), "gate")
	resp, err = http.Get(d.URL + "/php/stream.php?gate=" + gate)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "part1\n" {
		t.Fatalf("first part: %q %v", buf, err)
	}
	os.WriteFile(gate, nil, 0o644)
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rest) != "part2\n" {
		t.Errorf("second part %q", rest)
	}
}

// TestWSGIThroughDrover: an app under Python's wsgiref.validate validator
// and a Flask app, run by drover's shim.
func TestWSGIThroughDrover(t *testing.T) {
	need(t, "/usr/bin/python3", "-c", "import flask")
	apps := appsDir()
	d := drovertest.Start(t, `
[server]
listen = ["{{.Listen}}"]
admin = ""
access_log = ""
runtime_dir = "{{.Runtime}}"
[[route]]
path = "/v"
pool = "validated"
strip_prefix = true
[[route]]
path = "/flask"
pool = "flask"
strip_prefix = true
[pool.validated]
kind = "wsgi"
python = "/usr/bin/python3"
app = "wsgiapp:validated"
pythonpath = ["`+apps+`"]
[pool.flask]
kind = "wsgi"
python = "/usr/bin/python3"
app = "flaskapp:app"
dir = "`+apps+`"
`)
	code, body, _ := get(t, d.URL+"/v/hello")
	if code != 200 || !strings.HasPrefix(body, "/v ") {
		t.Fatalf("validated GET: %d %q (want SCRIPT_NAME /v)", code, body)
	}
	pid := strings.Fields(body)[1]
	payload := bytes.Repeat([]byte("x"), 100000)
	resp, err := http.Post(d.URL+"/v/post", "text/plain", bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := md5.Sum(payload)
	if want := fmt.Sprintf("100000 %s\n", hex.EncodeToString(sum[:])); string(b) != want {
		t.Errorf("validated POST: %q, want %q", b, want)
	}
	if code, body, _ := get(t, d.URL+"/v/stream"); code != 200 || body != "chunk 0\nchunk 1\nchunk 2" {
		t.Errorf("stream: %d %q", code, body)
	}
	if code, _, _ := get(t, d.URL+"/v/boom"); code != 500 {
		t.Errorf("exception: %d, want 500", code)
	}
	if _, body, _ := get(t, d.URL+"/v/hello"); strings.Fields(body)[1] != pid {
		t.Errorf("the instance did not live on after an exception: %s then %s", pid, body)
	}
	if strings.Contains(d.Logs.String(), "boom on purpose") == false {
		t.Errorf("traceback not in drover's log")
	}

	if code, body, _ := get(t, d.URL+"/flask/hello/drover"); code != 200 || body != "hello drover" {
		t.Errorf("flask route: %d %q", code, body)
	}
	resp, err = http.Post(d.URL+"/flask/sum", "application/json", strings.NewReader(`{"numbers":[1,2,39]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"sum":42}` {
		t.Errorf("flask JSON POST: %d %s", resp.StatusCode, b)
	}
	if code, _, _ := get(t, d.URL+"/flask/nope"); code != 404 {
		t.Errorf("flask 404: %d", code)
	}
}

// TestWSGIImportFailure: an app that fails to import is a startup failure
// whose traceback is in the log.
func TestWSGIImportFailure(t *testing.T) {
	need(t, "/usr/bin/python3", "-c", "pass")
	d := drovertest.Start(t, header+`
[pool.app]
kind = "wsgi"
python = "/usr/bin/python3"
app = "no_such_module_here:app"
`)
	if code, _, _ := get(t, d.URL+"/"); code != 502 {
		t.Fatalf("got %d, want 502", code)
	}
	drovertest.Eventually(t, 5*time.Second, "startup-failure event", func() bool {
		return len(eventsOf(d, events.StartupFailure)) > 0
	})
	drovertest.Eventually(t, 15*time.Second, "traceback in the log", func() bool {
		return strings.Contains(d.Logs.String(), "No module named") || strings.Contains(d.Logs.String(), "ModuleNotFoundError")
	})
}

// watchPeak samples /proc for process groups running a command line that
// contains name, and fails the test if more than limit ever run at once.
func watchPeak(t *testing.T, name string, limit int) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		peak := 0
		for {
			// Each request runs in a process group of its own; a
			// shell's subshells share the group, so count groups.
			groups := map[string]bool{}
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
				if err != nil || !bytes.Contains(b, []byte(name)) {
					continue
				}
				st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
				if err != nil {
					continue
				}
				f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+2:]))
				if len(f) > 2 {
					groups[f[2]] = true
				}
			}
			peak = max(peak, len(groups))
			select {
			case <-done:
				if peak > limit {
					t.Errorf("%d processes of %s ran at once, max_instances is %d", peak, name, limit)
				}
				if peak == 0 {
					t.Errorf("never saw %s running", name)
				}
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); <-finished }
}

// TestCGIThroughDrover: a CGI script answers, and request_timeout kills
// its whole process group.
func TestCGIThroughDrover(t *testing.T) {
	apps := appsDir()
	d := drovertest.Start(t, header+`
[pool.app]
kind = "cgi"
script = "`+apps+`/pid.cgi"
request_timeout = "500ms"
`)
	code, body, _ := get(t, d.URL+"/")
	if code != 200 || body == "" {
		t.Fatalf("cgi: %d %q", code, body)
	}
	start := time.Now()
	code, _, reason := get(t, d.URL+"/?ms=30000")
	if code != 504 || reason != "request-timeout" {
		t.Fatalf("slow cgi: %d %q, want 504 request-timeout", code, reason)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("timeout after %s", el)
	}
	drovertest.Eventually(t, 15*time.Second, "the script and its sleep killed", func() bool {
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if bytes.Contains(b, []byte("pid.cgi")) || bytes.Equal(b, []byte("sleep\x0030\x00")) {
				return false
			}
		}
		return true
	})
}

// TestWSGIVirtualenv: python may name a virtualenv directory; its
// bin/python runs the shim.
func TestWSGIVirtualenv(t *testing.T) {
	need(t, "/usr/bin/python3", "-c", "pass")
	venv := t.TempDir()
	os.MkdirAll(filepath.Join(venv, "bin"), 0o755)
	if err := os.Symlink("/usr/bin/python3", filepath.Join(venv, "bin", "python")); err != nil {
		t.Fatal(err)
	}
	d := drovertest.Start(t, header+`
[pool.app]
kind = "wsgi"
python = "`+venv+`"
app = "wsgiapp:sleepy"
pythonpath = ["`+appsDir()+`"]
`)
	code, body, _ := get(t, d.URL+"/?ms=1")
	if code != 200 || body == "" {
		t.Fatalf("got %d %q", code, body)
	}
	pid := strings.TrimSpace(body)
	cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
	if !strings.HasPrefix(string(cmdline), filepath.Join(venv, "bin", "python")) {
		t.Errorf("instance runs %q, want the virtualenv's bin/python", cmdline)
	}
}
