package http1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drover-pool/drover/internal/proctest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// upstream is a net/http server on a unix socket or loopback TCP, and a
// Transport dialling it that counts its dials.
type upstream struct {
	srv   *http.Server
	ln    net.Listener
	tr    *Transport
	dials atomic.Int32
}

func listen(t testing.TB, network string) net.Listener {
	t.Helper()
	var addr string
	if network == "unix" {
		dir, err := os.MkdirTemp("", "h1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		addr = filepath.Join(dir, "s.sock")
	} else {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func newUpstream(t testing.TB, network string, h http.Handler, tweak ...func(*http.Server)) *upstream {
	t.Helper()
	u := &upstream{ln: listen(t, network), srv: &http.Server{Handler: h}}
	for _, f := range tweak {
		f(u.srv)
	}
	go u.srv.Serve(u.ln)
	addr := u.ln.Addr()
	u.tr = &Transport{
		MaxIdleConns: 64,
		Dial: func(ctx context.Context) (net.Conn, error) {
			u.dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, addr.Network(), addr.String())
		},
	}
	t.Cleanup(func() {
		u.tr.CloseIdleConnections()
		u.srv.Close()
	})
	return u
}

func (u *upstream) url(path string) string { return "http://instance" + path }

func forNetworks(t *testing.T, f func(t *testing.T, network string)) {
	for _, n := range []string{"unix", "tcp"} {
		t.Run(n, func(t *testing.T) { f(t, n) })
	}
}

func do(t testing.TB, rt http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Fatalf("close body: %v", err)
	}
	return resp, string(b)
}

func newReq(t testing.TB, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// echo answers with a description of the request and its body.
func echo(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	w.Header().Set("X-Method", r.Method)
	w.Header().Set("X-Host", r.Host)
	w.Header().Set("X-URI", r.RequestURI)
	w.Header().Set("X-CL", strconv.FormatInt(r.ContentLength, 10))
	w.Header().Set("X-TE", strings.Join(r.TransferEncoding, ","))
	w.Header().Set("X-Foo", strings.Join(r.Header.Values("Foo"), "|"))
	w.Write(b)
}

func TestBasics(t *testing.T) {
	forNetworks(t, func(t *testing.T, network string) {
		u := newUpstream(t, network, http.HandlerFunc(echo))

		req := newReq(t, "GET", u.url("/a/b?x=1&y=%20"), nil)
		req.Header.Add("Foo", "1")
		req.Header.Add("Foo", "2")
		resp, body := do(t, u.tr, req)
		if resp.StatusCode != 200 || body != "" || resp.Header.Get("X-Method") != "GET" ||
			resp.Header.Get("X-Host") != "instance" || resp.Header.Get("X-URI") != "/a/b?x=1&y=%20" ||
			resp.Header.Get("X-Foo") != "1|2" || resp.Header.Get("X-CL") != "0" {
			t.Fatalf("GET: %d %q %v", resp.StatusCode, body, resp.Header)
		}
		if resp.Request != req {
			t.Error("resp.Request is not the request")
		}

		req = newReq(t, "HEAD", u.url("/"), nil)
		resp, body = do(t, u.tr, req)
		if resp.StatusCode != 200 || body != "" || resp.Header.Get("X-Method") != "HEAD" {
			t.Fatalf("HEAD: %d %q %v", resp.StatusCode, body, resp.Header)
		}

		req = newReq(t, "POST", u.url("/p"), strings.NewReader("hello body"))
		req.Host = "other.example"
		resp, body = do(t, u.tr, req)
		if body != "hello body" || resp.Header.Get("X-CL") != "10" || resp.Header.Get("X-Host") != "other.example" {
			t.Fatalf("POST known length: %q %v", body, resp.Header)
		}

		req = newReq(t, "PUT", u.url("/p"), io.MultiReader(strings.NewReader("chunk"), strings.NewReader("ed")))
		req.ContentLength = -1
		resp, body = do(t, u.tr, req)
		if body != "chunked" || resp.Header.Get("X-TE") != "chunked" || resp.Header.Get("X-CL") != "-1" {
			t.Fatalf("PUT chunked: %q %v", body, resp.Header)
		}

		// Bodyless POST gets Content-Length: 0.
		req = newReq(t, "POST", u.url("/p"), nil)
		resp, body = do(t, u.tr, req)
		if body != "" || resp.Header.Get("X-CL") != "0" || resp.Header.Get("X-Method") != "POST" {
			t.Fatalf("POST empty: %q %v", body, resp.Header)
		}
		if n := u.dials.Load(); n != 1 {
			t.Errorf("dials = %d, want 1 (keep-alive)", n)
		}
		if n := u.tr.IdleConns(); n != 1 {
			t.Errorf("idle = %d, want 1", n)
		}
	})
}

func TestStatusWithoutBody(t *testing.T) {
	u := newUpstream(t, "unix", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.WriteHeader(code)
	}))
	for _, code := range []int{204, 304, 200, 404} {
		resp, body := do(t, u.tr, newReq(t, "GET", u.url("/?code="+strconv.Itoa(code)), nil))
		if resp.StatusCode != code || body != "" {
			t.Fatalf("code %d: got %d %q", code, resp.StatusCode, body)
		}
	}
	if n := u.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1", n)
	}
}

type hashingHandler struct{}

func (hashingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n, err := strconv.Atoi(r.URL.Query().Get("download")); err == nil {
		w.Header().Set("Content-Type", "application/octet-stream")
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		io.Copy(w, io.LimitReader(newPattern(1), int64(n)))
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
}

// pattern is a deterministic endless byte stream.
type pattern struct{ x uint32 }

func newPattern(seed uint32) *pattern { return &pattern{x: seed} }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		p.x = p.x*1664525 + 1013904223
		b[i] = byte(p.x >> 24)
	}
	return len(b), nil
}

func patternSum(seed uint32, n int64) string {
	h := sha256.New()
	io.Copy(h, io.LimitReader(newPattern(seed), n))
	return hex.EncodeToString(h.Sum(nil))
}

func TestLargeBodies(t *testing.T) {
	const size = 10 << 20
	forNetworks(t, func(t *testing.T, network string) {
		u := newUpstream(t, network, hashingHandler{})
		want := fmt.Sprintf("%d %s", size, patternSum(7, size))

		req := newReq(t, "POST", u.url("/"), io.LimitReader(newPattern(7), size))
		req.ContentLength = size
		if _, body := do(t, u.tr, req); body != want {
			t.Fatalf("known length upload: %q, want %q", body, want)
		}
		req = newReq(t, "POST", u.url("/"), io.LimitReader(newPattern(7), size))
		req.ContentLength = -1
		if _, body := do(t, u.tr, req); body != want {
			t.Fatalf("chunked upload: %q, want %q", body, want)
		}
		for _, chunked := range []string{"", "1"} {
			resp, err := u.tr.RoundTrip(newReq(t, "GET", u.url("/?download="+strconv.Itoa(size)+"&chunked="+chunked), nil))
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			if err != nil || n != size || hex.EncodeToString(h.Sum(nil)) != patternSum(1, size) {
				t.Fatalf("download chunked=%q: %d bytes, %v", chunked, n, err)
			}
		}
		if n := u.dials.Load(); n != 1 {
			t.Errorf("dials = %d, want 1", n)
		}
	})
}

func TestTrailers(t *testing.T) {
	u := newUpstream(t, "unix", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Sum, X-Req-Trailer")
		w.WriteHeader(200)
		w.Write(b)
		w.(http.Flusher).Flush()
		w.Write([]byte("!"))
		w.Header().Set("X-Sum", strconv.Itoa(len(b)+1))
		w.Header().Set("X-Req-Trailer", r.Trailer.Get("X-Checksum"))
	}))
	req := newReq(t, "POST", u.url("/"), strings.NewReader("payload"))
	req.Trailer = http.Header{"X-Checksum": nil}
	// The trailer value is set as the body reaches EOF, like a proxied
	// request's trailers.
	req.Body = &trailerSetter{r: strings.NewReader("payload"), set: func() { req.Trailer.Set("X-Checksum", "abc") }}
	resp, err := u.tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("TransferEncoding = %v", resp.TransferEncoding)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "payload!" || resp.Trailer.Get("X-Sum") != "8" || resp.Trailer.Get("X-Req-Trailer") != "abc" {
		t.Fatalf("body %q trailer %v", b, resp.Trailer)
	}
	// The connection survives.
	do(t, u.tr, newReq(t, "GET", u.url("/"), nil))
	if n := u.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1", n)
	}
}

type trailerSetter struct {
	r   io.Reader
	set func()
}

func (s *trailerSetter) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		s.set()
	}
	return n, err
}
func (s *trailerSetter) Close() error { return nil }

func TestEarly413(t *testing.T) {
	forNetworks(t, func(t *testing.T, network string) {
		u := newUpstream(t, network, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "too big", http.StatusRequestEntityTooLarge)
		}))
		for _, cl := range []int64{100 << 20, -1} {
			body := &closeTracker{r: io.LimitReader(newPattern(3), 100<<20)}
			req := newReq(t, "POST", u.url("/"), body)
			req.ContentLength = cl
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			req = req.WithContext(ctx)
			start := time.Now()
			resp, err := u.tr.RoundTrip(req)
			if err != nil {
				cancel()
				t.Fatalf("cl=%d: %v", cl, err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			if resp.StatusCode != 413 || !strings.Contains(string(b), "too big") {
				t.Fatalf("cl=%d: %d %q %v", cl, resp.StatusCode, b, err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("cl=%d: took %v", cl, d)
			}
			proctest.Eventually(t, 5*time.Second, "request body closed", body.closed.Load)
		}
	})
}

type closeTracker struct {
	r      io.Reader
	closed atomic.Bool
}

func (c *closeTracker) Read(p []byte) (int, error) { return c.r.Read(p) }
func (c *closeTracker) Close() error {
	c.closed.Store(true)
	return nil
}

func TestStaleIdleConnRetry(t *testing.T) {
	forNetworks(t, func(t *testing.T, network string) {
		// The upstream closes idle connections after 30ms; closed counts
		// them, so the test waits for the close itself, not a guess.
		var closed atomic.Int64
		u := newUpstream(t, network, http.HandlerFunc(echo), func(s *http.Server) {
			s.IdleTimeout = 30 * time.Millisecond
			s.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateClosed {
					closed.Add(1)
				}
			}
		})
		idleClosed := func(n int64) {
			proctest.Eventually(t, 5*time.Second, "the upstream to close its idle connections", func() bool { return closed.Load() >= n })
		}
		// Two idle connections, both closed by the upstream meanwhile.
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req := newReq(t, "POST", u.url("/"), strings.NewReader(strings.Repeat("x", 100)))
				resp, err := u.tr.RoundTrip(req)
				if err == nil {
					time.Sleep(20 * time.Millisecond)
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		if u.tr.IdleConns() != 2 || u.dials.Load() != 2 {
			t.Fatalf("setup: idle %d dials %d", u.tr.IdleConns(), u.dials.Load())
		}
		idleClosed(2)

		// A GET on a stale connection is retried on a fresh one, and the
		// older idle connection is dropped as well.
		resp, body := do(t, u.tr, newReq(t, "GET", u.url("/x"), nil))
		if resp.StatusCode != 200 || resp.Header.Get("X-URI") != "/x" || body != "" {
			t.Fatalf("GET: %d %v", resp.StatusCode, resp.Header)
		}
		if n := u.dials.Load(); n != 3 {
			t.Errorf("dials = %d, want 3", n)
		}
		if n := u.tr.IdleConns(); n != 1 {
			t.Errorf("idle = %d, want 1", n)
		}

		// A POST whose body cannot be replayed is not sent on a stale
		// connection: the probe finds it closed.
		idleClosed(3)
		req := newReq(t, "POST", u.url("/"), io.NopCloser(strings.NewReader("once")))
		if _, body := do(t, u.tr, req); body != "once" {
			t.Fatalf("POST: %q", body)
		}
		if n := u.dials.Load(); n != 4 {
			t.Errorf("dials = %d, want 4", n)
		}

		// A POST with GetBody is replayable, but not idempotent: also
		// probed rather than retried.
		idleClosed(4)
		req = newReq(t, "POST", u.url("/"), strings.NewReader("again"))
		if _, body := do(t, u.tr, req); body != "again" {
			t.Fatalf("POST GetBody: %q", body)
		}
		if n := u.dials.Load(); n != 5 {
			t.Errorf("dials = %d, want 5", n)
		}

		// A PUT (idempotent) with GetBody is retried with a new body.
		idleClosed(5)
		req = newReq(t, "PUT", u.url("/"), strings.NewReader("put body"))
		if _, body := do(t, u.tr, req); body != "put body" {
			t.Fatalf("PUT: %q", body)
		}
		if n := u.dials.Load(); n != 6 {
			t.Errorf("dials = %d, want 6", n)
		}
	})
}

// rawUpstream serves connections with a function per accepted connection
// (numbered from 0).
type rawUpstream struct {
	ln    net.Listener
	tr    *Transport
	dials atomic.Int32
	wg    sync.WaitGroup
}

func newRawUpstream(t *testing.T, serve func(i int, c net.Conn)) *rawUpstream {
	u := &rawUpstream{ln: listen(t, "unix")}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for i := 0; ; i++ {
			c, err := u.ln.Accept()
			if err != nil {
				return
			}
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				serve(i, c)
			}()
		}
	}()
	addr := u.ln.Addr().String()
	u.tr = &Transport{Dial: func(ctx context.Context) (net.Conn, error) {
		u.dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, "unix", addr)
	}}
	t.Cleanup(func() {
		u.tr.CloseIdleConnections()
		u.ln.Close()
		u.wg.Wait()
	})
	return u
}

// readRequest reads one request from br and discards its body.
func readRequest(br *bufio.Reader) (*http.Request, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, req.Body)
	return req, nil
}

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func TestRetryRules(t *testing.T) {
	// Each connection answers its first request, then reads the second
	// and closes, or (partial) sends part of a response and closes.
	serve := func(partial bool) func(int, net.Conn) {
		return func(_ int, c net.Conn) {
			br := bufio.NewReader(c)
			if _, err := readRequest(br); err != nil {
				return
			}
			io.WriteString(c, okResponse)
			if _, err := readRequest(br); err != nil {
				return
			}
			if partial {
				io.WriteString(c, "HTTP/1.1 200 OK\r\n")
			}
		}
	}
	cases := []struct {
		name      string
		partial   bool
		method    string
		wantErr   bool
		wantDials int32
	}{
		{"GET retried", false, "GET", false, 2},
		{"POST not retried", false, "POST", true, 1},
		{"GET after response bytes not retried", true, "GET", true, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := newRawUpstream(t, serve(tc.partial))
			do(t, u.tr, newReq(t, "GET", "http://x/", nil))
			resp, err := u.tr.RoundTrip(newReq(t, tc.method, "http://x/", nil))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "http1: read response: ") {
				t.Errorf("error %q not named", err)
			}
			if n := u.dials.Load(); n != tc.wantDials {
				t.Errorf("dials = %d, want %d", n, tc.wantDials)
			}
		})
	}
}

func TestConnectionClose(t *testing.T) {
	u := newUpstream(t, "unix", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, "body")
	}))
	for range 3 {
		if _, body := do(t, u.tr, newReq(t, "GET", u.url("/close"), nil)); body != "body" {
			t.Fatalf("body %q", body)
		}
		if n := u.tr.IdleConns(); n != 0 {
			t.Fatalf("idle = %d after Connection: close", n)
		}
	}
	if n := u.dials.Load(); n != 3 {
		t.Errorf("dials = %d, want 3", n)
	}
	// A request asking for close is not kept either.
	req := newReq(t, "GET", u.url("/"), nil)
	req.Close = true
	do(t, u.tr, req)
	if n := u.tr.IdleConns(); n != 0 {
		t.Fatalf("idle = %d after req.Close", n)
	}
	// An HTTP/1.0 style response delimited by close.
	raw := newRawUpstream(t, func(_ int, c net.Conn) {
		if _, err := readRequest(bufio.NewReader(c)); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nuntil close")
		}
	})
	if _, body := do(t, raw.tr, newReq(t, "GET", "http://x/", nil)); body != "until close" {
		t.Fatalf("close-delimited body %q", body)
	}
	if n := raw.tr.IdleConns(); n != 0 {
		t.Fatalf("idle = %d after close-delimited body", n)
	}
}

func upgradeHandler(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Upgrade") != "echo" {
		http.Error(w, "want upgrade", 400)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	// The greeting goes in the same write as the 101, so the client
	// buffers it with the response head.
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\ngreeting\n")
	brw.Flush()
	io.Copy(c, brw)
}

func TestUpgrade(t *testing.T) {
	u := newUpstream(t, "unix", http.HandlerFunc(upgradeHandler))
	check := func(t *testing.T, rt http.RoundTripper, url string) {
		req := newReq(t, "GET", url, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "echo")
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if !ok {
			t.Fatalf("body %T is not an io.ReadWriteCloser", resp.Body)
		}
		defer rwc.Close()
		br := bufio.NewReader(rwc)
		if line, err := br.ReadString('\n'); line != "greeting\n" {
			t.Fatalf("greeting %q %v", line, err)
		}
		for _, msg := range []string{"hello\n", "world\n"} {
			if _, err := io.WriteString(rwc, msg); err != nil {
				t.Fatal(err)
			}
			if line, err := br.ReadString('\n'); line != msg {
				t.Fatalf("echo %q %v", line, err)
			}
		}
	}
	t.Run("direct", func(t *testing.T) { check(t, u.tr, u.url("/")) })
	t.Run("reverseproxy", func(t *testing.T) {
		front := newReverseProxy(t, u.tr)
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		check(t, tr, front)
	})
}

// newReverseProxy serves httputil.ReverseProxy over rt on loopback TCP
// and returns its URL.
func newReverseProxy(t *testing.T, rt http.RoundTripper) string {
	ln := listen(t, "tcp")
	target, _ := url.Parse("http://instance")
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host },
		Transport: rt,
		ErrorLog:  nil,
	}
	srv := &http.Server{Handler: rp}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestReverseProxy(t *testing.T) {
	u := newUpstream(t, "unix", hashingHandler{})
	front := newReverseProxy(t, u.tr)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	const size = 3 << 20
	want := fmt.Sprintf("%d %s", size, patternSum(5, size))
	for _, cl := range []int64{size, -1} {
		req := newReq(t, "POST", front+"/", io.LimitReader(newPattern(5), size))
		req.ContentLength = cl
		if _, body := do(t, tr, req); body != want {
			t.Fatalf("upload cl=%d: %q", cl, body)
		}
	}
	resp, err := tr.RoundTrip(newReq(t, "GET", front+"/?download=1000000", nil))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	io.Copy(h, resp.Body)
	resp.Body.Close()
	if hex.EncodeToString(h.Sum(nil)) != patternSum(1, 1000000) {
		t.Fatal("download through proxy differs")
	}
}

func TestContextCancel(t *testing.T) {
	forNetworks(t, func(t *testing.T, network string) {
		release := make(chan struct{})
		u := newUpstream(t, network, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/slow-head":
			case "/slow-body":
				io.WriteString(w, "start")
				w.(http.Flusher).Flush()
			default:
				io.WriteString(w, "fast")
				return
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer close(release)
		do(t, u.tr, newReq(t, "GET", u.url("/"), nil)) // one idle conn

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := u.tr.RoundTrip(newReq(t, "GET", u.url("/slow-head"), nil).WithContext(ctx))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("returned after %v", d)
		}
		if n := u.tr.IdleConns(); n != 0 {
			t.Errorf("idle = %d: cancelled conn kept", n)
		}

		ctx, cancel = context.WithCancel(context.Background())
		resp, err := u.tr.RoundTrip(newReq(t, "GET", u.url("/slow-body"), nil).WithContext(ctx))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "start" {
			t.Fatalf("read %q %v", buf, err)
		}
		time.AfterFunc(50*time.Millisecond, cancel)
		start = time.Now()
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("body err = %v, want canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("body read returned after %v", d)
		}

		// Cancelled before sending: nothing dialled, nothing lost.
		dials := u.dials.Load()
		do(t, u.tr, newReq(t, "GET", u.url("/"), nil))
		if n := u.dials.Load(); n != dials+1 {
			t.Errorf("dials = %d, want a fresh dial (%d)", n, dials+1)
		}
		if n := u.tr.IdleConns(); n != 1 {
			t.Errorf("idle = %d, want 1", n)
		}
		ctx, cancel = context.WithCancel(context.Background())
		cancel()
		if _, err := u.tr.RoundTrip(newReq(t, "GET", u.url("/"), nil).WithContext(ctx)); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want canceled", err)
		}
	})
}

func TestCloseBodyEarly(t *testing.T) {
	u := newUpstream(t, "unix", hashingHandler{})
	// Small unread body, already buffered: drained, connection kept.
	resp, err := u.tr.RoundTrip(newReq(t, "GET", u.url("/?download=100"), nil))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close succeeded")
	}
	if n := u.tr.IdleConns(); n != 1 {
		t.Errorf("idle = %d after closing a short body", n)
	}
	// Large unread body: the connection is closed, not drained.
	resp, err = u.tr.RoundTrip(newReq(t, "GET", u.url("/?download=10000000"), nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 100))
	resp.Body.Close()
	if n := u.tr.IdleConns(); n != 0 {
		t.Errorf("idle = %d after closing a long body", n)
	}
	// Close while another goroutine is blocked in Read aborts it.
	release := make(chan struct{})
	defer close(release)
	u2 := newUpstream(t, "unix", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "x")
		w.(http.Flusher).Flush()
		<-release
	}))
	resp, err = u2.tr.RoundTrip(newReq(t, "GET", u2.url("/"), nil))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(resp.Body)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	resp.Body.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("aborted read returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not abort Read")
	}
}

func TestConcurrency(t *testing.T) {
	forNetworks(t, func(t *testing.T, network string) {
		u := newUpstream(t, network, http.HandlerFunc(echo))
		u.tr.MaxIdleConns = 20
		var wg sync.WaitGroup
		errc := make(chan error, 50)
		for g := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 40 {
					msg := fmt.Sprintf("g%d-i%d", g, i)
					var req *http.Request
					switch i % 4 {
					case 0:
						req, _ = http.NewRequest("GET", u.url("/"+msg), nil)
					case 1:
						req, _ = http.NewRequest("POST", u.url("/"), strings.NewReader(msg))
					case 2:
						req, _ = http.NewRequest("POST", u.url("/"), io.NopCloser(strings.NewReader(msg)))
						req.ContentLength = -1
					case 3:
						req, _ = http.NewRequest("HEAD", u.url("/"+msg), nil)
					}
					resp, err := u.tr.RoundTrip(req)
					if err != nil {
						errc <- err
						return
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					got := string(b)
					if i%4 == 0 || i%4 == 3 {
						got = strings.TrimPrefix(resp.Header.Get("X-URI"), "/")
					}
					if err != nil || got != msg {
						errc <- fmt.Errorf("%s: got %q, %v", msg, got, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
		if n := u.tr.IdleConns(); n > 20 {
			t.Errorf("idle = %d > MaxIdleConns", n)
		}
		t.Logf("dials: %d", u.dials.Load())
	})
}

func Test1xx(t *testing.T) {
	u := newUpstream(t, "unix", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hints" {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusEarlyHints)
		}
		echo(w, r)
	}))
	// Expect: 100-continue: the Go server sends 100 Continue when the
	// handler reads the body.
	req := newReq(t, "POST", u.url("/"), strings.NewReader("continued"))
	req.Header.Set("Expect", "100-continue")
	var got []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, code)
		return nil
	}}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, body := do(t, u.tr, req)
	if resp.StatusCode != 200 || body != "continued" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if len(got) != 1 || got[0] != 100 {
		t.Errorf("1xx seen: %v, want [100]", got)
	}
	got = nil
	req = newReq(t, "GET", u.url("/hints"), nil)
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, _ = do(t, u.tr, req)
	if resp.StatusCode != 200 || len(got) != 2 || got[0] != 103 {
		t.Errorf("status %d, 1xx seen %v", resp.StatusCode, got)
	}
	if n := u.dials.Load(); n != 1 {
		t.Errorf("dials = %d, want 1", n)
	}
}

func TestDialError(t *testing.T) {
	tr := &Transport{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", "/nonexistent/drover-http1.sock")
	}}
	body := &closeTracker{r: strings.NewReader("x")}
	req := newReq(t, "POST", "http://x/", body)
	_, err := tr.RoundTrip(req)
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("err = %#v, want *net.OpError dial", err)
	}
	if !body.closed.Load() {
		t.Error("request body not closed")
	}
}

func TestRequestBodyError(t *testing.T) {
	u := newUpstream(t, "unix", hashingHandler{})
	for _, cl := range []int64{1000, -1} {
		boom := errors.New("boom")
		req := newReq(t, "POST", u.url("/"), io.NopCloser(io.MultiReader(strings.NewReader("abc"), &errReader{boom})))
		req.ContentLength = cl
		done := make(chan error, 1)
		go func() {
			resp, err := u.tr.RoundTrip(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, boom) {
				t.Errorf("cl=%d: err = %v, want boom", cl, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("cl=%d: hung", cl)
		}
	}
	// A body shorter than its ContentLength.
	req := newReq(t, "POST", u.url("/"), io.NopCloser(strings.NewReader("short")))
	req.ContentLength = 10
	if _, err := u.tr.RoundTrip(req); !errors.Is(err, errShortBody) {
		t.Errorf("err = %v, want errShortBody", err)
	}
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

func TestInvalidRequests(t *testing.T) {
	u := newUpstream(t, "unix", http.HandlerFunc(echo))
	bad := []func(*http.Request){
		func(r *http.Request) { r.Header.Set("X-Bad", "a\r\nInjected: 1") },
		func(r *http.Request) { r.Header["Bad Name"] = []string{"x"} },
		func(r *http.Request) { r.Method = "GE T" },
		func(r *http.Request) { r.Host = "a b" },
		func(r *http.Request) { r.URL.RawQuery = "a\nb" },
		func(r *http.Request) { r.ContentLength = 5 },
	}
	for i, f := range bad {
		req := newReq(t, "GET", u.url("/"), nil)
		f(req)
		if _, err := u.tr.RoundTrip(req); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
	if n := u.dials.Load(); n != 0 {
		t.Errorf("dials = %d: invalid requests must fail before dialling", n)
	}
}

func TestHeaderLimit(t *testing.T) {
	u := newRawUpstream(t, func(_ int, c net.Conn) {
		if _, err := readRequest(bufio.NewReader(c)); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 100<<10)+"\r\nContent-Length: 0\r\n\r\n")
		}
	})
	u.tr.MaxResponseHeaderBytes = 16 << 10
	if _, err := u.tr.RoundTrip(newReq(t, "GET", "http://x/", nil)); !errors.Is(err, errHeaderSize) {
		t.Fatalf("err = %v, want errHeaderSize", err)
	}
}

func TestIdleConnTimeout(t *testing.T) {
	u := newUpstream(t, "unix", http.HandlerFunc(echo))
	u.tr.IdleConnTimeout = 50 * time.Millisecond
	do(t, u.tr, newReq(t, "GET", u.url("/"), nil))
	time.Sleep(100 * time.Millisecond)
	do(t, u.tr, newReq(t, "GET", u.url("/"), nil))
	if n := u.dials.Load(); n != 2 {
		t.Errorf("dials = %d, want 2", n)
	}
	if n := u.tr.IdleConns(); n != 1 {
		t.Errorf("idle = %d, want 1", n)
	}
}

func TestMaxIdleConnsNegative(t *testing.T) {
	u := newUpstream(t, "unix", http.HandlerFunc(echo))
	u.tr.MaxIdleConns = -1
	for range 3 {
		do(t, u.tr, newReq(t, "GET", u.url("/"), nil))
	}
	if n := u.dials.Load(); n != 3 {
		t.Errorf("dials = %d, want 3", n)
	}
}

func TestAppendHead(t *testing.T) {
	req := newReq(t, "GET", "http://example.com/p%20q?a=b", nil)
	req.Header = http.Header{"User-Agent": {""}, "Accept": {"*/*"}}
	b, chunked, err := appendHead(nil, req, false)
	if err != nil || chunked {
		t.Fatal(err)
	}
	want := "GET /p%20q?a=b HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
	if string(b) != want {
		t.Errorf("head\n%q\nwant\n%q", b, want)
	}
	req = newReq(t, "DELETE", "http://example.com/", nil)
	req.Close = true
	b, _, _ = appendHead(nil, req, false)
	want = "DELETE / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
	if string(b) != want {
		t.Errorf("head\n%q\nwant\n%q", b, want)
	}
	// Cross-check with Request.Write on a request with one header.
	req = newReq(t, "POST", "http://example.com/x", strings.NewReader("abc"))
	req.Header.Set("User-Agent", "t")
	b, _, _ = appendHead(nil, req, true)
	var buf bytes.Buffer
	req.Write(&buf)
	if !strings.HasPrefix(buf.String(), string(b)) {
		t.Errorf("head\n%q\nnot a prefix of Request.Write\n%q", b, buf.String())
	}
}

// A failed retry dial must not make the error look like nothing was sent.
func TestRetryDialFails(t *testing.T) {
	var u *rawUpstream
	u = newRawUpstream(t, func(_ int, c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, okResponse)
		if _, err := readRequest(br); err != nil {
			return
		}
		u.ln.Close() // the retry's dial fails
	})
	do(t, u.tr, newReq(t, "GET", "http://x/", nil))
	_, err := u.tr.RoundTrip(newReq(t, "GET", "http://x/", nil))
	var op *net.OpError
	if err == nil || errors.As(err, &op) && op.Op == "dial" {
		t.Fatalf("err = %v: looks like a dial error", err)
	}
	if n := u.dials.Load(); n != 2 {
		t.Errorf("dials = %d, want 2", n)
	}
	t.Log(err)
}
