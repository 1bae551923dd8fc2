package evloop_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drover-pool/drover/internal/backend"
	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/drovertest"
	"github.com/drover-pool/drover/internal/gateway/evloop"
	"github.com/drover-pool/drover/internal/gateway/h1"
	"github.com/drover-pool/drover/internal/pool"
)

func TestMain(m *testing.M) { drovertest.Main(m) }

// harness is an evloop.Server in front of a real pool of the sample app,
// with an h1 server taking what the loops hand over: it answers with
// X-Served-By: h1 and what it received.
type harness struct {
	t      *testing.T
	pool   *pool.Pool
	srv    *evloop.Server
	h1     *h1.Server
	addr   string
	served chan error

	mu       sync.Mutex
	begun    int
	statuses []int // of ended exchanges
	logged   int
}

type options struct {
	conc    int
	timeout time.Duration
	idle    time.Duration
	header  time.Duration
	pool    string // extra pool config
}

func start(t *testing.T, o options) *harness {
	t.Helper()
	if o.conc == 0 {
		o.conc = 4
	}
	cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf(`
[pool.p]
command = [%q]
start = "always"
min_instances = 1
max_instances = 1
instance_concurrency = %d
%s
`, drovertest.SampleApp(t), o.conc, o.pool)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pool.New(pool.Options{Config: cfg.Pools["p"], Kind: &backend.HTTP{SocketDir: t.TempDir(), Prefix: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	h := &harness{t: t, pool: p, served: make(chan error, 1)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	drovertest.Eventually(t, 10*time.Second, "instance ready", func() bool { return len(p.PIDs("ready")) == 1 })

	target := &evloop.Target{Pool: p, Timeout: o.timeout, Hooks: h}
	h.h1 = &h1.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Served-By", "h1")
		fmt.Fprintf(w, "%s %s %s %d\n", r.Method, r.RequestURI, r.Proto, n)
	})}
	h.srv = &evloop.Server{
		Route: func(host, path string) (*evloop.Target, string) {
			switch {
			case host == "elsewhere.example":
				return nil, ""
			case strings.HasPrefix(path, "/strip/"):
				return target, "/strip/"
			}
			return target, ""
		},
		Handoff:       h.h1.ServeConn,
		Loops:         2, // more than one, sharing the listener
		IdleTimeout:   o.idle,
		HeaderTimeout: o.header,
		Log: func(x *evloop.Exchange) {
			h.mu.Lock()
			h.logged++
			h.mu.Unlock()
		},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String()
	go func() { h.served <- h.srv.Serve(l.(*net.TCPListener)) }()
	t.Cleanup(func() { h.stop(context.Background()) })
	return h
}

// stop shuts the loops and the h1 server down and waits for Serve.
func (h *harness) stop(ctx context.Context) error {
	err := h.srv.Shutdown(ctx)
	_ = h.h1.Shutdown(ctx)
	if h.served != nil {
		if serr := <-h.served; !errors.Is(serr, evloop.ErrServerClosed) {
			h.t.Errorf("Serve returned %v", serr)
		}
		h.served = nil
	}
	return err
}

func (h *harness) Begin(x *evloop.Exchange) {
	h.mu.Lock()
	h.begun++
	h.mu.Unlock()
}

func (h *harness) End(x *evloop.Exchange) {
	h.mu.Lock()
	h.statuses = append(h.statuses, x.Status())
	h.mu.Unlock()
}

func (h *harness) ended() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.statuses...)
}

// client is one raw connection to the harness.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (h *harness) dial() *client {
	h.t.Helper()
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return &client{t: h.t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, raw); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one response to a request of method.
func (c *client) read(method string) (*http.Response, string) {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	for err == nil && resp.StatusCode == http.StatusContinue {
		resp, err = http.ReadResponse(c.br, &http.Request{Method: method})
	}
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

func (c *client) do(raw, method string) (*http.Response, string) {
	c.t.Helper()
	c.send(raw)
	return c.read(method)
}

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: a.example\r\n\r\n" }

// TestKeepAliveBothSides: many requests on one client connection are all
// served by the loop, over one kept-alive connection to the instance.
func TestKeepAliveBothSides(t *testing.T) {
	h := start(t, options{})
	c := h.dial()
	remotes := map[string]bool{}
	for i := range 20 {
		resp, body := c.do(get("/headers?i="+strconv.Itoa(i)), "GET")
		if resp.StatusCode != 200 || resp.Header.Get("X-Served-By") != "" {
			t.Fatalf("request %d: %d %q (X-Served-By %q)", i, resp.StatusCode, body, resp.Header.Get("X-Served-By"))
		}
		if resp.Header.Get("Date") == "" {
			t.Fatal("no Date header")
		}
		var seen struct{ Remote string }
		if err := json.Unmarshal([]byte(body), &seen); err != nil {
			t.Fatal(err)
		}
		remotes[seen.Remote] = true
	}
	if len(remotes) != 1 {
		t.Fatalf("the instance saw %d connections for 20 sequential requests, want 1: %v", len(remotes), remotes)
	}
	// End comes after the answer is written.
	drovertest.Eventually(t, 5*time.Second, "20 exchanges ended with 200", func() bool {
		got := h.ended()
		return len(got) == 20 && got[0] == 200 && got[19] == 200
	})
}

// TestPipelined: requests sent in one write are answered in order.
func TestPipelined(t *testing.T) {
	h := start(t, options{})
	c := h.dial()
	c.send(get("/sleep?d=30ms") + get("/hello") + "HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\n" + get("/pid"))
	pid := strconv.Itoa(h.pool.PIDs("ready")[0])
	if _, body := c.read("GET"); body != pid+"\n" {
		t.Fatalf("first answer %q, want the pid", body)
	}
	if _, body := c.read("GET"); body != "hello\n" {
		t.Fatalf("second answer %q", body)
	}
	if resp, body := c.read("HEAD"); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD answer %d %q", resp.StatusCode, body)
	}
	if _, body := c.read("GET"); body != pid+"\n" {
		t.Fatalf("fourth answer %q", body)
	}
}

// TestForwardedHeaders: hop-by-hop headers are dropped, X-Forwarded-* set,
// the Host kept, as on the h1 path.
func TestForwardedHeaders(t *testing.T) {
	h := start(t, options{})
	c := h.dial()
	resp, body := c.do("GET /headers HTTP/1.1\r\nHost: tiles.example:8080\r\nConnection: keep-alive, X-Secret\r\n"+
		"X-Secret: 1\r\nKeep-Alive: 300\r\nProxy-Authorization: Basic eA==\r\nTE: trailers, deflate\r\n"+
		"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nX-Kept: yes\r\n\r\n", "GET")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var seen struct {
		Host    string
		Headers http.Header
	}
	if err := json.Unmarshal([]byte(body), &seen); err != nil {
		t.Fatal(err)
	}
	hd := seen.Headers
	for _, k := range []string{"Connection", "X-Secret", "Keep-Alive", "Proxy-Authorization"} {
		if v, ok := hd[k]; ok {
			t.Errorf("hop-by-hop %s reached the instance: %q", k, v)
		}
	}
	want := map[string]string{
		"X-Forwarded-For":   "10.0.0.1, 127.0.0.1",
		"X-Forwarded-Host":  "tiles.example:8080",
		"X-Forwarded-Proto": "http",
		"Te":                "trailers",
		"X-Kept":            "yes",
	}
	for k, v := range want {
		if got := strings.Join(hd[k], ","); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if seen.Host != "tiles.example:8080" {
		t.Errorf("Host %q", seen.Host)
	}
}

// TestStripPrefix: the route's prefix is cut from the path, the query kept.
func TestStripPrefix(t *testing.T) {
	h := start(t, options{})
	c := h.dial()
	for path, want := range map[string]string{"/strip/headers?a=1": "/headers?a=1", "/strip/": "/"} {
		_, body := c.do(get(path), "GET")
		if path == "/strip/" {
			if body != "hello\n" {
				t.Errorf("%s: %q", path, body)
			}
			continue
		}
		var seen struct{ URI string }
		if err := json.Unmarshal([]byte(body), &seen); err != nil {
			t.Fatal(err)
		}
		if seen.URI != want {
			t.Errorf("%s reached the instance as %q, want %q", path, seen.URI, want)
		}
	}
}

// TestHandoff: what the loops do not serve reaches the h1 server whole,
// and the connection stays there.
func TestHandoff(t *testing.T) {
	h := start(t, options{})
	big := strings.Repeat("b", 20<<10)
	cases := []struct {
		name, raw, method, want string
	}{
		{"http/1.0", "GET /x HTTP/1.0\r\n\r\n", "GET", "GET /x HTTP/1.0 0\n"},
		{"chunked body", "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "POST", "POST /up HTTP/1.1 3\n"},
		{"large body", "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n" + big, "POST", "POST /up HTTP/1.1 20480\n"},
		{"expect", "PUT /e HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "PUT", "PUT /e HTTP/1.1 2\n"},
		{"escaped path", "GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "GET /a%2Fb HTTP/1.1 0\n"},
		{"no route", "GET /r HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n", "GET", "GET /r HTTP/1.1 0\n"},
		{"healthz", "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "GET /healthz HTTP/1.1 0\n"},
		{"large head", "GET /big HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("h", 9<<10) + "\r\n\r\n", "GET", "GET /big HTTP/1.1 0\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := h.dial()
			resp, body := c.do(tc.raw, tc.method)
			if resp.Header.Get("X-Served-By") != "h1" || body != tc.want {
				t.Fatalf("got %d %q from %q, want %q from h1", resp.StatusCode, body, resp.Header.Get("X-Served-By"), tc.want)
			}
			if tc.method != "GET" || strings.Contains(tc.raw, "HTTP/1.0") {
				return
			}
			// The next request on the connection is h1's too.
			if resp, _ := c.do(get("/hello"), "GET"); resp.Header.Get("X-Served-By") != "h1" {
				t.Fatal("the connection came back to the loop")
			}
		})
	}
	// Malformed requests are h1's to refuse.
	for _, raw := range []string{
		"GET /x HTTP/1.1\r\n\r\n",                                                        // no Host
		"GET /x HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",                                  // obsolete folding
		"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", // two lengths
		"GET /x HTTP/1.1\r\nHost: a\r\nBad Name: 1\r\n\r\n",
	} {
		c := h.dial()
		if resp, _ := c.do(raw, "GET"); resp.StatusCode != 400 {
			t.Errorf("%q: status %d, want 400", raw, resp.StatusCode)
		}
	}
}

// TestResponseFramings: Content-Length, chunked with trailers, HEAD, and a
// body that ends with the instance's connection (re-chunked, so the client
// connection stays open); a large body goes through with backpressure.
func TestResponseFramings(t *testing.T) {
	h := start(t, options{})
	c := h.dial()
	resp, body := c.do(get("/download?size=3000000"), "GET")
	if resp.ContentLength != 3000000 || len(body) != 3000000 {
		t.Fatalf("download: length %d, body %d", resp.ContentLength, len(body))
	}
	resp, body = c.do(get("/download?size=100000&chunked=1"), "GET")
	if len(resp.TransferEncoding) == 0 || len(body) != 100000 {
		t.Fatalf("chunked download: %v, body %d", resp.TransferEncoding, len(body))
	}
	resp, body = c.do(get("/trailers"), "GET")
	if body != "body\n" || resp.Trailer.Get("X-Checksum") != "abc123" {
		t.Fatalf("trailers: %q %v", body, resp.Trailer)
	}
	resp, body = c.do(get("/untilclose?n=5000"), "GET")
	if resp.StatusCode != 200 || len(body) != 5000 || resp.Close {
		t.Fatalf("until-close: %d, body %d, close %v", resp.StatusCode, len(body), resp.Close)
	}
	if _, body = c.do(get("/hello"), "GET"); body != "hello\n" {
		t.Fatalf("after until-close: %q", body)
	}

	// A slow reader, with a small receive buffer: the loop's writes to it
	// come up short again and again, and it must stop reading the
	// instance meanwhile and lose nothing.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			// Before connecting, so the window is small from the start.
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	sc, err := d.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	slow := &client{t: t, c: sc, br: bufio.NewReaderSize(sc, 1024)}
	slow.send(get("/download?size=8000000"))
	_, body = slow.read("GET")
	if len(body) != 8000000 {
		t.Fatalf("slow reader got %d bytes", len(body))
	}
	for i := 0; i < len(body); i += 65536 {
		if body[i] != 0 || body[i+1] != 1 {
			t.Fatalf("slow reader: corrupt body at %d", i)
		}
	}
}

// TestBadGateway: an instance that dies mid-request gives 502 to a POST
// (not retried) and is replaced; a GET is retried once, on the instance
// that replaces it (waiting for it in the loop), and gets 502 when that
// one dies too. A response that is not HTTP is a 502.
func TestBadGateway(t *testing.T) {
	h := start(t, options{})
	first := h.pool.PIDs("ready")[0]
	c := h.dial()
	resp, _ := c.do("POST /crash HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", "POST")
	if resp.StatusCode != 502 || resp.Header.Get("Drover-Error") != "bad-gateway" {
		t.Fatalf("crash: %d %q", resp.StatusCode, resp.Header.Get("Drover-Error"))
	}
	drovertest.Eventually(t, 10*time.Second, "a new instance", func() bool {
		p := h.pool.PIDs("ready")
		return len(p) == 1 && p[0] != first
	})
	second := h.pool.PIDs("ready")[0]
	c = h.dial()
	resp, body := c.do(get("/crash"), "GET")
	if resp.StatusCode != 502 || resp.Header.Get("X-Served-By") != "" {
		t.Fatalf("GET /crash: %d %q from %q, want the loop's 502", resp.StatusCode, body, resp.Header.Get("X-Served-By"))
	}
	// The first attempt was abandoned (status 0) for the retry.
	drovertest.Eventually(t, 5*time.Second, "exchanges ending ..., 0, 502", func() bool {
		e := h.ended()
		return len(e) >= 3 && e[len(e)-2] == 0 && e[len(e)-1] == 502
	})
	drovertest.Eventually(t, 10*time.Second, "another instance", func() bool {
		p := h.pool.PIDs("ready")
		return len(p) == 1 && p[0] != second
	})
	c = h.dial()
	if resp, _ := c.do(get("/garbage"), "GET"); resp.StatusCode != 502 {
		t.Fatalf("garbage: %d", resp.StatusCode)
	}
}

// TestRequestTimeout: past request_timeout the instance is killed and the
// client answered 504; the loop goes on serving.
func TestRequestTimeout(t *testing.T) {
	h := start(t, options{timeout: 300 * time.Millisecond})
	first := h.pool.PIDs("ready")[0]
	c := h.dial()
	began := time.Now()
	resp, _ := c.do(get("/hang"), "GET")
	if resp.StatusCode != 504 || resp.Header.Get("Drover-Error") != "request-timeout" {
		t.Fatalf("hang: %d %q", resp.StatusCode, resp.Header.Get("Drover-Error"))
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("504 after %v", d)
	}
	drovertest.Eventually(t, 10*time.Second, "the hung instance is gone", func() bool {
		return syscall.Kill(first, 0) != nil
	})
	drovertest.Eventually(t, 10*time.Second, "a new instance", func() bool { return len(h.pool.PIDs("ready")) == 1 })
	if _, body := c.do(get("/hello"), "GET"); body != "hello\n" {
		t.Fatalf("after the timeout: %q", body)
	}
}

// TestClientGoneFreesSlot: a client that hangs up while its request is at
// the instance frees the slot at once.
func TestClientGoneFreesSlot(t *testing.T) {
	h := start(t, options{conc: 1})
	c := h.dial()
	c.send(get("/sleep?d=20s"))
	drovertest.Eventually(t, 5*time.Second, "the request began", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.begun == 1
	})
	c.c.Close()
	drovertest.Eventually(t, 5*time.Second, "the exchange ended with 499", func() bool {
		e := h.ended()
		return len(e) == 1 && e[0] == 499
	})
	c2 := h.dial()
	resp, body := c2.do(get("/hello"), "GET")
	if body != "hello\n" || resp.Header.Get("X-Served-By") != "" {
		t.Fatalf("next request: %q from %q, want the loop's answer", body, resp.Header.Get("X-Served-By"))
	}
}

// TestBusyPoolQueues: a request that finds no free slot waits in the
// pool's FIFO queue from the loop and is served when the slot frees; past
// queue_length the answer is 503 queue-full at once, and past max_wait
// 503 wait-timeout; a client that gives up while queued frees its place.
func TestBusyPoolQueues(t *testing.T) {
	h := start(t, options{conc: 1, pool: "queue_length = 1\nmax_wait = \"400ms\"\n"})
	busy := h.dial()
	busy.send(get("/sleep?d=300ms"))
	drovertest.Eventually(t, 5*time.Second, "the slot is taken", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.begun == 1
	})
	queued := h.dial()
	queued.send(get("/hello"))
	drovertest.Eventually(t, 5*time.Second, "the second request is queued", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.begun == 2
	})
	full := h.dial()
	resp, _ := full.do(get("/hello"), "GET")
	if resp.StatusCode != 503 || resp.Header.Get("Drover-Error") != "queue-full" || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("third request: %d %q", resp.StatusCode, resp.Header.Get("Drover-Error"))
	}
	if resp, body := queued.read("GET"); body != "hello\n" || resp.Header.Get("X-Served-By") != "" {
		t.Fatalf("queued request: %q from %q, want the loop's answer", body, resp.Header.Get("X-Served-By"))
	}
	if _, body := busy.read("GET"); !strings.HasSuffix(body, "\n") {
		t.Fatalf("slow request: %q", body)
	}

	mark := t.TempDir() + "/reached"
	busy.send(get("/sleep?d=2s&mark=" + mark))
	drovertest.Eventually(t, 5*time.Second, "the slot is taken again", func() bool {
		_, err := os.Stat(mark)
		return err == nil
	})
	began := time.Now()
	resp, _ = queued.do(get("/hello"), "GET")
	if resp.StatusCode != 503 || resp.Header.Get("Drover-Error") != "wait-timeout" {
		t.Fatalf("waiting past max_wait: %d %q", resp.StatusCode, resp.Header.Get("Drover-Error"))
	}
	if d := time.Since(began); d < 350*time.Millisecond || d > 2*time.Second {
		t.Fatalf("wait-timeout after %v, want about 400ms", d)
	}
	h.mu.Lock()
	begun := h.begun
	h.mu.Unlock()
	gone := h.dial()
	gone.send(get("/hello"))
	drovertest.Eventually(t, 5*time.Second, "the request is queued", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.begun == begun+1
	})
	gone.c.Close()
	drovertest.Eventually(t, 5*time.Second, "the queued request ended with 499", func() bool {
		e := h.ended()
		return e[len(e)-1] == 499
	})
	// Its place is free: queue_length 1 admits the next one, which waits
	// (and times out) rather than being refused at once.
	next := h.dial()
	if resp, _ := next.do(get("/hello"), "GET"); resp.Header.Get("Drover-Error") != "wait-timeout" {
		t.Fatalf("request after the one that left: %d %q", resp.StatusCode, resp.Header.Get("Drover-Error"))
	}
	if _, body := busy.read("GET"); !strings.HasSuffix(body, "\n") {
		t.Fatalf("slow request: %q", body)
	}
}

// TestHalfCloseWithRequestTimeout: a client that sent its FIN with a slow
// request is let go after the grace, request_timeout or not.
func TestHalfCloseWithRequestTimeout(t *testing.T) {
	h := start(t, options{timeout: 30 * time.Second})
	c := h.dial()
	c.send(get("/sleep?d=5s"))
	if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	drovertest.Eventually(t, 2*time.Second, "the exchange ended with 499", func() bool {
		e := h.ended()
		return len(e) == 1 && e[0] == 499
	})
}

// TestFirstRequestHeaderTimeout: a connection that never sends a request
// is closed after the header timeout, not the (longer) idle timeout.
func TestFirstRequestHeaderTimeout(t *testing.T) {
	h := start(t, options{header: 200 * time.Millisecond, idle: time.Minute})
	c := h.dial()
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("silent connection: read %v, want EOF", err)
	}
}

// TestIdleTimeout: an idle client connection is closed.
func TestIdleTimeout(t *testing.T) {
	h := start(t, options{idle: 200 * time.Millisecond})
	c := h.dial()
	c.do(get("/hello"), "GET")
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: read %v, want EOF", err)
	}
}

// TestShutdownLeavesNothing: Shutdown lets a request in flight finish,
// closes idle connections, and leaves no descriptor or goroutine behind.
func TestShutdownLeavesNothing(t *testing.T) {
	h := start(t, options{})
	ignore := goleak.IgnoreCurrent()
	before := countFDs(t)
	idle := h.dial()
	idle.do(get("/hello"), "GET")
	handed := h.dial()
	handed.do("GET /x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET")
	busy := h.dial()
	busy.send(get("/sleep?d=300ms"))
	drovertest.Eventually(t, 5*time.Second, "the request began", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.begun == 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.stop(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	resp, body := busy.read("GET")
	if resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("in-flight request: %d %q, close %v", resp.StatusCode, body, resp.Close)
	}
	for _, c := range []*client{idle, handed, busy} {
		_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.br.ReadByte(); err != io.EOF {
			t.Errorf("connection still open after Shutdown: %v", err)
		}
		c.c.Close()
	}
	drovertest.Eventually(t, 5*time.Second, "descriptors back to their count", func() bool { return countFDs(t) <= before })
	if err := goleak.Find(ignore); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", h.addr); err == nil {
		t.Fatal("the listener still accepts")
	}
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestRequestWithFIN: requests that arrive with the client's FIN (as from
// `printf ... | nc -N`) are answered before the connection closes.
func TestRequestWithFIN(t *testing.T) {
	// The answers must come within the grace; on a loaded machine 10ms
	// is not enough for that.
	t.Cleanup(evloop.SetHangupGrace(time.Second)) // runs after the harness's stop
	h := start(t, options{})
	c := h.dial()
	c.send(get("/hello") + get("/pid"))
	if err := c.c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, body := c.read("GET"); body != "hello\n" {
		t.Fatalf("first: %q", body)
	}
	if _, body := c.read("GET"); !strings.HasSuffix(body, "\n") || body == "hello\n" {
		t.Fatalf("second: %q", body)
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("after the answers: %v, want EOF", err)
	}
}
