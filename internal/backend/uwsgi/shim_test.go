package uwsgi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/proctest"
)

// shimTransport is the Transport as drover configures it for the shim.
func shimTransport(p *proc, concurrency int) (*Transport, *dialer) {
	d := &dialer{sock: p.sock}
	return &Transport{Dial: d.Dial, KeepAlive: true, MaxConns: concurrency}, d
}

func TestShimValidatedApp(t *testing.T) {
	p := startShim(t, shimOptions{app: "validated:application"})
	tr, d := shimTransport(p, 1)

	resp, body := do(t, tr, "GET", "http://example.org/hello?x=y", nil)
	if resp.StatusCode != 200 || body != "hello GET /hello q=x=y" {
		t.Fatalf("GET /hello = %d %q", resp.StatusCode, body)
	}

	payload := randomBytes(100<<10, 5)
	resp, body = do(t, tr, "POST", "http://example.org/md5", bytes.NewReader(payload), "Content-Type", "application/octet-stream")
	if want := fmt.Sprintf("%s %d", md5hex(payload), len(payload)); resp.StatusCode != 200 || body != want {
		t.Fatalf("POST /md5 = %d %q, want %q", resp.StatusCode, body, want)
	}

	lines := "one\ntwo\nthree is longer\nno newline at end"
	resp, body = do(t, tr, "POST", "http://example.org/lines", strings.NewReader(lines))
	if resp.StatusCode != 200 || body != "4 17" {
		t.Fatalf("POST /lines = %d %q", resp.StatusCode, body)
	}

	resp, body = do(t, tr, "POST", "http://example.org/readline-mix", strings.NewReader("first line\nabcdef\nlast\n"))
	if want := `["first line\n", "abc", ["def\n", "last\n"]]`; resp.StatusCode != 200 || body != want {
		t.Fatalf("POST /readline-mix = %d %q, want %q", resp.StatusCode, body, want)
	}

	resp, body = do(t, tr, "GET", "http://example.org/write", nil)
	if resp.StatusCode != 200 || body != "written then returned" {
		t.Fatalf("GET /write = %d %q", resp.StatusCode, body)
	}

	resp, body = do(t, tr, "GET", "http://example.org/no-content", nil)
	if resp.StatusCode != 204 || body != "" {
		t.Fatalf("GET /no-content = %d %q", resp.StatusCode, body)
	}

	resp, body = do(t, tr, "HEAD", "http://example.org/hello", nil)
	if resp.StatusCode != 200 || body != "" || resp.ContentLength != int64(len("hello HEAD /hello q=")) {
		t.Fatalf("HEAD /hello = %d %q length %d", resp.StatusCode, body, resp.ContentLength)
	}

	// HEAD of a streamed (generator) response: no body bytes at all, or
	// the next request on the connection would read them.
	resp, body = do(t, tr, "HEAD", "http://example.org/big?n=100000", nil)
	if resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD /big = %d %q", resp.StatusCode, body)
	}

	src, err := os.ReadFile(filepath.Join("testdata", "common.py"))
	if err != nil {
		t.Fatal(err)
	}
	resp, body = do(t, tr, "GET", "http://example.org/file", nil)
	if resp.StatusCode != 200 || body != string(src) {
		t.Fatalf("GET /file = %d, %d bytes, want %d", resp.StatusCode, len(body), len(src))
	}

	resp, body = do(t, tr, "GET", "http://example.org/big?n=5000000", nil)
	if resp.StatusCode != 200 || len(body) != 5000000 || resp.ContentLength != -1 {
		t.Fatalf("GET /big = %d, %d bytes, length %d", resp.StatusCode, len(body), resp.ContentLength)
	}

	resp, body = do(t, tr, "GET", "http://example.org/nowhere", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("GET /nowhere = %d %q", resp.StatusCode, body)
	}

	if n := d.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1: every request should reuse the connection", n)
	}
	if out := p.output.String(); strings.Contains(out, "Traceback") || strings.Contains(out, "Warning") {
		t.Errorf("shim logged problems:\n%s", out)
	}
}

func TestShimEnviron(t *testing.T) {
	p := startShim(t, shimOptions{app: "validated:application"})
	tr, _ := shimTransport(p, 1)
	tr.Params = map[string]string{"APP_ENV": "test"}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ctx = WithConnInfo(ctx, ConnInfo{RemoteAddr: "[2001:db8::1]:4567", LocalAddr: "[::1]:8080", ScriptName: "/prefix"})
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://app.example/env?q=%C3%A9", nil)
	req.Header.Set("X-Custom", "v")
	req.Header.Set("Proxy", "x")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	env := envOf(t, string(b))
	want := map[string]any{
		"REQUEST_METHOD":    "GET",
		"SCRIPT_NAME":       "/prefix",
		"PATH_INFO":         "/env",
		"QUERY_STRING":      "q=%C3%A9",
		"REMOTE_ADDR":       "2001:db8::1",
		"REMOTE_PORT":       "4567",
		"SERVER_NAME":       "app.example",
		"SERVER_PORT":       "8080",
		"HTTP_HOST":         "app.example",
		"HTTP_X_CUSTOM":     "v",
		"APP_ENV":           "test",
		"wsgi.url_scheme":   "http",
		"wsgi.multithread":  false,
		"wsgi.multiprocess": true,
		"wsgi.run_once":     false,
		"wsgi.version":      []any{1.0, 0.0},
	}
	for k, v := range want {
		if fmt.Sprint(env[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %#v, want %#v", k, env[k], v)
		}
	}
	for _, k := range []string{"HTTP_PROXY", "HTTPS", "DROVER_CHUNKED"} {
		if v, ok := env[k]; ok {
			t.Errorf("%s present (%v)", k, v)
		}
	}

	// PATH_INFO carries the path's bytes as latin-1 code points.
	req, _ = http.NewRequestWithContext(ctx, "GET", "http://app.example/caf%C3%A9", nil)
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "not found: /café" {
		t.Fatalf("unicode path: %d %q", resp.StatusCode, b)
	}

	// A NUL in PATH_INFO cannot travel in the compact form: that packet
	// goes in the usual one, which the shim reads as well.
	req, _ = http.NewRequestWithContext(ctx, "GET", "http://app.example/a%00b", nil)
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "not found: /a\x00b" {
		t.Fatalf("NUL in the path: %d %q", resp.StatusCode, b)
	}
	// And the usual form gives the same environ as the compact one.
	tr.CompactVars = false
	req, _ = http.NewRequestWithContext(ctx, "GET", "http://app.example/env?q=%C3%A9", nil)
	req.Header.Set("X-Custom", "v")
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if usual := envOf(t, string(b)); fmt.Sprint(usual) != fmt.Sprint(env) {
		t.Errorf("environ from the usual vars:\n%v\nfrom the compact ones:\n%v", usual, env)
	}
}

func TestShimStreaming(t *testing.T) {
	p := startShim(t, shimOptions{app: "validated:application"})
	tr, d := shimTransport(p, 1)
	fifo := filepath.Join(shortDir(t), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		checkStreaming(t, tr, fifo)
	}
	if n := d.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1", n)
	}
}

func TestShimErrors(t *testing.T) {
	p := startShim(t, shimOptions{app: "validated:application"})
	tr, d := shimTransport(p, 1)

	// An exception before start_response: 500, and the shim serves on, on
	// the same connection.
	resp, body := do(t, tr, "GET", "http://x/error-before", nil)
	if resp.StatusCode != 500 || body != "Internal Server Error\n" {
		t.Fatalf("GET /error-before = %d %q", resp.StatusCode, body)
	}
	resp, body = do(t, tr, "GET", "http://x/hello", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /hello after error = %d %q", resp.StatusCode, body)
	}
	if n := d.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1 (a 500 keeps the connection)", n)
	}

	// start_response with exc_info before anything was sent replaces the
	// status and headers.
	resp, body = do(t, tr, "GET", "http://x/exc-info", nil)
	if resp.StatusCode != 500 || body != "handled: oops" {
		t.Fatalf("GET /exc-info = %d %q", resp.StatusCode, body)
	}

	// Failures after the headers went out abort the response: the body
	// read fails instead of ending short.
	for _, path := range []string{"/error-after", "/exc-info-late", "/short"} {
		resp, body, err := tryDo(tr, "GET", "http://x"+path, nil)
		if err == nil || resp == nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s = %v %q %v, want 200 with a broken body", path, resp, body, err)
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("GET %s body error = %v, want unexpected EOF", path, err)
		}
	}

	// And the shim still serves.
	resp, body = do(t, tr, "POST", "http://x/md5", strings.NewReader("abc"))
	if resp.StatusCode != 200 || body != md5hex([]byte("abc"))+" 3" {
		t.Fatalf("POST /md5 after aborts = %d %q", resp.StatusCode, body)
	}
	out := p.output.String()
	for _, want := range []string{"boom before start_response", "boom after headers", "late oops", "fewer bytes than its Content-Length"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
}

func TestShimFlask(t *testing.T) {
	if err := exec.Command(debianPython, "-c", "import flask").Run(); err != nil {
		proctest.Missing(t, "python3-flask for /usr/bin/python3")
	}
	p := startShim(t, shimOptions{app: "flaskapp:app"})
	tr, d := shimTransport(p, 1)

	resp, body := do(t, tr, "GET", "http://flask.example/", nil)
	if resp.StatusCode != 200 || body != "flask index" {
		t.Fatalf("GET / = %d %q", resp.StatusCode, body)
	}
	resp, body = do(t, tr, "GET", "http://flask.example/users/42", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `"id":42`) || !strings.Contains(body, `"name":"user42"`) {
		t.Fatalf("GET /users/42 = %d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	resp, body = do(t, tr, "POST", "http://flask.example/api/sum", strings.NewReader(`{"numbers":[1,2,3,4.5]}`), "Content-Type", "application/json")
	if resp.StatusCode != 200 || !strings.Contains(body, `"sum":10.5`) || !strings.Contains(body, `"count":4`) {
		t.Fatalf("POST /api/sum = %d %q", resp.StatusCode, body)
	}
	// JSON through a chunked upload (no Content-Length).
	resp, body = do(t, tr, "POST", "http://flask.example/api/sum", unknownLength{strings.NewReader(`{"numbers":[5,6]}`)}, "Content-Type", "application/json")
	if resp.StatusCode != 200 || !strings.Contains(body, `"sum":11`) {
		t.Fatalf("POST /api/sum chunked = %d %q", resp.StatusCode, body)
	}
	resp, body = do(t, tr, "GET", "http://flask.example/users/abc", nil)
	if resp.StatusCode != 404 || !strings.Contains(body, "Not Found") {
		t.Fatalf("GET /users/abc = %d %q", resp.StatusCode, body)
	}
	resp, body = do(t, tr, "POST", "http://flask.example/", nil)
	if resp.StatusCode != 405 {
		t.Fatalf("POST / = %d %q", resp.StatusCode, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(WithConnInfo(ctx, ConnInfo{HTTPS: true, ScriptName: "/app"}), "GET", "http://flask.example/where", nil)
	r, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(b), `"url":"https://flask.example/app/users/7"`) || !strings.Contains(string(b), `"script_root":"/app"`) {
		t.Fatalf("GET /where = %d %s", r.StatusCode, b)
	}
	if n := d.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1", n)
	}
}

func TestShimImportFailure(t *testing.T) {
	p, ready := launchShim(t, shimOptions{app: "broken:application"})
	if ready {
		t.Fatal("broken app reported READY")
	}
	err := p.wait(t)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1", err)
	}
	out := p.output.String()
	for _, want := range []string{"Traceback (most recent call last)", "no_such_module_for_drover_tests", "cannot load application 'broken:application'"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}

	// A missing callable fails the same way.
	p, ready = launchShim(t, shimOptions{app: "common:no_such_callable"})
	if ready {
		t.Fatal("missing callable reported READY")
	}
	if err := p.wait(t); !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1", err)
	}
	if out := p.output.String(); !strings.Contains(out, "no_such_callable") {
		t.Errorf("stderr lacks the attribute name:\n%s", out)
	}
}

func TestShimConnectionReuse(t *testing.T) {
	p := startShim(t, shimOptions{app: "common:application"})
	tr, d := shimTransport(p, 1)
	for i := 0; i < 300; i++ {
		var body io.Reader
		method := "GET"
		if i%3 == 1 {
			method, body = "POST", strings.NewReader(strings.Repeat("x", i))
		} else if i%3 == 2 {
			method, body = "POST", unknownLength{strings.NewReader(strings.Repeat("y", i))}
		}
		resp, got := do(t, tr, method, fmt.Sprintf("http://x/hello?i=%d", i), body)
		if want := fmt.Sprintf("hello %s /hello q=i=%d", method, i); resp.StatusCode != 200 || got != want {
			t.Fatalf("request %d = %d %q, want %q", i, resp.StatusCode, got, want)
		}
		if i%50 == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			if err := tr.Ping(ctx); err != nil {
				t.Fatalf("ping after %d: %v", i, err)
			}
			cancel()
		}
	}
	if n := d.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1", n)
	}
}

func TestShimLargeBodies(t *testing.T) {
	p := startShim(t, shimOptions{app: "validated:application"})
	tr, d := shimTransport(p, 1)

	payload := randomBytes(10<<20, 6)
	want := fmt.Sprintf("%s %d", md5hex(payload), len(payload))
	resp, body := do(t, tr, "POST", "http://x/md5", bytes.NewReader(payload))
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("POST 10 MiB = %d %q, want %q", resp.StatusCode, body, want)
	}
	// The same body of unknown length, streamed as the shim's chunks.
	resp, body = do(t, tr, "POST", "http://x/md5", unknownLength{bytes.NewReader(payload)})
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("POST 10 MiB chunked = %d %q, want %q", resp.StatusCode, body, want)
	}
	// Chunked, line by line.
	resp, body = do(t, tr, "POST", "http://x/lines", unknownLength{strings.NewReader(strings.Repeat("0123456789\n", 100000))})
	if resp.StatusCode != 200 || body != "100000 11" {
		t.Fatalf("POST chunked lines = %d %q", resp.StatusCode, body)
	}
	// Unread bodies: a small one is drained and the connection reused...
	resp, body = do(t, tr, "POST", "http://x/hello", bytes.NewReader(randomBytes(100<<10, 7)))
	if resp.StatusCode != 200 {
		t.Fatalf("POST /hello = %d %q", resp.StatusCode, body)
	}
	resp, body = do(t, tr, "POST", "http://x/hello", unknownLength{bytes.NewReader(randomBytes(100<<10, 8))})
	if resp.StatusCode != 200 {
		t.Fatalf("POST /hello chunked = %d %q", resp.StatusCode, body)
	}
	if n := d.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1", n)
	}
	// ...a big one closes it, and the next request gets a new one.
	resp, body = do(t, tr, "POST", "http://x/hello", bytes.NewReader(payload))
	if resp.StatusCode != 200 {
		t.Fatalf("POST /hello 10 MiB = %d %q", resp.StatusCode, body)
	}
	resp, body = do(t, tr, "GET", "http://x/hello", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET after undrained body = %d %q", resp.StatusCode, body)
	}
}

func TestShimRequestBodyFailure(t *testing.T) {
	p := startShim(t, shimOptions{app: "common:application"})
	tr, _ := shimTransport(p, 1)
	for _, body := range []io.Reader{
		io.MultiReader(strings.NewReader("some"), errReader{}),
		unknownLength{io.MultiReader(strings.NewReader("some"), errReader{})},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		req, _ := http.NewRequestWithContext(ctx, "POST", "http://x/md5", body)
		if _, ok := body.(unknownLength); !ok {
			req.ContentLength = 100
		}
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		cancel()
		if !errors.Is(err, errTest) {
			t.Fatalf("error = %v, want the body's error", err)
		}
	}
	resp, body := do(t, tr, "GET", "http://x/hello", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET after failed uploads = %d %q", resp.StatusCode, body)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errTest }

func TestShimConcurrency(t *testing.T) {
	const n = 3
	p := startShim(t, shimOptions{app: "validated:application", concurrency: n})
	tr, d := shimTransport(p, n)

	// All n requests must be inside the application at once to pass its
	// barrier: n threads, n connections.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body, err := tryDo(tr, "GET", fmt.Sprintf("http://x/barrier?n=%d", n), nil)
			if err == nil && (resp.StatusCode != 200 || body != "together") {
				err = fmt.Errorf("status %d %q", resp.StatusCode, body)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	// More concurrent requests than connections: they queue on MaxConns.
	var wg2 sync.WaitGroup
	errs = make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg2.Add(1)
		go func(i int) {
			defer wg2.Done()
			resp, body, err := tryDo(tr, "POST", "http://x/md5", strings.NewReader(strings.Repeat("z", i*100)))
			if want := fmt.Sprintf("%s %d", md5hex([]byte(strings.Repeat("z", i*100))), i*100); err == nil && body != want {
				err = fmt.Errorf("status %d %q, want %q", resp.StatusCode, body, want)
			}
			errs <- err
		}(i)
	}
	wg2.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := d.dials.Load(); got > n {
		t.Errorf("dials = %d, want at most %d", got, n)
	}
	if out := p.output.String(); strings.Contains(out, "Traceback") {
		t.Errorf("shim logged errors:\n%s", out)
	}
}

func TestShimSingleConnectionQueue(t *testing.T) {
	// One thread, one connection: concurrent requests and pings must wait
	// for the connection rather than dial a second one that the shim would
	// never accept while the first stays open.
	p := startShim(t, shimOptions{app: "common:application"})
	tr, d := shimTransport(p, 1)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 20; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, body, err := tryDo(tr, "GET", "http://x/hello", nil)
			if err == nil && body != "hello GET /hello q=" {
				err = fmt.Errorf("body %q", body)
			}
			errs <- err
		}()
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			errs <- tr.Ping(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := d.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1", n)
	}
}

func TestShimGracefulStop(t *testing.T) {
	p := startShim(t, shimOptions{app: "common:application"})
	tr, _ := shimTransport(p, 1)
	fifo := filepath.Join(shortDir(t), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://x/stream?fifo="+fifo, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	// SIGTERM while the request is in progress: it must still complete.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("late")
	f.Close()
	rest, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(rest) != "second late" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.output.String())
	}

	// Idle: SIGTERM exits at once.
	p = startShim(t, shimOptions{app: "common:application", concurrency: 2})
	tr, _ = shimTransport(p, 2)
	do(t, tr, "GET", "http://x/hello", nil) // leaves an idle connection open
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.output.String())
	}
}

func TestShimBadUsage(t *testing.T) {
	// Bad usage exits 2 with a message, before importing anything.
	p, ready := launchShim(t, shimOptions{app: ""})
	if ready {
		t.Fatal("READY without an app")
	}
	var ee *exec.ExitError
	if err := p.wait(t); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit = %v, want 2", err)
	}
	if !strings.Contains(p.output.String(), "no application") {
		t.Errorf("output: %s", p.output.String())
	}
}

// TestShimFewerThreadsThanSlots: with DROVER_THREADS=1 and two slots,
// drover may send a second request while the first runs; it waits in its
// socket, as in uWSGI's listen queue, and the one thread answers it once
// the first is done.
func TestShimFewerThreadsThanSlots(t *testing.T) {
	p := startShim(t, shimOptions{app: "common:application", concurrency: 2, env: []string{"DROVER_THREADS=1"}})
	tr, d := shimTransport(p, 2)
	if _, env := do(t, tr, "GET", "http://x/env", nil); !strings.Contains(env, `"wsgi.multithread": false`) {
		t.Errorf("one thread, but the environ says otherwise: %s", env)
	}

	first, release := stalledStream(t, tr)
	second := helloLater(tr)
	// The only thread is inside the first request: the second has no
	// answer while it lasts (a bounded look, since the claim is an
	// absence).
	select {
	case body := <-second:
		t.Fatalf("second request answered while the only thread was busy: %q", body)
	case <-time.After(300 * time.Millisecond):
	}
	release("done")
	if rest, err := io.ReadAll(first.Body); err != nil || string(rest) != "second done" {
		t.Fatalf("first request's rest %q, %v", rest, err)
	}
	first.Body.Close()
	select {
	case body := <-second:
		if body != "hello GET /hello q=" {
			t.Errorf("second request: %q", body)
		}
	case <-time.After(testTimeout):
		t.Fatal("the second request was never answered")
	}
	if n := d.dials.Load(); n != 2 {
		t.Errorf("dials = %d, want 2 (one connection per slot)", n)
	}
}

// TestShimOneThreadBodyThenNext: with one thread for several slots, a
// request whose body the application left unread, then drained, may
// bring the start of the next request into the shim's buffer, where the
// shim's select cannot see it: the shim must notice and answer it.
func TestShimOneThreadBodyThenNext(t *testing.T) {
	p := startShim(t, shimOptions{app: "common:application", concurrency: 2, env: []string{"DROVER_THREADS=1"}})
	tr, d := shimTransport(p, 1) // one connection: the next request follows on it
	for i := 0; i < 5; i++ {
		resp, body := do(t, tr, "POST", "http://x/ignore-body", bytes.NewReader(bytes.Repeat([]byte("b"), 300<<10)))
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "ignored 0") {
			t.Fatalf("POST: %d %q", resp.StatusCode, body)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://x/hello", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			cancel()
			t.Fatalf("the request after a drained body: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if string(b) != "hello GET /hello q=" {
			t.Fatalf("GET after the body: %q", b)
		}
	}
	if n := d.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1 (the requests shared one connection)", n)
	}
}

// TestShimOneThreadGracefulStop: SIGTERM to a shim with one thread for
// two slots lets the request in progress finish and answers the one
// already waiting in its socket, then exits 0.
func TestShimOneThreadGracefulStop(t *testing.T) {
	p := startShim(t, shimOptions{app: "common:application", concurrency: 2, env: []string{"DROVER_THREADS=1"}})
	tr, d := shimTransport(p, 2)
	first, release := stalledStream(t, tr)
	second := helloLater(tr)
	// The second request is on its own connection, sent: wait for the
	// shim to have accepted it (the dial) before stopping.
	proctest.Eventually(t, testTimeout, "second connection", func() bool { return d.dials.Load() == 2 })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	release("done")
	if rest, err := io.ReadAll(first.Body); err != nil || string(rest) != "second done" {
		t.Fatalf("the request in progress: %q, %v", rest, err)
	}
	first.Body.Close()
	if body := <-second; body != "hello GET /hello q=" {
		t.Errorf("the waiting request: %q", body)
	}
	if err := p.wait(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.output.String())
	}
}
