package fastcgi

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests in this file use net/http/fcgi, the standard library's
// FastCGI server, as the application.

func stdlibApp(t *testing.T, h http.Handler) *app {
	t.Helper()
	l, sock := listenUnix(t)
	done := make(chan struct{})
	go func() {
		fcgi.Serve(l, h)
		close(done)
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return &app{sock: sock}
}

func TestStdlibRoundTrip(t *testing.T) {
	a := stdlibApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env := fcgi.ProcessEnv(r)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Env", env["SERVER_SOFTWARE"]+" "+env["REDIRECT_STATUS"])
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "%s %s %s %s %s", r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-A"), body)
	}))
	tr := a.transport()
	tr.Root = ""
	defer tr.CloseIdleConnections()
	req := newRequest(t, "PUT", "http://h/p/a%20th?q=1", strings.NewReader("payload"))
	req.Header.Set("X-A", "b")
	resp, body := do(t, tr, req)
	if resp.StatusCode != 202 || resp.Header.Get("X-Env") != "drover 200" || body != "PUT /p/a th q=1 b payload" {
		t.Errorf("%s %v %q", resp.Status, resp.Header, body)
	}
	if len(resp.Trailer) != 0 {
		t.Errorf("trailer %v", resp.Trailer)
	}
}

// TestStdlibStreaming: each flushed part arrives while the handler waits
// for the test to ask for the next one.
func TestStdlibStreaming(t *testing.T) {
	next := make(chan struct{})
	a := stdlibApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-time.After(10 * time.Second):
				return
			}
		}
	}))
	tr := a.transport()
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(newRequest(t, "GET", "http://h/", nil).WithContext(testContext(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for i := range 3 {
		want := fmt.Sprintf("part%d;", i)
		b := make([]byte, len(want))
		if _, err := io.ReadFull(resp.Body, b); err != nil || string(b) != want {
			t.Fatalf("part %d: %q, %v", i, b, err)
		}
		next <- struct{}{}
	}
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

func TestStdlibReuseAndEarlyClose(t *testing.T) {
	a := stdlibApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("z", 100000))
	}))
	tr := a.transport()
	defer tr.CloseIdleConnections()
	for range 5 {
		if _, body := do(t, tr, newRequest(t, "GET", "http://h/", nil)); len(body) != 100000 {
			t.Fatalf("body of %d bytes", len(body))
		}
	}
	if n := a.dials.Load(); n != 1 {
		t.Fatalf("%d dials for 5 requests, want 1", n)
	}
	// A body closed before its end takes its connection with it.
	resp, err := tr.RoundTrip(newRequest(t, "GET", "http://h/", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close succeeded")
	}
	if tr.idleCount() != 0 {
		t.Errorf("%d idle connections after an early close", tr.idleCount())
	}
	do(t, tr, newRequest(t, "GET", "http://h/", nil))
	if n := a.dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}
}

func TestStdlibPing(t *testing.T) {
	a := stdlibApp(t, http.NotFoundHandler())
	tr := a.transport()
	if err := tr.Ping(testContext(t)); err != nil {
		t.Fatal(err)
	}
	// Against nothing listening, Ping fails.
	tr.Dial = func(ctx context.Context) (net.Conn, error) { return nil, errors.New("refused") }
	if err := tr.Ping(testContext(t)); err == nil || !strings.Contains(err.Error(), "fastcgi: ping: dial: refused") {
		t.Fatalf("Ping without an application: %v", err)
	}
}

// TestStdlibBodyIgnored: the handler answers without reading a large body.
// Neither side may block; the connection is not reused, since the rest of
// the body would be read as the next request.
func TestStdlibBodyIgnored(t *testing.T) {
	a := stdlibApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ignored "+r.URL.Path)
	}))
	tr := a.transport()
	defer tr.CloseIdleConnections()
	for i := range 3 {
		body := strings.NewReader(strings.Repeat("b", 8<<20))
		path := fmt.Sprintf("/%d", i)
		resp, got := do(t, tr, newRequest(t, "POST", "http://h"+path, body).WithContext(testContext(t)))
		if resp.StatusCode != 200 || got != "ignored "+path {
			t.Fatalf("%s %q", resp.Status, got)
		}
	}
}

func TestStdlibConcurrent(t *testing.T) {
	a := stdlibApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%x", sha256.Sum256(b))
	}))
	tr := a.transport()
	tr.MaxIdleConns = 3
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				payload := strings.Repeat(fmt.Sprintf("%d-%d;", g, i), 1000*i)
				resp, err := tr.RoundTrip(newRequest(t, "POST", "http://h/", strings.NewReader(payload)))
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("%x", sha256.Sum256([]byte(payload))); err != nil || string(b) != want {
					t.Errorf("%q, %v; want %s", b, err, want)
				}
			}
		})
	}
	wg.Wait()
	if idle := tr.idleCount(); idle > 3 {
		t.Errorf("%d idle connections, MaxIdleConns is 3", idle)
	}
	if n := a.dials.Load(); n >= 80 {
		t.Errorf("%d dials for 80 requests: no reuse", n)
	}
}

func TestStdlibNoKeepConn(t *testing.T) {
	a := stdlibApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	tr := a.transport()
	tr.MaxIdleConns = -1
	for range 3 {
		if _, body := do(t, tr, newRequest(t, "GET", "http://h/", nil)); body != "ok" {
			t.Fatal(body)
		}
	}
	if n := a.dials.Load(); n != 3 {
		t.Errorf("%d dials, want 3 without FCGI_KEEP_CONN", n)
	}
}

// errReader fails after n bytes.
type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("client went away")
	}
	n := min(len(p), r.n)
	r.n -= n
	return n, nil
}

func TestStdlibBodyErrors(t *testing.T) {
	a := stdlibApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d %v", len(b), err)
	}))
	tr := a.transport()
	defer tr.CloseIdleConnections()

	check := func(name string, req *http.Request, want string) {
		t.Helper()
		resp, err := tr.RoundTrip(req.WithContext(testContext(t)))
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, want)
		}
	}
	req := newRequest(t, "POST", "http://h/", io.NopCloser(&errReader{n: 200000}))
	req.ContentLength = 300000
	check("body read error", req, "fastcgi: read request body: client went away")

	req = newRequest(t, "POST", "http://h/", io.NopCloser(strings.NewReader("short")))
	req.ContentLength = 10
	check("short body", req, "fastcgi: request body ended after 5 of its 10 bytes")

	// A body longer than its Content-Length is cut there.
	req = newRequest(t, "POST", "http://h/", io.NopCloser(strings.NewReader("0123456789")))
	req.ContentLength = 4
	if _, body := do(t, tr, req); body != "4 <nil>" {
		t.Errorf("long body: %q", body)
	}
	// A body of unknown length is streamed to its end.
	req = newRequest(t, "POST", "http://h/", io.NopCloser(strings.NewReader("0123456789")))
	req.ContentLength = -1
	if _, body := do(t, tr, req); body != "10 <nil>" {
		t.Errorf("body of unknown length: %q", body)
	}
}

func TestStdlibCancel(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	a := stdlibApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/after-header" {
			io.WriteString(w, "header sent")
			w.(http.Flusher).Flush()
		}
		<-release
	}))
	tr := a.transport()
	defer tr.CloseIdleConnections()

	// Before the header: RoundTrip returns.
	ctx, cancel := context.WithCancel(testContext(t))
	errc := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(newRequest(t, "GET", "http://h/before-header", nil).WithContext(ctx))
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "fastcgi: ") {
		t.Errorf("RoundTrip after cancel: %v", err)
	}

	// A deadline during the body: Read returns.
	ctx, cancel = context.WithTimeout(testContext(t), 50*time.Millisecond)
	defer cancel()
	resp, err := tr.RoundTrip(newRequest(t, "GET", "http://h/after-header", nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Read past the deadline: %v", err)
	}
	resp.Body.Close()

	// Close unblocks a Read in another goroutine.
	resp, err = tr.RoundTrip(newRequest(t, "GET", "http://h/after-header", nil).WithContext(testContext(t)))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := io.ReadAll(resp.Body)
		errc <- err
	}()
	resp.Body.Close()
	if err := <-errc; err == nil {
		t.Error("Read returned no error after a concurrent Close")
	}
	if tr.idleCount() != 0 {
		t.Errorf("%d idle connections after cancelled requests", tr.idleCount())
	}
}
