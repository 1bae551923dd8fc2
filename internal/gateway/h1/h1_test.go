package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/drover-pool/drover/internal/proctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start serves h on a loopback port and returns its address; the server
// is shut down when the test ends.
func start(t *testing.T, h http.Handler, opts ...func(*Server)) (string, *Server) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}
	for _, o := range opts {
		o(s)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return l.Addr().String(), s
}

// dialGets connects to addr and makes n GET requests for path on the
// connection, reading each answer; the connection is closed at the end of
// the test.
func dialGets(t *testing.T, addr, path string, n int) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	br := bufio.NewReader(c)
	for range n {
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	return c, br
}

func client(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// raw sends a raw request and returns everything the server sends until
// it closes the connection.
func raw(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestGetKeepAliveAndContentLength(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Method", r.Method)
		fmt.Fprintf(w, "host=%s uri=%s remote-set=%v local=%v", r.Host, r.RequestURI,
			r.RemoteAddr != "", r.Context().Value(http.LocalAddrContextKey) != nil)
	}))
	c := client(t)
	reused := 0
	for i := 0; i < 3; i++ {
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
			if ci.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+addr+"/a/b?x=1", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "host=" + addr + " uri=/a/b?x=1 remote-set=true local=true"
		if string(b) != want || resp.ContentLength != int64(len(want)) || resp.Header.Get("Date") == "" || resp.Header.Get("X-Method") != "GET" {
			t.Fatalf("got %q, length %d, header %v", b, resp.ContentLength, resp.Header)
		}
	}
	if reused != 2 {
		t.Errorf("connection reused %d times, want 2", reused)
	}
}

func TestChunkedResponseAndTrailers(t *testing.T) {
	big := strings.Repeat("x", 3*holdBack)
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, big)
		w.Header().Set("X-Sum", fmt.Sprintf("%x", sha256.Sum256([]byte(big))))
	}))
	resp, err := client(t).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != big || resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 {
		t.Fatalf("body %d bytes, length %d, te %v", len(b), resp.ContentLength, resp.TransferEncoding)
	}
	if got, want := resp.Trailer.Get("X-Sum"), fmt.Sprintf("%x", sha256.Sum256([]byte(big))); got != want {
		t.Errorf("trailer X-Sum = %q, want %q", got, want)
	}
}

func TestRequestBodies(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "%d %x te=%v trailer=%q", r.ContentLength, sha256.Sum256(b), r.TransferEncoding, r.Trailer.Get("X-T"))
	}))
	body := bytes.Repeat([]byte("0123456789"), 100_000)
	sum := fmt.Sprintf("%x", sha256.Sum256(body))

	resp, err := client(t).Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%d %s te=[] trailer=\"\"", len(body), sum); string(b) != want {
		t.Errorf("Content-Length body: got %q, want %q", b, want)
	}

	got := raw(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\nConnection: close\r\n\r\n"+
		"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: done\r\n\r\n")
	want := fmt.Sprintf("-1 %x te=[chunked] trailer=\"done\"", sha256.Sum256([]byte("hello world")))
	if !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(got, want) {
		t.Errorf("chunked body: got %q, want it to end in %q", got, want)
	}
}

func TestExpectContinue(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			http.Error(w, "no", http.StatusForbidden) // never reads the body
			return
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", b)
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	io.WriteString(c, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("before the body: %q, %v; want 100 Continue", line, err)
	}
	br.ReadString('\n')
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "got hello" {
		t.Errorf("got %q", b)
	}

	// A handler that answers without reading: no 100, and the
	// connection closes since the body was never sent.
	got := raw(t, addr, "POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 403") || !strings.Contains(got, "Connection: close\r\n") {
		t.Errorf("refused: %q", got)
	}
}

func TestMalformedRequests(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "served")
	}), func(s *Server) { s.MaxHeaderBytes = 4096 })
	for _, tc := range []struct {
		name, req string
		code      int
	}{
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"no version", "GET /\r\nHost: a\r\n\r\n", 400},
		{"bad version", "GET / HTTP/x\r\nHost: a\r\n\r\n", 400},
		{"http 2 without preface", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"http 3", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505},
		{"relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"star not options", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"connect", "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", 405},
		{"folded header", "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX\r\n\r\n", 400},
		{"control char", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", 400},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},
		{"te and cl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"te gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
		{"te in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"bad length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400},
		{"signed length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx", 400},
		{"conflicting lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400},
		{"odd expect", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx", 417},
		{"forbidden trailer", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n0\r\n\r\n", 400},
		{"long line", "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: a\r\n\r\n", 414},
		{"big header", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: "+strings.Repeat("b", 100)+"\r\n", 50) + "\r\n", 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := raw(t, addr, tc.req)
			if want := fmt.Sprintf("HTTP/1.1 %d ", tc.code); !strings.HasPrefix(got, want) || !strings.Contains(got, "Connection: close\r\n") {
				t.Errorf("got %q, want %q... with Connection: close", got, want)
			}
		})
	}
	// Still serving, and a request that is fine is served.
	if got := raw(t, addr, "\r\nGET / HTTP/1.0\r\n\r\n"); !strings.HasSuffix(got, "served") {
		t.Errorf("after the bad ones: %q", got)
	}
}

func TestPipelinedAndHTTP10(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	got := raw(t, addr, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(strings.NewReader(got))
	for i := 1; i <= 3; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v (all: %q)", i, err, got)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != fmt.Sprintf("/%d", i) {
			t.Errorf("response %d: %q", i, b)
		}
	}
	// HTTP/1.0 without keep-alive: answered, then closed (raw returns).
	if got := raw(t, addr, "GET /old HTTP/1.0\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.0 200 OK\r\n") || !strings.HasSuffix(got, "/old") {
		t.Errorf("HTTP/1.0: %q", got)
	}
}

func TestNoBodyAnswers(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		default:
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "hello")
		}
	}))
	got := raw(t, addr, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /204 HTTP/1.1\r\nHost: a\r\n\r\nGET /304 HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if strings.Count(got, "hello") != 1 || !strings.HasSuffix(got, "\r\n\r\nhello") || strings.Contains(got, "chunked") {
		t.Errorf("got %q", got)
	}
	for _, s := range []string{"HTTP/1.1 200 OK", "HTTP/1.1 204 No Content", "HTTP/1.1 304 Not Modified"} {
		if !strings.Contains(got, s) {
			t.Errorf("no %q in %q", s, got)
		}
	}
}

// The watch starts for a request however many fast ones came before it
// on the connection (their watch timer is not stopped, but re-aimed).
func TestClientGoneCancelsRequest(t *testing.T) {
	for _, after := range []time.Duration{0, 50 * time.Millisecond} {
		t.Run(fmt.Sprintf("watch-after=%v", after), func(t *testing.T) {
			canceled := make(chan struct{})
			started := make(chan struct{})
			addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/fast" {
					io.WriteString(w, "fast")
					return
				}
				close(started)
				select {
				case <-r.Context().Done():
					close(canceled)
				case <-time.After(10 * time.Second):
				}
			}), func(s *Server) { s.WatchAfter = after })
			c, _ := dialGets(t, addr, "/fast", 5)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			<-started
			c.Close()
			select {
			case <-canceled:
			case <-time.After(5 * time.Second):
				t.Fatal("the request's context was not canceled when the client left")
			}
		})
	}
}

// A client that sends its next request while the previous one is still
// being served is not taken for gone, and the byte the watch read is
// part of that next request.
func TestWatchKeepsPipelinedByte(t *testing.T) {
	release, read := make(chan struct{}), make(chan struct{})
	var n atomic.Int32
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
				http.Error(w, "canceled", 500)
				return
			}
		}
		io.WriteString(w, r.URL.Path)
	}), func(s *Server) {
		s.WatchAfter = time.Millisecond
		var once sync.Once
		s.testHookWatchRead = func() { once.Do(func() { close(read) }) }
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
	proctest.Eventually(t, 5*time.Second, "first request running", func() bool { return n.Load() == 1 })
	io.WriteString(c, "GET /second HTTP/1.1\r\nHost: a\r\n\r\n")
	select {
	case <-read:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not read the next request's first byte")
	}
	close(release)
	br := bufio.NewReader(c)
	for _, want := range []string{"/first", "/second"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if string(b) != want {
			t.Errorf("got %q, want %q", b, want)
		}
	}
}

func TestFlushStreams(t *testing.T) {
	next := make(chan struct{})
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first;")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Error(err)
		}
		<-next
		io.WriteString(w, "second")
	}))
	resp, err := client(t).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first;" {
		t.Fatalf("before the handler went on: %q, %v", buf, err)
	}
	close(next)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second" {
		t.Errorf("rest %q", rest)
	}
}

func TestHijack(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nping\n")
	b, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.1 101") || !strings.HasSuffix(string(b), "echo: ping\n") {
		t.Errorf("got %q", b)
	}
}

func TestPanicClosesOnlyThatConnection(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/panic":
			panic("boom")
		}
		io.WriteString(w, "ok")
	}))
	for _, p := range []string{"/abort", "/panic"} {
		if got := raw(t, addr, "GET "+p+" HTTP/1.1\r\nHost: a\r\n\r\n"); got != "" {
			t.Errorf("%s: got %q, want the connection closed without an answer", p, got)
		}
	}
	if got := raw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"); !strings.HasSuffix(got, "ok") {
		t.Errorf("after panics: %q", got)
	}
}

func TestShutdownLetsRequestsFinish(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started, finish := make(chan struct{}), make(chan struct{})
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(started)
			<-finish
		}
		io.WriteString(w, "done "+r.URL.Path)
	})}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	addr := l.Addr().String()

	// An idle kept-alive connection, and a slow request in flight.
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /quick HTTP/1.1\r\nHost: a\r\n\r\n")
	ibr := bufio.NewReader(idle)
	if resp, err := http.ReadResponse(ibr, nil); err != nil {
		t.Fatal(err)
	} else {
		io.ReadAll(resp.Body)
	}
	slow := make(chan string, 1)
	go func() { slow <- raw(t, addr, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n") }()
	<-started

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// The idle connection is closed, new connections are refused.
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ibr.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: %v, want EOF", err)
	}
	proctest.Eventually(t, 5*time.Second, "listener closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(finish)
	if got := <-slow; !strings.HasSuffix(got, "done /slow") || !strings.Contains(got, "Connection: close") {
		t.Errorf("slow request: %q", got)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
}

func TestH2PrefaceHandedOver(t *testing.T) {
	got := make(chan []byte, 1)
	addr, _ := start(t, http.NotFoundHandler(), func(s *Server) {
		s.H2 = func(c net.Conn) {
			defer c.Close()
			b := make([]byte, 30)
			n, _ := io.ReadFull(c, b)
			got <- b[:n]
		}
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	io.WriteString(c, preface+"abcdef")
	select {
	case b := <-got:
		if string(b) != preface+"abcdef" {
			t.Errorf("H2 read %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("H2 was not called")
	}
}

// A handler's goroutine that reads the body after the handler returned
// on a connection that closes gets an error, never a panic or another
// connection's bytes (the buffers go back to a pool).
func TestBodyReadAfterClose(t *testing.T) {
	late := make(chan error, 16)
	var pooled sync.Map // request body -> closed once serve is done with its connection
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done := make(chan struct{})
		pooled.Store(r.Body, done)
		go func() {
			<-done
			_, err := io.ReadAll(r.Body)
			late <- err
		}()
		w.Header().Set("Connection", "close")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
	}), func(s *Server) {
		s.testHookConnDone = func(c *conn) {
			if ch, ok := pooled.Load(c.body); ok {
				close(ch.(chan struct{}))
			}
		}
	})
	body := strings.Repeat("x", 100_000)
	for i := 0; i < 8; i++ {
		got := raw(t, addr, fmt.Sprintf("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
		if !strings.HasPrefix(got, "HTTP/1.1 401") {
			t.Fatalf("answer %q", got)
		}
	}
	for i := 0; i < 8; i++ {
		if err := <-late; err == nil {
			t.Error("a late body read after the connection closed succeeded")
		}
	}
}

// A header line whose end falls on the read buffer's edge does not end
// the head early (the CRLF read on its own is not the empty line).
func TestLongHeaderLineOnBufferEdge(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "after=%s body=%s", r.Header.Get("X-After"), b)
	}))
	for n := bufSize - 40; n <= bufSize+8; n++ {
		req := "POST / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", n) + "\r\nX-After: 1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
		if got := raw(t, addr, req); !strings.HasSuffix(got, "after=1 body=hello") {
			t.Fatalf("header value of %d bytes: %q", n, got)
		}
	}
}

// An empty Write does not end a chunked body, and framing headers set
// by the handler, or changed after WriteHeader, cannot contradict the
// framing h1 chose.
func TestFramingCannotBeForged(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/empty-write":
			io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			w.Write(nil)
			io.WriteString(w, "HTTP/1.1 200 OK\r\n\r\nforged")
		case "/late-length":
			w.WriteHeader(200)
			w.Header().Set("Content-Length", "3")
			io.WriteString(w, strings.Repeat("b", 5000))
		case "/handler-te":
			w.Header().Set("Transfer-Encoding", "chunked")
			io.WriteString(w, "small")
		}
	}))
	for path, want := range map[string]string{
		"/empty-write": "aHTTP/1.1 200 OK\r\n\r\nforged",
		"/late-length": strings.Repeat("b", 5000),
		"/handler-te":  "small",
	} {
		got := raw(t, addr, "GET "+path+" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		head, _, _ := strings.Cut(got, "\r\n\r\n")
		if strings.Contains(head, "Content-Length") == strings.Contains(head, "Transfer-Encoding") {
			t.Errorf("%s: head %q has both or neither framing header", path, head)
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
		if err != nil {
			t.Fatalf("%s: %v in %q", path, err, got)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || string(b) != want {
			t.Errorf("%s: body %q, %v; want %q", path, b, err, want)
		}
	}
}

// A kept-alive connection may idle for IdleTimeout, but a head must then
// arrive within ReadHeaderTimeout of its first byte.
func TestHeadDeadlineAfterIdle(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), func(s *Server) {
		s.ReadHeaderTimeout = 200 * time.Millisecond
		s.IdleTimeout = 5 * time.Second
	})
	c, br := dialGets(t, addr, "/", 1)
	// Idle for longer than the head timeout: still open. Then a head
	// that stalls after its first bytes: closed at the head timeout.
	idle := time.NewTimer(400 * time.Millisecond)
	<-idle.C
	start := time.Now()
	if _, err := io.WriteString(c, "GET / HT"); err != nil {
		t.Fatalf("connection closed while idle: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("stalled head: %v, want EOF", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("stalled head closed after %v, want about 200ms", d)
	}
}

// An idle kept-alive connection is closed at IdleTimeout after its last
// request, although h1 does not re-arm the idle deadline for every
// request of a busy connection.
func TestIdleTimeoutAfterBusyConnection(t *testing.T) {
	const idle = 300 * time.Millisecond
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}), func(s *Server) { s.IdleTimeout = idle })
	c, br := dialGets(t, addr, "/", 50)
	last := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	// Early by at most a sixteenth of the timeout; late by scheduling only.
	if d := time.Since(last); d < idle-idle/16-10*time.Millisecond || d > 3*time.Second {
		t.Errorf("idle connection closed %v after its last request, want about %v", d, idle)
	}
}
