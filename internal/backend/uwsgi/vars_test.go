package uwsgi

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

type kv struct{ k, v string }

// parsePacket decodes a uwsgi packet header and vars, strictly.
func parsePacket(b []byte) (mod1, mod2 byte, vars []kv, rest []byte, err error) {
	if len(b) < headerSize {
		return 0, 0, nil, nil, errors.New("short header")
	}
	size := int(binary.LittleEndian.Uint16(b[1:3]))
	mod1, mod2 = b[0], b[3]
	if len(b) < headerSize+size {
		return 0, 0, nil, nil, fmt.Errorf("vars: have %d bytes, header says %d", len(b)-headerSize, size)
	}
	data, rest := b[headerSize:headerSize+size], b[headerSize+size:]
	for len(data) > 0 {
		var k, v string
		if k, data, err = takeString(data); err != nil {
			return 0, 0, nil, nil, err
		}
		if v, data, err = takeString(data); err != nil {
			return 0, 0, nil, nil, err
		}
		vars = append(vars, kv{k, v})
	}
	return mod1, mod2, vars, rest, nil
}

func takeString(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, errors.New("truncated size")
	}
	n := int(binary.LittleEndian.Uint16(b))
	if len(b) < 2+n {
		return "", nil, errors.New("truncated string")
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

func varsMap(t *testing.T, vars []kv) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, p := range vars {
		if _, dup := m[p.k]; dup {
			t.Errorf("var %s sent twice", p.k)
		}
		m[p.k] = p.v
	}
	return m
}

func encode(t *testing.T, tr *Transport, req *http.Request, length int64, mode bodyMode) map[string]string {
	t.Helper()
	b, err := tr.appendPacket(nil, req, length, mode)
	if err != nil {
		t.Fatal(err)
	}
	m1, m2, vars, rest, err := parsePacket(b)
	if err != nil || m1 != 0 || m2 != 0 || len(rest) != 0 {
		t.Fatalf("packet: %d %d %d rest, %v", m1, m2, len(rest), err)
	}
	return varsMap(t, vars)
}

func TestVars(t *testing.T) {
	req, _ := http.NewRequest("PUT", "http://h.example/a%2Fb/c%20d?x=1&y=%20", nil)
	req.Header.Set("Content-Type", "text/csv")
	req.Header.Set("content-length", "99") // non-canonical: still not HTTP_
	req.Header["x-lower"] = []string{"l"}
	req.Header.Set("Proxy", "evil")
	req.Header.Set("X_Under", "u")
	req.Header["Empty"] = nil
	req.RemoteAddr = "10.1.2.3:999"
	req.TLS = &tls.ConnectionState{}
	m := encode(t, &Transport{}, req, 12, bodyLength)
	want := map[string]string{
		"REQUEST_METHOD":  "PUT",
		"REQUEST_URI":     "/a%2Fb/c%20d?x=1&y=%20",
		"PATH_INFO":       "/a/b/c d",
		"QUERY_STRING":    "x=1&y=%20",
		"CONTENT_TYPE":    "text/csv",
		"CONTENT_LENGTH":  "12",
		"SERVER_PROTOCOL": "HTTP/1.1",
		"HTTPS":           "on",
		"REQUEST_SCHEME":  "https",
		"REMOTE_ADDR":     "10.1.2.3",
		"REMOTE_PORT":     "999",
		"SERVER_NAME":     "h.example",
		"SERVER_PORT":     "443",
		"HTTP_HOST":       "h.example",
		"HTTP_X_LOWER":    "l",
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	for _, k := range []string{"HTTP_PROXY", "HTTP_X_UNDER", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_EMPTY", "SCRIPT_NAME", "DROVER_CHUNKED"} {
		if v, ok := m[k]; ok {
			t.Errorf("%s = %q, want absent", k, v)
		}
	}

	// Server-side request: the server's local address gives SERVER_PORT.
	req, _ = http.NewRequest("GET", "/p", nil)
	req.Host = "[::1]:8080"
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv6loopback, Port: 9999}))
	m = encode(t, &Transport{}, req, 0, bodyNone)
	if m["SERVER_NAME"] != "[::1]" || m["SERVER_PORT"] != "9999" || m["CONTENT_LENGTH"] != "" || m["HTTP_HOST"] != "[::1]:8080" {
		t.Errorf("server request vars: %v", m)
	}

	// Chunked modes, Params override, ConnInfo.
	tr := &Transport{Params: map[string]string{"PATH_INFO": "/fixed", "HTTP_X_A": "param", "EXTRA": ""}}
	req, _ = http.NewRequest("POST", "http://h/x", nil)
	req.Header.Set("X-A", "header")
	req = req.WithContext(WithConnInfo(req.Context(), ConnInfo{RemoteAddr: "unix-client", LocalAddr: "", ScriptName: "/s"}))
	m = encode(t, tr, req, -1, bodyShimChunked)
	if m["DROVER_CHUNKED"] != "1" || m["PATH_INFO"] != "/fixed" || m["HTTP_X_A"] != "param" || m["SCRIPT_NAME"] != "/s" || m["REMOTE_ADDR"] != "unix-client" || m["SERVER_PORT"] != "80" {
		t.Errorf("vars: %v", m)
	}
	if _, ok := m["CONTENT_LENGTH"]; ok {
		t.Error("CONTENT_LENGTH sent with DROVER_CHUNKED")
	}
	if _, ok := m["EXTRA"]; !ok {
		t.Error("empty Param not sent")
	}
	m = encode(t, &Transport{}, req, -1, bodyHTTPChunked)
	if m["HTTP_TRANSFER_ENCODING"] != "chunked" {
		t.Errorf("vars: %v", m)
	}
}

func TestVarsTooLarge(t *testing.T) {
	req, _ := http.NewRequest("GET", "http://h/", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 40000))
	if _, err := (&Transport{}).appendPacket(nil, req, 0, bodyNone); err != nil {
		t.Fatalf("40 kB header: %v", err)
	}
	req.Header.Set("X-Big2", strings.Repeat("a", 30000))
	if _, err := (&Transport{}).appendPacket(nil, req, 0, bodyNone); !errors.Is(err, ErrVarsTooLarge) {
		t.Fatalf("70 kB of headers: %v, want ErrVarsTooLarge", err)
	}
	req.Header = http.Header{"X-Huge": {strings.Repeat("a", 70000)}}
	if _, err := (&Transport{}).appendPacket(nil, req, 0, bodyNone); !errors.Is(err, ErrVarsTooLarge) {
		t.Fatalf("70 kB header: %v, want ErrVarsTooLarge", err)
	}
	// RoundTrip reports it without dialing and closes the body.
	body := &closeRecorder{Reader: strings.NewReader("x")}
	req, _ = http.NewRequest("POST", "http://h/", body)
	req.Header.Set("X-Huge", strings.Repeat("a", 70000))
	dialed := false
	_, err := (&Transport{Dial: func(context.Context) (net.Conn, error) { dialed = true; return nil, errors.New("no") }}).RoundTrip(req)
	if !errors.Is(err, ErrVarsTooLarge) || dialed || !body.closed {
		t.Fatalf("RoundTrip: %v, dialed %v, body closed %v", err, dialed, body.closed)
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestSplitHostPort(t *testing.T) {
	for _, c := range []struct{ in, host, port string }{
		{"a:1", "a", "1"},
		{"[::1]:80", "[::1]", "80"},
		{"::1", "", ""},
		{"host", "", ""},
		{"", "", ""},
		{":80", "", "80"},
	} {
		h, p, _ := splitHostPort(c.in)
		if h != c.host || p != c.port {
			t.Errorf("splitHostPort(%q) = %q %q, want %q %q", c.in, h, p, c.host, c.port)
		}
	}
}

// fakeServer serves each accepted connection with handle, on loopback
// unix sockets in a temporary directory.
type fakeServer struct {
	ln    net.Listener
	sock  string
	wg    sync.WaitGroup
	dials int
	mu    sync.Mutex
	conns []net.Conn
}

func newFakeServer(t *testing.T, handle func(c net.Conn)) *fakeServer {
	t.Helper()
	s := &fakeServer{sock: shortDir(t) + "/fake.sock"}
	ln, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *fakeServer) Dial(ctx context.Context) (net.Conn, error) {
	s.mu.Lock()
	s.dials++
	s.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, "unix", s.sock)
}

// readPacket reads one request packet (no body) from br.
func readPacket(br *bufio.Reader) (mod1 byte, err error) {
	var h [4]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, err
	}
	_, err = io.CopyN(io.Discard, br, int64(binary.LittleEndian.Uint16(h[1:3])))
	return h[0], err
}

func TestPingWrongAnswer(t *testing.T) {
	s := newFakeServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := readPacket(br); err == nil {
			c.Write([]byte{0, 0, 0, 0})
		}
	})
	err := (&Transport{Dial: s.Dial}).Ping(context.Background())
	if err == nil || !strings.Contains(err.Error(), "modifier1 0") {
		t.Fatalf("Ping = %v", err)
	}
}

func TestPingTimeout(t *testing.T) {
	block := make(chan struct{})
	s := newFakeServer(t, func(c net.Conn) { <-block })
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := (&Transport{Dial: s.Dial}).Ping(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping = %v, want deadline exceeded", err)
	}
}

// keepAliveServer answers every request packet with a tiny chunked
// response, on the same connection, like the shim.
func keepAliveServer(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		mod, err := readPacket(br)
		if err != nil {
			return
		}
		if mod == modPing {
			c.Write([]byte{modPing, 0, 0, 1})
			continue
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"); err != nil {
			return
		}
	}
}

func TestStaleIdleConnectionRetried(t *testing.T) {
	var mu sync.Mutex
	var conns []net.Conn
	s := newFakeServer(t, func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		keepAliveServer(c)
	})
	tr := &Transport{Dial: s.Dial, KeepAlive: true, MaxConns: 1}
	if _, body := do(t, tr, "GET", "http://x/", nil); body != "ok" {
		t.Fatalf("body %q", body)
	}
	// The instance drops the idle connection (as a restarted shim would).
	mu.Lock()
	conns[0].Close()
	mu.Unlock()
	if _, body := do(t, tr, "GET", "http://x/", nil); body != "ok" {
		t.Fatalf("body after stale connection %q", body)
	}
	mu.Lock()
	conns[1].Close()
	mu.Unlock()
	if err := tr.Ping(context.Background()); err != nil {
		t.Fatalf("Ping after stale connection: %v", err)
	}
	if s.dials != 3 {
		t.Errorf("dials = %d, want 3", s.dials)
	}
}

func TestMaxConnsWaitHonoursContext(t *testing.T) {
	s := newFakeServer(t, keepAliveServer)
	tr := &Transport{Dial: s.Dial, KeepAlive: true, MaxConns: 1}
	// Hold the only connection by not reading a response body.
	req, _ := http.NewRequest("GET", "http://x/", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req2, _ := http.NewRequestWithContext(ctx, "GET", "http://x/", nil)
	if _, err := tr.RoundTrip(req2); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "wait for a free connection") {
		t.Fatalf("second RoundTrip = %v, want a wait timeout", err)
	}
	if err := tr.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping = %v, want a wait timeout", err)
	}
	// Releasing the first lets a waiter through on the same connection.
	done := make(chan error, 1)
	go func() {
		_, body, err := tryDo(tr, "GET", "http://x/", nil)
		if err == nil && body != "ok" {
			err = fmt.Errorf("body %q", body)
		}
		done <- err
	}()
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A closed-early body costs the connection; the slot is freed anyway.
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, body := do(t, tr, "GET", "http://x/", nil); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if s.dials != 2 {
		t.Errorf("dials = %d, want 2", s.dials)
	}
	tr.CloseIdleConnections()
	if tr.open != 0 || len(tr.idle) != 0 {
		t.Errorf("after CloseIdleConnections: open %d idle %d", tr.open, len(tr.idle))
	}
}

func TestGarbageAfterResponse(t *testing.T) {
	s := newFakeServer(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			if _, err := readPacket(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
		}
	})
	tr := &Transport{Dial: s.Dial, KeepAlive: true}
	for i := 0; i < 2; i++ {
		if _, body := do(t, tr, "GET", "http://x/", nil); body != "ok" {
			t.Fatalf("body %q", body)
		}
	}
	if s.dials != 2 {
		t.Errorf("dials = %d, want 2: a connection with stray bytes must not be reused", s.dials)
	}
}

func TestCompactVars(t *testing.T) {
	var w varsWriter
	w.addRaw("REQUEST_METHOD", "GET")
	w.addRaw("QUERY_STRING", "")
	w.addRaw("HTTP_X", strings.Repeat("v", 300))
	got, ok := compactVars(append([]byte(nil), w.b...))
	if want := "REQUEST_METHOD\x00GET\x00QUERY_STRING\x00\x00HTTP_X\x00" + strings.Repeat("v", 300) + "\x00"; !ok || string(got) != want {
		t.Errorf("compactVars = %q, %v; want %q", got, ok, want)
	}
	w = varsWriter{}
	w.addRaw("PATH_INFO", "/a\x00b")
	orig := append([]byte(nil), w.b...)
	if got, ok := compactVars(w.b); ok || string(got) != string(orig) {
		t.Errorf("a NUL in a value: %q, %v; want the vars unchanged and false", got, ok)
	}
	if _, ok := compactVars([]byte{5, 0, 'a'}); ok {
		t.Error("truncated vars compacted")
	}
}
