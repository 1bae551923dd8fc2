package uwsgi

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func envOf(t *testing.T, body string) map[string]any {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("bad /env answer %q: %v", body, err)
	}
	return env
}

func TestUWSGIGetAndPost(t *testing.T) {
	p := startUWSGI(t, "common.py")
	d := &dialer{sock: p.sock}
	tr := &Transport{Dial: d.Dial}

	resp, body := do(t, tr, "GET", "http://example.org/hello?a=1", nil)
	if resp.StatusCode != 200 || body != "hello GET /hello q=a=1" {
		t.Fatalf("GET /hello = %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/plain" {
		t.Errorf("Content-Type = %q", got)
	}

	payload := randomBytes(300<<10, 1)
	resp, body = do(t, tr, "POST", "http://example.org/md5", bytes.NewReader(payload), "Content-Type", "application/octet-stream")
	if want := fmt.Sprintf("%s %d", md5hex(payload), len(payload)); resp.StatusCode != 200 || body != want {
		t.Fatalf("POST /md5 = %d %q, want %q", resp.StatusCode, body, want)
	}
	if n := d.dials.Load(); n != 2 {
		t.Errorf("dials = %d, want one per request (uWSGI closes)", n)
	}
}

func TestUWSGIEnviron(t *testing.T) {
	p := startUWSGI(t, "common.py")
	tr := &Transport{Dial: (&dialer{sock: p.sock}).Dial, Params: map[string]string{"UWSGI_TEST": "yes", "SERVER_NAME": "configured.example"}}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ctx = WithConnInfo(ctx, ConnInfo{RemoteAddr: "203.0.113.9:4567", LocalAddr: "192.0.2.1:8443", HTTPS: true})
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://app.example:8443/env/caf%C3%A9%20x?q=%C3%A9&b=2", nil)
	req.Header.Set("X-Custom", "one")
	req.Header.Add("X-Custom", "two")
	req.Header.Set("Proxy", "http://evil.example")
	req.Header.Set("X_Spoofed", "no")
	req.Header.Add("Cookie", "a=1")
	req.Header.Add("Cookie", "b=2")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 404 {
		// /env/... is not /env: the 404 shows PATH_INFO was decoded.
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if want := "not found: /env/café x"; string(b) != want {
		t.Fatalf("body %q, want %q", b, want)
	}

	req, _ = http.NewRequestWithContext(ctx, "GET", "http://app.example:8443/env?q=%C3%A9&b=2", nil)
	req.Header = http.Header{"X-Custom": {"one", "two"}, "Proxy": {"x"}, "X_spoofed": {"no"}, "Cookie": {"a=1", "b=2"}}
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	env := envOf(t, string(b))
	want := map[string]any{
		"REQUEST_METHOD":  "GET",
		"REQUEST_URI":     "/env?q=%C3%A9&b=2",
		"PATH_INFO":       "/env",
		"QUERY_STRING":    "q=%C3%A9&b=2",
		"SERVER_PROTOCOL": "HTTP/1.1",
		"REMOTE_ADDR":     "203.0.113.9",
		"REMOTE_PORT":     "4567",
		"SERVER_NAME":     "configured.example", // Params win
		"SERVER_PORT":     "8443",
		"HTTPS":           "on",
		"HTTP_HOST":       "app.example:8443",
		"HTTP_X_CUSTOM":   "one, two",
		"HTTP_COOKIE":     "a=1; b=2",
		"UWSGI_TEST":      "yes",
		"wsgi.url_scheme": "https",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %#v, want %#v", k, env[k], v)
		}
	}
	for _, k := range []string{"HTTP_PROXY", "HTTP_X_SPOOFED", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE"} {
		if v, ok := env[k]; ok {
			t.Errorf("%s present (%v)", k, v)
		}
	}
}

func TestUWSGIPing(t *testing.T) {
	p := startUWSGI(t, "common.py")
	tr := &Transport{Dial: (&dialer{sock: p.sock}).Dial}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for i := 0; i < 3; i++ {
		if err := tr.Ping(ctx); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	// Still serving after pings.
	if resp, body := do(t, tr, "GET", "http://x/hello", nil); resp.StatusCode != 200 {
		t.Fatalf("GET after ping: %d %q", resp.StatusCode, body)
	}
}

func TestUWSGIPingWithoutPlugin(t *testing.T) {
	// Without the ping plugin uWSGI drops the connection: Ping must fail,
	// not hang, which is why the package doc asks for --plugin ping.
	p := startUWSGIPlugins(t, "python3", "common.py")
	tr := &Transport{Dial: (&dialer{sock: p.sock}).Dial}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := tr.Ping(ctx); err == nil || !strings.HasPrefix(err.Error(), "uwsgi: ping: ") {
		t.Fatalf("Ping = %v, want an error", err)
	}
}

func TestUWSGIUnknownLengthBody(t *testing.T) {
	p := startUWSGI(t, "common.py")
	tr := &Transport{Dial: (&dialer{sock: p.sock}).Dial}
	// Small: read ahead, sent with a Content-Length, seen by wsgi.input.
	payload := randomBytes(10000, 2)
	resp, body := do(t, tr, "POST", "http://x/md5", unknownLength{bytes.NewReader(payload)})
	if want := fmt.Sprintf("%s %d", md5hex(payload), len(payload)); resp.StatusCode != 200 || body != want {
		t.Fatalf("POST /md5 = %d %q, want %q", resp.StatusCode, body, want)
	}
	// Empty.
	resp, body = do(t, tr, "POST", "http://x/md5", unknownLength{bytes.NewReader(nil)})
	if want := fmt.Sprintf("%s 0", md5hex(nil)); body != want {
		t.Fatalf("POST /md5 empty = %d %q, want %q", resp.StatusCode, body, want)
	}
	// Large: streamed chunked; plain wsgi.input sees nothing (package doc),
	// but the exchange completes.
	big := randomBytes(200<<10, 3)
	resp, body = do(t, tr, "POST", "http://x/md5", unknownLength{bytes.NewReader(big)})
	if resp.StatusCode != 200 || !strings.HasSuffix(body, " 0") {
		t.Fatalf("POST /md5 large chunked = %d %q", resp.StatusCode, body)
	}
}

func TestUWSGIStreamsAndIgnoredBody(t *testing.T) {
	p := startUWSGI(t, "common.py")
	tr := &Transport{Dial: (&dialer{sock: p.sock}).Dial}

	// The application answers without reading 2 MiB of body and streams a
	// response without length: uWSGI closes with the body unread, which
	// the kernel reports as a reset after the last byte.
	for i := 0; i < 5; i++ {
		resp, body := do(t, tr, "POST", "http://x/ignore-body", bytes.NewReader(randomBytes(2<<20, 4)))
		if resp.StatusCode != 200 || body != "ignored 0\nignored 1\nignored 2\n" {
			t.Fatalf("POST /ignore-body = %d %q", resp.StatusCode, body)
		}
	}

	// Streaming: the first chunk arrives before the app yields the second.
	fifo := filepath.Join(shortDir(t), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	checkStreaming(t, tr, fifo)

	resp, body := do(t, tr, "GET", "http://x/big?n=3000000", nil)
	if resp.StatusCode != 200 || len(body) != 3000000 {
		t.Fatalf("GET /big = %d, %d bytes", resp.StatusCode, len(body))
	}

	resp, body = do(t, tr, "HEAD", "http://x/hello", nil)
	if resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD /hello = %d %q", resp.StatusCode, body)
	}
}

// checkStreaming reads the first chunk of /stream, only then lets the app
// produce the second (through a FIFO it blocks on), then reads that.
func checkStreaming(t *testing.T, tr http.RoundTripper, fifo string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://x/stream?fifo="+fifo, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("first\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "first\n" {
		t.Fatalf("first chunk %q, %v", first, err)
	}
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("go")
	f.Close()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second go" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

func TestUWSGIContextCancel(t *testing.T) {
	p := startUWSGI(t, "common.py")
	tr := &Transport{Dial: (&dialer{sock: p.sock}).Dial}
	fifo := filepath.Join(shortDir(t), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://x/stream?fifo="+fifo, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.ReadAll(resp.Body)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context canceled", err)
	}
	// Unblock the app so the process is not stuck on the FIFO.
	if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
		f.Close()
	}
}
