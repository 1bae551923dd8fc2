package cgi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drover-pool/drover/internal/backend/fastcgi"
	"github.com/drover-pool/drover/internal/proctest"
)

func TestShellEnv(t *testing.T) {
	tr, errs := newTransport(t, "POOL_VAR=pool value")
	t.Setenv("DROVER_SECRET", "must not leak")
	ctx := withConnInfo(context.Background(), fastcgi.ConnInfo{RemoteAddr: "192.0.2.7:5555", LocalAddr: "198.51.100.1:8443", HTTPS: true})
	req := newRequest(t, ctx, "GET", "http://maps.example.org/env.sh/extra/path?a=b&c=%20d", nil)
	req.Header.Set("X-Custom", "v1")
	req.Header.Add("X-Custom", "v2")
	req.Header.Set("Proxy", "http://evil:3128")
	req.Header.Set("X_Real_IP", "1.2.3.4")
	resp, body := get(t, tr, req)
	if resp.StatusCode != 200 || resp.Header.Get("X-Script") != "env" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("response %d %v", resp.StatusCode, resp.Header)
	}
	m := envMap(body)
	want := map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"REQUEST_METHOD":    "GET",
		"SCRIPT_NAME":       "/env.sh",
		"SCRIPT_FILENAME":   filepath.Join(www, "env.sh"),
		"PATH_INFO":         "/extra/path",
		"QUERY_STRING":      "a=b&c=%20d",
		"REQUEST_URI":       "/env.sh/extra/path?a=b&c=%20d",
		"DOCUMENT_ROOT":     www,
		"REMOTE_ADDR":       "192.0.2.7",
		"REMOTE_PORT":       "5555",
		"SERVER_ADDR":       "198.51.100.1",
		"SERVER_PORT":       "8443",
		"SERVER_NAME":       "maps.example.org",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"HTTPS":             "on",
		"HTTP_HOST":         "maps.example.org",
		"HTTP_X_CUSTOM":     "v1, v2",
		"POOL_VAR":          "pool value",
		"CWD":               www,
		"ARGV":              filepath.Join(www, "env.sh") + " ",
		"PATH":              "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	for _, k := range []string{"HTTP_PROXY", "HTTP_X_REAL_IP", "CONTENT_LENGTH", "CONTENT_TYPE", "DROVER_SECRET"} {
		if v, ok := m[k]; ok {
			t.Errorf("%s = %q is set", k, v)
		}
	}
	if e := errs.get(); len(e) != 0 {
		t.Errorf("stderr: %q", e)
	}

	// Without ConnInfo, the request's own RemoteAddr; a subdirectory's
	// script runs in its directory.
	req = newRequest(t, nil, "GET", "http://h:8080/dir/sub.sh/x/y", nil)
	req.RemoteAddr = "203.0.113.5:999"
	_, body = get(t, tr, req)
	if want := "sub /dir/sub.sh|/x/y|" + filepath.Join(www, "dir") + "\n"; body != want {
		t.Errorf("sub: %q, want %q", body, want)
	}
	req = newRequest(t, nil, "GET", "http://h:8080/env.sh", nil)
	req.RemoteAddr = "203.0.113.5:999"
	_, body = get(t, tr, req)
	m = envMap(body)
	if m["REMOTE_ADDR"] != "203.0.113.5" || m["SERVER_PORT"] != "8080" || m["PATH_INFO"] != "" || m["HTTPS"] != "" {
		t.Errorf("without ConnInfo: %v", m)
	}

	// Spec.Dir wins over the script's directory; the ConnInfo hook over
	// the context value.
	tr.Spec.Dir = "/"
	tr.ConnInfo = func(context.Context) (fastcgi.ConnInfo, bool) {
		return fastcgi.ConnInfo{RemoteAddr: "[2001:db8::1]:4444"}, true
	}
	_, body = get(t, tr, newRequest(t, ctx, "GET", "http://h/env.sh", nil))
	if m := envMap(body); m["CWD"] != "/" || m["REMOTE_ADDR"] != "2001:db8::1" {
		t.Errorf("Spec.Dir, ConnInfo hook: CWD %q REMOTE_ADDR %q", m["CWD"], m["REMOTE_ADDR"])
	}
}

func TestFixedScript(t *testing.T) {
	tr, _ := newTransport(t)
	tr.Root = ""
	tr.Script = filepath.Join(www, "env.sh")
	for _, tc := range []struct{ path, name, info string }{
		{"/", "", "/"},
		{"/wms/map", "", "/wms/map"},
		{"/env.sh/x", "/env.sh", "/x"},
	} {
		_, body := get(t, tr, newRequest(t, nil, "GET", "http://h"+tc.path+"?SERVICE=WMS", nil))
		m := envMap(body)
		if m["SCRIPT_NAME"] != tc.name || m["PATH_INFO"] != tc.info || m["SCRIPT_FILENAME"] != tr.Script || m["QUERY_STRING"] != "SERVICE=WMS" {
			t.Errorf("%s: SCRIPT_NAME %q PATH_INFO %q SCRIPT_FILENAME %q", tc.path, m["SCRIPT_NAME"], m["PATH_INFO"], m["SCRIPT_FILENAME"])
		}
	}
	// A missing fixed script is the pool's configuration error, not the
	// client's 404.
	tr.Script = filepath.Join(www, "missing.sh")
	if resp, err := tr.RoundTrip(newRequest(t, nil, "GET", "http://h/", nil)); err == nil {
		resp.Body.Close()
		t.Fatalf("missing fixed script: %d, want an error", resp.StatusCode)
	}
	// A relative Root is made absolute: the script runs in its own
	// directory.
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, www)
	if err != nil {
		t.Skip(err)
	}
	tr.Script, tr.Root = "", rel
	_, body := get(t, tr, newRequest(t, nil, "GET", "http://h/env.sh", nil))
	if m := envMap(body); m["SCRIPT_FILENAME"] != filepath.Join(www, "env.sh") {
		t.Errorf("relative root: SCRIPT_FILENAME %q", m["SCRIPT_FILENAME"])
	}
}

func TestNotFound(t *testing.T) {
	tr, _ := newTransport(t)
	for _, p := range []string{"/missing.sh", "/", "/dir", "/dir/", "/missing/env.sh", "/../../etc/passwd"} {
		resp, body := get(t, tr, newRequest(t, nil, "GET", "http://h"+p, strings.NewReader("body")))
		if resp.StatusCode != 404 || body != "Not Found\n" {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
}

func TestStartFailure(t *testing.T) {
	tr, _ := newTransport(t)
	// Not executable, and executed directly.
	resp, err := tr.RoundTrip(newRequest(t, nil, "GET", "http://h/plain.txt", nil))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("plain.txt: %d, want an error", resp.StatusCode)
	}
	t.Logf("plain.txt: %v", err)
	// No such interpreter.
	tr.Spec.Args = []string{"no-such-interpreter"}
	if resp, err = tr.RoundTrip(newRequest(t, nil, "POST", "http://h/env.sh", strings.NewReader("x"))); err == nil {
		resp.Body.Close()
		t.Fatalf("no interpreter: %d, want an error", resp.StatusCode)
	}
	t.Logf("no interpreter: %v", err)
}

func TestPython(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(rand.Uint32())
	}
	want := fmt.Sprintf("%x %d POST\n", sha256.Sum256(body), len(body))

	// Executed through its #! line, and through an interpreter found in
	// the pool's PATH (the file is not executable).
	direct, _ := newTransport(t)
	interp, _ := newTransport(t)
	interp.Spec.Args = []string{"python3", "-u"}
	for _, tc := range []struct {
		tr   *Transport
		path string
	}{{direct, "/sha.py"}, {interp, "/sha.noexec.py"}} {
		resp, got := get(t, tc.tr, newRequest(t, nil, "POST", "http://h"+tc.path, bytes.NewReader(body)))
		if resp.StatusCode != 200 || got != want || resp.ContentLength != int64(len(want)) {
			t.Errorf("%s: %d %q (length %d), want %q", tc.path, resp.StatusCode, got, resp.ContentLength, want)
		}
	}
}

func TestPostBody(t *testing.T) {
	tr, _ := newTransport(t)
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(rand.Uint32())
	}
	want := fmt.Sprintf("%x %d\n", md5.Sum(body), len(body))

	// Known length: streamed.
	_, got := get(t, tr, newRequest(t, nil, "POST", "http://h/md5.sh", bytes.NewReader(body)))
	if got != want {
		t.Errorf("streamed: %q, want %q", got, want)
	}
	// Unknown length: buffered to learn CONTENT_LENGTH.
	req := newRequest(t, nil, "POST", "http://h/md5.sh", io.MultiReader(bytes.NewReader(body)))
	req.ContentLength = -1
	_, got = get(t, tr, req)
	if got != want {
		t.Errorf("buffered: %q, want %q", got, want)
	}
	// An empty body of unknown length: no CONTENT_LENGTH at all.
	req = newRequest(t, nil, "POST", "http://h/md5.sh", io.MultiReader())
	req.ContentLength = -1
	if _, got = get(t, tr, req); got != fmt.Sprintf("%x unset\n", md5.Sum(nil)) {
		t.Errorf("empty: %q", got)
	}
	// Too large to buffer: 413; buffering off: 411.
	tr.MaxBufferedBody = 1000
	req = newRequest(t, nil, "POST", "http://h/md5.sh", io.MultiReader(bytes.NewReader(body)))
	req.ContentLength = -1
	if resp, _ := get(t, tr, req); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("too large: %d", resp.StatusCode)
	}
	tr.MaxBufferedBody = -1
	req = newRequest(t, nil, "POST", "http://h/md5.sh", io.MultiReader(bytes.NewReader(body)))
	req.ContentLength = -1
	if resp, _ := get(t, tr, req); resp.StatusCode != http.StatusLengthRequired {
		t.Errorf("no buffering: %d", resp.StatusCode)
	}
	// A known-length body that is longer than said: only Content-Length
	// bytes reach the script.
	tr.MaxBufferedBody = 0
	req = newRequest(t, nil, "POST", "http://h/md5.sh", bytes.NewReader(body))
	req.ContentLength = 1000
	if _, got = get(t, tr, req); got != fmt.Sprintf("%x 1000\n", md5.Sum(body[:1000])) {
		t.Errorf("longer body: %q", got)
	}
}

// A request body that ends before its Content-Length kills the script:
// it waits for input that will not come.
func TestShortRequestBody(t *testing.T) {
	tr, _ := newTransport(t)
	req := newRequest(t, nil, "POST", "http://h/md5.sh", strings.NewReader("only ten b"))
	req.ContentLength = 100
	resp, err := tr.RoundTrip(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "ended after 10 of its 100 bytes") {
		t.Fatalf("err %v", err)
	}
}

// A script that answers without reading its input is not an error, and
// the body writer does not block on it.
func TestUnreadBody(t *testing.T) {
	tr, _ := newTransport(t)
	body := bytes.Repeat([]byte("x"), 4<<20)
	resp, got := get(t, tr, newRequest(t, nil, "POST", "http://h/status.sh", bytes.NewReader(body)))
	if resp.StatusCode != 404 || got != "nope\n" {
		t.Errorf("%d %q", resp.StatusCode, got)
	}
}

func TestStatusAndLocation(t *testing.T) {
	tr, _ := newTransport(t)
	for _, tc := range []struct {
		path, status, location, body string
	}{
		{"/status.sh", "404 Not Found", "", "nope\n"},
		{"/redirect.sh", "302 Found", "/elsewhere", ""},
		{"/created.sh", "201 Created", "http://example.org/item/7", ""},
		{"/clen.sh", "200 OK", "", "hello"},
	} {
		resp, body := get(t, tr, newRequest(t, nil, "GET", "http://h"+tc.path, nil))
		if resp.Status != tc.status || resp.Header.Get("Location") != tc.location || body != tc.body {
			t.Errorf("%s: %q %q %q, want %q %q %q", tc.path, resp.Status, resp.Header.Get("Location"), body, tc.status, tc.location, tc.body)
		}
		if _, ok := resp.Header["Status"]; ok {
			t.Errorf("%s: Status header passed on", tc.path)
		}
	}
	resp, _ := get(t, tr, newRequest(t, nil, "GET", "http://h/created.sh", nil))
	if c := resp.Header.Values("Set-Cookie"); !slices.Equal(c, []string{"a=1", "b=2"}) {
		t.Errorf("cookies %q", c)
	}
	resp, _ = get(t, tr, newRequest(t, nil, "GET", "http://h/clen.sh", nil))
	if resp.ContentLength != 5 {
		t.Errorf("Content-Length %d", resp.ContentLength)
	}

	// A body shorter than its Content-Length is an error.
	resp, err := tr.RoundTrip(newRequest(t, nil, "GET", "http://h/short.sh", nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello" || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("short: %q %v", b, err)
	}

	// HEAD: the script's body is read and dropped.
	resp, body := get(t, tr, newRequest(t, nil, "HEAD", "http://h/env.sh", nil))
	if resp.StatusCode != 200 || body != "" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, body)
	}
}

func TestBrokenResponses(t *testing.T) {
	tr, errs := newTransport(t)
	for _, tc := range []struct{ path, want string }{
		{"/noheader.sh", "exit status 1"},
		{"/badheader.sh", "malformed CGI response header"},
		{"/bigheader.sh", "larger than"},
		{"/status100.sh", "not a final response"},
	} {
		start := time.Now()
		resp, err := tr.RoundTrip(newRequest(t, nil, "GET", "http://h"+tc.path, nil))
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: %d, want an error", tc.path, resp.StatusCode)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.path, err, tc.want)
		}
		t.Logf("%s: %v (%v)", tc.path, err, time.Since(start))
	}
	if e := errs.get(); !slices.Contains(e, "no header for you") {
		t.Errorf("stderr %q", e)
	}
}

func TestStderrAndExitStatus(t *testing.T) {
	tr, errs := newTransport(t)
	resp, body := get(t, tr, newRequest(t, nil, "GET", "http://h/stderr.sh", nil))
	if resp.StatusCode != 200 || body != "ok\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	// Close returned: the process was reaped, and its stderr read.
	e := errs.get()
	if len(e) != 3 || e[0] != "to stderr" || e[1] != "after" || !strings.HasSuffix(e[2], ": exit status 3") || !strings.Contains(e[2], "stderr.sh") {
		t.Errorf("stderr %q", e)
	}
	// Without Stderr, Spec.Output gets it.
	var out lines
	tr.Stderr = nil
	tr.Spec.Output = func(stream, line string) { out.add(stream + ": " + line) }
	get(t, tr, newRequest(t, nil, "GET", "http://h/stderr.sh", nil))
	if o := out.get(); len(o) != 3 || o[0] != "stderr: to stderr" {
		t.Errorf("output %q", o)
	}
}

// The first chunk reaches the reader while the script waits for a
// condition that the reader sets only after it got the chunk.
func TestStreaming(t *testing.T) {
	fifo := mkfifo(t)
	tr, _ := newTransport(t, "CGI_TEST_FIFO="+fifo)
	resp, err := tr.RoundTrip(newRequest(t, nil, "GET", "http://h/stream.sh", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); line != "first\n" {
		t.Fatalf("first chunk %q %v", line, err)
	}
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("go\n")
	f.Close()
	rest, err := io.ReadAll(br)
	if string(rest) != "second go\n" || err != nil {
		t.Fatalf("rest %q %v", rest, err)
	}
}

// Cancelling the request's context kills the script and what it spawned,
// and the pending read fails at once.
func TestCancel(t *testing.T) {
	for _, header := range []bool{false, true} {
		t.Run(fmt.Sprintf("header=%v", header), func(t *testing.T) {
			fifo := mkfifo(t)
			env := []string{"CGI_TEST_FIFO=" + fifo}
			if header {
				env = append(env, "CGI_TEST_HEADER=1")
			}
			tr, errs := newTransport(t, env...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				resp *http.Response
				err  error
			}
			done := make(chan result, 1)
			go func() {
				resp, err := tr.RoundTrip(newRequest(t, ctx, "GET", "http://h/hang.sh", nil))
				done <- result{resp, err}
			}()
			script, child := readPids(t, fifo)
			if script == 0 || !proctest.Alive(script) || !proctest.Alive(child) {
				t.Fatalf("pids %d %d not running", script, child)
			}
			var resp *http.Response
			if header {
				r := <-done
				if r.err != nil {
					t.Fatal(r.err)
				}
				resp = r.resp
				buf := make([]byte, 100)
				if n, err := resp.Body.Read(buf); string(buf[:n]) != "started\n" {
					t.Fatalf("first read %q %v", buf[:n], err)
				}
				readErr := make(chan error, 1)
				go func() { _, err := resp.Body.Read(buf); readErr <- err }()
				cancel()
				select {
				case err := <-readErr:
					if !errors.Is(err, context.Canceled) {
						t.Errorf("read after cancel: %v", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("read not ended by cancel")
				}
				resp.Body.Close()
			} else {
				cancel()
				select {
				case r := <-done:
					if !errors.Is(r.err, context.Canceled) {
						t.Errorf("RoundTrip after cancel: %v", r.err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("RoundTrip not ended by cancel")
				}
			}
			// RoundTrip or Close has returned: the script has been
			// reaped; its child, killed with the group, is dying.
			if proctest.Alive(script) {
				t.Errorf("script %d alive", script)
			}
			waitDead(t, child)
			if e := errs.get(); len(e) != 0 {
				t.Errorf("stderr %q", e)
			}
		})
	}
}

// Closing the body before its end kills the script, which would
// otherwise write forever.
func TestEarlyClose(t *testing.T) {
	tr, _ := newTransport(t)
	resp, err := tr.RoundTrip(newRequest(t, nil, "GET", "http://h/spin.sh", nil))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscanln(resp.Body, &pid); err != nil {
		t.Fatal(err)
	}
	if !proctest.Alive(pid) {
		t.Fatalf("script %d not running", pid)
	}
	resp.Body.Close()
	if proctest.Alive(pid) {
		t.Errorf("script %d alive after Close", pid)
	}
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Error("read after Close succeeded")
	}
}

// A script that closes its output and runs on is killed after a grace
// period, and reported.
func TestLinger(t *testing.T) {
	old := exitGrace
	exitGrace = 50 * time.Millisecond
	defer func() { exitGrace = old }()
	tr, errs := newTransport(t)
	start := time.Now()
	resp, body := get(t, tr, newRequest(t, nil, "GET", "http://h/linger.sh", nil))
	if resp.StatusCode != 200 || body != "done\n" {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	if e := errs.get(); len(e) != 1 || !strings.Contains(e[0], "after closing its output: killed") {
		t.Errorf("stderr %q", e)
	}
}

// Behind httputil.ReverseProxy and a real server, as the gateway runs it:
// a chunked 1 MiB upload, many at once, and a client that goes away.
func TestBehindReverseProxy(t *testing.T) {
	tr, _ := newTransport(t)
	srv := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: "http", Host: "cgi"}) },
		Transport: tr,
	})
	defer srv.Close()
	client := srv.Client()
	defer client.CloseIdleConnections()

	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(rand.Uint32())
	}
	want := fmt.Sprintf("%x %d\n", md5.Sum(body), len(body))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			var r io.Reader = bytes.NewReader(body)
			if i%2 == 1 {
				r = io.MultiReader(r) // unknown length: chunked
			}
			resp, err := client.Post(srv.URL+"/md5.sh", "application/octet-stream", r)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || string(got) != want {
				t.Errorf("%d: %q %v", i, got, err)
			}
		})
	}
	wg.Wait()

	// The client goes away in the middle of an endless body.
	ctx, cancel := context.WithCancel(context.Background())
	req := newRequest(t, ctx, "GET", srv.URL+"/spin.sh", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscanln(resp.Body, &pid); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	waitDead(t, pid)
}

// Many exchanges of every kind leave no process, goroutine or file
// descriptor behind.
func TestNoLeaks(t *testing.T) {
	defer goleak.VerifyNone(t, append(leakOptions(), goleak.IgnoreCurrent())...)
	tr, _ := newTransport(t)
	tr.Spec.Args = nil
	run := func() {
		get(t, tr, newRequest(t, nil, "POST", "http://h/md5.sh", strings.NewReader("abc")))
		req := newRequest(t, nil, "POST", "http://h/md5.sh", io.MultiReader(strings.NewReader("abc")))
		req.ContentLength = -1
		get(t, tr, req)
		get(t, tr, newRequest(t, nil, "GET", "http://h/missing", nil))
		get(t, tr, newRequest(t, nil, "GET", "http://h/stderr.sh", nil))
		if resp, err := tr.RoundTrip(newRequest(t, nil, "GET", "http://h/noheader.sh", nil)); err == nil {
			resp.Body.Close()
		}
		if resp, err := tr.RoundTrip(newRequest(t, nil, "GET", "http://h/plain.txt", nil)); err == nil {
			resp.Body.Close()
		}
		if resp, err := tr.RoundTrip(newRequest(t, nil, "GET", "http://h/spin.sh", nil)); err == nil {
			resp.Body.Read(make([]byte, 10))
			resp.Body.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		if resp, err := tr.RoundTrip(newRequest(t, ctx, "GET", "http://h/spin.sh", nil)); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		cancel()
	}
	run() // warm up: the spawner thread, buffer pools
	fds := fdCount(t)
	for range 5 {
		run()
	}
	if n := fdCount(t); n != fds {
		out, _ := exec.Command("ls", "-l", "/proc/"+fmt.Sprint(os.Getpid())+"/fd").CombinedOutput()
		t.Errorf("%d open files, %d before\n%s", n, fds, out)
	}
	if c := children(t); len(c) != 0 {
		t.Errorf("child processes left: %v", c)
	}
}

func TestConcurrent(t *testing.T) {
	tr, _ := newTransport(t)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			want := strings.Repeat(fmt.Sprint(i), 1000)
			req := newRequest(t, nil, "POST", "http://h/md5.sh", strings.NewReader(want))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if exp := fmt.Sprintf("%x %d\n", md5.Sum([]byte(want)), len(want)); string(b) != exp || err != nil {
				t.Errorf("%d: %q %v", i, b, err)
			}
		})
	}
	wg.Wait()
	if c := children(t); len(c) != 0 {
		t.Errorf("child processes left: %v", c)
	}
}

func TestNoURL(t *testing.T) {
	tr, _ := newTransport(t)
	if _, err := tr.RoundTrip(&http.Request{Method: "GET"}); err == nil {
		t.Error("no URL: no error")
	}
	tr.Root = ""
	if _, err := tr.RoundTrip(newRequest(t, nil, "GET", "http://h/", nil)); err == nil {
		t.Error("neither Root nor Script: no error")
	}
}
