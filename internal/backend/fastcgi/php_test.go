package fastcgi

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The tests in this file run a real php-cgi.

const phpInfo = `<?php
header('Content-Type: application/json');
echo json_encode($_SERVER);
`

func serverVars(t *testing.T, body string) map[string]any {
	t.Helper()
	var vars map[string]any
	if err := json.Unmarshal([]byte(body), &vars); err != nil {
		t.Fatalf("decode $_SERVER: %v\n%s", err, body)
	}
	return vars
}

func wantVars(t *testing.T, vars map[string]any, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, _ := vars[k].(string); got != v {
			t.Errorf("$_SERVER[%q] = %q, want %q", k, got, v)
		}
	}
}

func TestPHPServerVars(t *testing.T) {
	a := startPHP(t, map[string]string{"info.php": phpInfo})
	tr := a.transport()
	defer tr.CloseIdleConnections()

	req := newRequest(t, "GET", "http://example.org:8080/info.php/foo/bar?x=1&y=%20z", nil)
	req.RemoteAddr = "10.9.8.7:1" // overridden by ConnInfo
	req.Header.Set("X-Custom", "yes")
	req.Header.Add("Cookie", "a=1")
	req.Header.Add("Cookie", "b=2")
	req.Header.Set("Proxy", "http://evil.example/")
	req.Header["X_Spoof"] = []string{"1"}
	req = req.WithContext(WithConnInfo(testContext(t), ConnInfo{
		RemoteAddr: "203.0.113.7:4711",
		LocalAddr:  "192.0.2.1:8443",
	}))
	resp, body := do(t, tr, req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %s\n%s", resp.Status, body)
	}
	vars := serverVars(t, body)
	wantVars(t, vars, map[string]string{
		"SCRIPT_NAME":       "/info.php",
		"PATH_INFO":         "/foo/bar",
		"SCRIPT_FILENAME":   filepath.Join(a.dir, "info.php"),
		"DOCUMENT_ROOT":     a.dir,
		"QUERY_STRING":      "x=1&y=%20z",
		"REQUEST_URI":       "/info.php/foo/bar?x=1&y=%20z",
		"DOCUMENT_URI":      "/info.php/foo/bar",
		"REQUEST_METHOD":    "GET",
		"REMOTE_ADDR":       "203.0.113.7",
		"REMOTE_PORT":       "4711",
		"SERVER_ADDR":       "192.0.2.1",
		"SERVER_PORT":       "8443",
		"SERVER_NAME":       "example.org",
		"HTTP_HOST":         "example.org:8080",
		"HTTP_X_CUSTOM":     "yes",
		"HTTP_COOKIE":       "a=1; b=2",
		"SERVER_SOFTWARE":   "drover",
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"REQUEST_SCHEME":    "http",
	})
	for _, k := range []string{"HTTP_PROXY", "HTTP_X_SPOOF", "HTTPS"} {
		if v, ok := vars[k]; ok {
			t.Errorf("$_SERVER[%q] = %v, want unset", k, v)
		}
	}

	// TLS on the client connection: HTTPS=on.
	req = newRequest(t, "GET", "http://example.org/info.php", nil)
	req = req.WithContext(WithConnInfo(testContext(t), ConnInfo{RemoteAddr: "[2001:db8::1]:443", HTTPS: true}))
	_, body = do(t, tr, req)
	wantVars(t, serverVars(t, body), map[string]string{
		"HTTPS": "on", "REQUEST_SCHEME": "https", "SERVER_PORT": "443",
		"REMOTE_ADDR": "2001:db8::1", "SCRIPT_NAME": "/info.php", "PATH_INFO": "",
	})
}

func TestPHPDirectoryIndexAndNotFound(t *testing.T) {
	a := startPHP(t, map[string]string{
		"index.php":     `<?php echo "root index ", $_SERVER['SCRIPT_NAME'];`,
		"sub/index.php": `<?php echo "sub index ", $_SERVER['SCRIPT_NAME'];`,
	})
	tr := a.transport()
	defer tr.CloseIdleConnections()
	for path, want := range map[string]string{
		"/":     "root index /index.php",
		"/sub/": "sub index /sub/index.php",
		"/sub":  "sub index /sub/index.php",
	} {
		resp, body := do(t, tr, newRequest(t, "GET", "http://h"+path, nil))
		if resp.StatusCode != 200 || body != want {
			t.Errorf("GET %s: %s %q, want 200 %q", path, resp.Status, body, want)
		}
	}
	resp, body := do(t, tr, newRequest(t, "GET", "http://h/missing.php", nil))
	if resp.StatusCode != 404 {
		t.Errorf("GET /missing.php: %s %q, want 404 from php-cgi", resp.Status, body)
	}
}

func TestPHPFrontController(t *testing.T) {
	a := startPHP(t, map[string]string{"app/front.php": phpInfo})
	tr := a.transport()
	tr.Root = ""
	tr.Script = filepath.Join(a.dir, "app", "front.php")
	defer tr.CloseIdleConnections()

	_, body := do(t, tr, newRequest(t, "GET", "http://h/blog/2024?page=2", nil))
	wantVars(t, serverVars(t, body), map[string]string{
		"SCRIPT_FILENAME": tr.Script,
		"SCRIPT_NAME":     "",
		"PATH_INFO":       "/blog/2024",
		"QUERY_STRING":    "page=2",
		"REQUEST_URI":     "/blog/2024?page=2",
		"DOCUMENT_ROOT":   filepath.Join(a.dir, "app"),
	})
	_, body = do(t, tr, newRequest(t, "GET", "http://h/front.php/blog", nil))
	wantVars(t, serverVars(t, body), map[string]string{"SCRIPT_NAME": "/front.php", "PATH_INFO": "/blog"})
}

// TestPHPPostBody sends 10 MiB from a reader that is not a buffer, so the
// body can only arrive whole if it is streamed record by record.
func TestPHPPostBody(t *testing.T) {
	a := startPHP(t, map[string]string{"post.php": `<?php
$in = fopen('php://input', 'rb');
$h = hash_init('md5');
$n = 0;
while (!feof($in)) { $b = fread($in, 65536); $n += strlen($b); hash_update($h, $b); }
echo $n, " ", hash_final($h), " ", $_SERVER['CONTENT_LENGTH'], " ", $_SERVER['CONTENT_TYPE'];
`})
	tr := a.transport()
	defer tr.CloseIdleConnections()

	const size = 10 << 20
	sum := md5.New()
	rng := rand.NewChaCha8([32]byte{1})
	src := io.TeeReader(io.LimitReader(rng, size), sum)
	req := newRequest(t, "POST", "http://h/post.php", io.NopCloser(src))
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, body := do(t, tr, req)
	want := fmt.Sprintf("%d %s %d application/octet-stream", size, hex.EncodeToString(sum.Sum(nil)), size)
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("POST 10 MiB: %s %q, want %q", resp.Status, body, want)
	}

	// A form body of a known length, through the same connection.
	req = newRequest(t, "POST", "http://h/post.php", strings.NewReader("a=1&b=2"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, body = do(t, tr, req)
	if want := "7 " + fmt.Sprintf("%x", md5.Sum([]byte("a=1&b=2"))) + " 7 application/x-www-form-urlencoded"; body != want {
		t.Errorf("POST form: %q, want %q", body, want)
	}
	if n := a.dials.Load(); n != 1 {
		t.Errorf("%d dials for two requests, want 1", n)
	}
}

func TestPHPStatusHeaderRedirect(t *testing.T) {
	a := startPHP(t, map[string]string{
		"created.php":  `<?php http_response_code(201); header('X-Drover: yes'); echo "made";`,
		"redirect.php": `<?php header('Location: /x');`,
		"teapot.php":   `<?php header('Status: 418 Short And Stout'); echo "tea";`,
	})
	tr := a.transport()
	defer tr.CloseIdleConnections()

	resp, body := do(t, tr, newRequest(t, "GET", "http://h/created.php", nil))
	if resp.StatusCode != 201 || resp.Header.Get("X-Drover") != "yes" || body != "made" {
		t.Errorf("created.php: %s %v %q", resp.Status, resp.Header, body)
	}
	resp, _ = do(t, tr, newRequest(t, "GET", "http://h/redirect.php", nil))
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/x" {
		t.Errorf("redirect.php: %s %v, want 302 to /x", resp.Status, resp.Header)
	}
	resp, body = do(t, tr, newRequest(t, "GET", "http://h/teapot.php", nil))
	if resp.StatusCode != 418 || resp.Status != "418 Short And Stout" || body != "tea" {
		t.Errorf("teapot.php: %q %q", resp.Status, body)
	}
	if _, ok := resp.Header["Status"]; ok {
		t.Errorf("Status header passed on: %v", resp.Header)
	}
}

// TestPHPStreaming shows that output flushed by the script reaches the
// client while the script still runs: the script writes its second part
// only after the test, having read the first part, creates a gate file.
func TestPHPStreaming(t *testing.T) {
	a := startPHP(t, map[string]string{"stream.php": `<?php
echo "first\n";
flush();
$gate = $_GET['gate'];
for ($i = 0; $i < 2000 && !file_exists($gate); $i++) { usleep(10000); clearstatcache(); }
echo file_exists($gate) ? "second\n" : "gate timeout\n";
`})
	tr := a.transport()
	defer tr.CloseIdleConnections()
	gate := filepath.Join(t.TempDir(), "gate")

	req := newRequest(t, "GET", "http://h/stream.php?gate="+url.QueryEscape(gate), nil)
	resp, err := tr.RoundTrip(req.WithContext(testContext(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make(chan string, 1)
	go func() {
		b := make([]byte, len("first\n"))
		_, err := io.ReadFull(resp.Body, b)
		if err != nil {
			first <- err.Error()
			return
		}
		first <- string(b)
	}()
	select {
	case got := <-first:
		if got != "first\n" {
			t.Fatalf("first part: %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first part did not arrive while the script waited")
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("second part: %q, %v", rest, err)
	}
}

// TestPHPTimedStreaming is the classic form: the script sleeps 300ms
// between two flushed parts, and the first must be in hand before the
// sleep could have ended.
func TestPHPTimedStreaming(t *testing.T) {
	a := startPHP(t, map[string]string{"sleep.php": `<?php
echo "first\n"; flush(); usleep(300000); echo "second\n";
`})
	tr := a.transport()
	defer tr.CloseIdleConnections()
	start := time.Now()
	resp, err := tr.RoundTrip(newRequest(t, "GET", "http://h/sleep.php", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make(chan time.Duration, 1)
	go func() {
		b := make([]byte, len("first\n"))
		if _, err := io.ReadFull(resp.Body, b); err == nil && string(b) == "first\n" {
			first <- time.Since(start)
		}
		close(first)
	}()
	select {
	case d, ok := <-first:
		if !ok {
			t.Fatal("bad first part")
		}
		t.Logf("first part after %v", d)
	case <-time.After(250 * time.Millisecond):
		t.Fatal("first part not received within 250ms: output is not streamed")
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("second part: %q, %v", rest, err)
	}
}

func TestPHPConnectionReuseAndPing(t *testing.T) {
	a := startPHP(t, map[string]string{
		"pid.php":    `<?php echo getmypid();`,
		"stderr.php": `<?php error_log("drover-stderr-line"); echo "ok";`,
	})
	tr := a.transport()
	defer tr.CloseIdleConnections()

	// Ping on a fresh connection.
	if err := tr.Ping(testContext(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if n := a.dials.Load(); n != 1 {
		t.Fatalf("%d dials after Ping, want 1", n)
	}
	var pid string
	for i := range 5 {
		_, body := do(t, tr, newRequest(t, "GET", "http://h/pid.php", nil))
		if i > 0 && body != pid {
			t.Errorf("request %d served by pid %s, then %s", i, pid, body)
		}
		pid = body
	}
	_, body := do(t, tr, newRequest(t, "GET", "http://h/stderr.php", nil))
	if body != "ok" || !contains(a.stderrLines(), "drover-stderr-line") {
		t.Errorf("stderr.php: %q, stderr %q", body, a.stderrLines())
	}
	if n := a.dials.Load(); n != 2 {
		t.Errorf("%d dials for ping and 6 requests, want 2 (one for ping, one reused)", n)
	}

	// Ping while a kept connection is idle: php-cgi blocks reading it and
	// would not accept a new connection, so Ping must use it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Ping(ctx); err != nil {
		t.Fatalf("Ping with an idle connection: %v", err)
	}
	if n := a.dials.Load(); n != 2 {
		t.Errorf("%d dials after Ping on the idle connection, want 2", n)
	}
	// php-cgi closed that connection after answering: the next request
	// dials again.
	_, body = do(t, tr, newRequest(t, "GET", "http://h/pid.php", nil))
	if body != pid {
		t.Errorf("pid %s after ping, want %s", body, pid)
	}
}

// TestPHPCancel cancels a request while the script is still writing: the
// body's Read returns the context's error at once.
func TestPHPCancel(t *testing.T) {
	a := startPHP(t, map[string]string{"slow.php": `<?php
echo "start\n"; flush();
for ($i = 0; $i < 1000; $i++) { usleep(10000); echo "."; flush(); }
`})
	tr := a.transport()
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(testContext(t))
	resp, err := tr.RoundTrip(newRequest(t, "GET", "http://h/slow.php", nil).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, b); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = io.Copy(io.Discard, resp.Body)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v, want context.Canceled", err)
	}
}

// TestPHPStaleIdleConnection: php-cgi exits after PHP_FCGI_MAX_REQUESTS
// requests and closes the kept connection with it. The next request must
// not fail on that connection: the non-blocking peek finds it closed or,
// for a connection it cannot peek at, the request is sent again on a new
// one (a POST too: writing to the closed connection fails at once, so its
// body was not touched).
func TestPHPStaleIdleConnection(t *testing.T) {
	for _, peek := range []bool{true, false} {
		t.Run(fmt.Sprintf("peek=%v", peek), func(t *testing.T) {
			a := newPHPApp(t, map[string]string{"ok.php": `<?php echo getmypid(), " ", file_get_contents('php://input');`})
			tr := a.transport()
			if !peek {
				dial := tr.Dial
				tr.Dial = func(ctx context.Context) (net.Conn, error) {
					c, err := dial(ctx)
					if err != nil {
						return nil, err
					}
					return struct{ net.Conn }{c}, nil // hides syscall.Conn
				}
			}
			defer tr.CloseIdleConnections()

			var prev string
			for i, method := range []string{"GET", "GET", "POST"} {
				exited := a.spawn(t, 1)
				var body io.Reader
				want := ""
				if method == "POST" {
					want = "replayable"
					body = strings.NewReader(want) // NewRequest sets GetBody
				}
				resp, got := do(t, tr, newRequest(t, method, "http://h/ok.php", body))
				pid, input, _ := strings.Cut(got, " ")
				if resp.StatusCode != 200 || pid == prev || input != want {
					t.Fatalf("request %d (%s): %s %q, previous pid %s", i, method, resp.Status, got, prev)
				}
				prev = pid
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					t.Fatal("php-cgi did not exit after PHP_FCGI_MAX_REQUESTS")
				}
			}
			if n := a.dials.Load(); n != 3 {
				t.Errorf("%d dials, want 3", n)
			}
		})
	}
}
