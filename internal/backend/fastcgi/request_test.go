package fastcgi

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func (t *Transport) idleCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle)
}

// TestRequestEncoding checks the records on the wire with a decoder of
// its own: pairs never straddle records, records are padded to 8 bytes
// with zeros, STDIN records hold at most 65535 bytes and end with an
// empty one.
func TestRequestEncoding(t *testing.T) {
	got := make(chan *rawRequest, 1)
	a := rawApp(t, func(req *rawRequest, w io.Writer) {
		got <- req
		w.Write(cat(stdout("Status: 204\r\n\r\n"), endRequest(0, 0)))
	})
	tr := a.transport()
	tr.Root = ""
	tr.Params = map[string]string{"APP_ENV": "test", "SERVER_NAME": "override.example"}
	defer tr.CloseIdleConnections()

	body := make([]byte, 3*maxContent+123)
	rand.NewChaCha8([32]byte{2}).Read(body)
	req := newRequest(t, "POST", "http://h/x", bytes.NewReader(body))
	long := strings.Repeat("v", 200)
	req.Header.Set("X-Long", long)
	for i := range 40 { // more params than one record holds
		req.Header.Set("X-Filler-"+strings.Repeat("n", i), strings.Repeat("f", 3000))
	}
	resp, _ := do(t, tr, req)
	if resp.StatusCode != 204 {
		t.Fatal(resp.Status)
	}
	r := <-got
	if !r.keep {
		t.Error("FCGI_KEEP_CONN not set")
	}
	if r.paramRecords < 2 {
		t.Errorf("%d PARAMS records, want several", r.paramRecords)
	}
	if !bytes.Equal(r.stdin, body) {
		t.Errorf("STDIN: %d bytes, want %d", len(r.stdin), len(body))
	}
	for _, n := range r.stdinRecords[:len(r.stdinRecords)-1] {
		if n == 0 || n > maxContent {
			t.Errorf("STDIN record of %d bytes", n)
		}
	}
	if r.params["HTTP_X_LONG"] != long || r.params["APP_ENV"] != "test" ||
		r.params["SERVER_NAME"] != "override.example" || r.params["CONTENT_LENGTH"] != "196728" {
		t.Errorf("params: X_LONG %d bytes, APP_ENV %q, SERVER_NAME %q, CONTENT_LENGTH %q",
			len(r.params["HTTP_X_LONG"]), r.params["APP_ENV"], r.params["SERVER_NAME"], r.params["CONTENT_LENGTH"])
	}
	if _, ok := r.params["SCRIPT_FILENAME"]; ok {
		t.Error("SCRIPT_FILENAME without Root or Script")
	}
	if r.params["PATH_INFO"] != "/x" || r.params["SCRIPT_NAME"] != "" {
		t.Errorf("SCRIPT_NAME %q PATH_INFO %q", r.params["SCRIPT_NAME"], r.params["PATH_INFO"])
	}

	// GET: no body, no CONTENT_LENGTH, one write; the same connection.
	do(t, tr, newRequest(t, "GET", "http://h/y", nil))
	r = <-got
	if _, ok := r.params["CONTENT_LENGTH"]; ok || len(r.stdinRecords) != 1 {
		t.Errorf("GET: CONTENT_LENGTH %q, STDIN records %v", r.params["CONTENT_LENGTH"], r.stdinRecords)
	}
	if n := a.dials.Load(); n != 1 {
		t.Errorf("%d dials, want 1", n)
	}
}

func TestParamErrors(t *testing.T) {
	dialed := false
	tr := &Transport{Dial: func(ctx context.Context) (net.Conn, error) {
		dialed = true
		return nil, io.EOF
	}}
	req := newRequest(t, "GET", "http://h/", nil)
	req.Header.Set("X-Nul", "a\x00b")
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), `fastcgi: param "HTTP_X_NUL" contains a NUL byte`) {
		t.Errorf("NUL in a header: %v", err)
	}
	req = newRequest(t, "GET", "http://h/", nil)
	req.Header.Set("X-Huge", strings.Repeat("h", maxContent))
	if _, err := tr.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "param HTTP_X_HUGE is too long") {
		t.Errorf("huge header: %v", err)
	}
	tr.Params = map[string]string{"A\x00": "b"}
	if _, err := tr.RoundTrip(newRequest(t, "GET", "http://h/", nil)); err == nil {
		t.Error("NUL in a param name accepted")
	}
	if dialed {
		t.Error("dialed for a request that cannot be encoded")
	}
	if _, err := (&Transport{}).RoundTrip(newRequest(t, "GET", "http://h/", nil)); err == nil {
		t.Error("RoundTrip without Dial succeeded")
	}
}

func paramMap(t *testing.T, tr *Transport, req *http.Request) map[string]string {
	t.Helper()
	p, err := tr.params(req, nil)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range p {
		if _, dup := m[kv.name]; dup {
			t.Errorf("param %s twice", kv.name)
		}
		m[kv.name] = kv.value
	}
	return m
}

func TestParams(t *testing.T) {
	tr := &Transport{}
	req := newRequest(t, "GET", "http://example.org/a?b", nil)
	req.RemoteAddr = "198.51.100.2:555"
	req = req.WithContext(context.WithValue(req.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}))
	req.Header["X_Real_Ip"] = []string{"spoof"}
	req.Header["Proxy"] = []string{"x"}
	req.Header["pRoXy"] = []string{"x"}
	m := paramMap(t, tr, req)
	for k, v := range map[string]string{
		"REMOTE_ADDR": "198.51.100.2", "REMOTE_PORT": "555",
		"SERVER_ADDR": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_NAME": "example.org",
		"HTTP_HOST": "example.org", "QUERY_STRING": "b", "REQUEST_URI": "/a?b",
		"REDIRECT_STATUS": "200", "REQUEST_METHOD": "GET",
	} {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	for _, k := range []string{"HTTP_X_REAL_IP", "HTTP_PROXY", "HTTPS", "CONTENT_TYPE", "CONTENT_LENGTH"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s set", k)
		}
	}

	// A ConnInfo hook, as the backend package uses for its own context
	// value.
	tr.ConnInfo = func(ctx context.Context) (ConnInfo, bool) {
		return ConnInfo{RemoteAddr: "192.0.2.9:1234", HTTPS: true}, true
	}
	m = paramMap(t, tr, newRequest(t, "GET", "https://example.org/", nil))
	if m["REMOTE_ADDR"] != "192.0.2.9" || m["HTTPS"] != "on" || m["SERVER_PORT"] != "443" {
		t.Errorf("with ConnInfo hook: %v", m)
	}
}

func TestSplitScript(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"index.php", "a/b.php", "dir/index.php", "noindex/x.txt"} {
		p := filepath.Join(root, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	tr := &Transport{Root: root}
	for _, tc := range []struct{ path, file, name, info string }{
		{"/index.php/foo/bar", "index.php", "/index.php", "/foo/bar"},
		{"/index.php", "index.php", "/index.php", ""},
		{"/a/b.php/x.php/y", "a/b.php", "/a/b.php", "/x.php/y"},
		{"/", "index.php", "/index.php", ""},
		{"/dir", "dir/index.php", "/dir/index.php", ""},
		{"/noindex", "noindex", "/noindex", ""},
		{"/missing/x", "missing/x", "/missing/x", ""},
		{"/a/missing.php/x", "a/missing.php/x", "/a/missing.php/x", ""},
	} {
		file, name, info := tr.splitScript(tc.path)
		if file != filepath.Join(root, tc.file) || name != tc.name || info != tc.info {
			t.Errorf("%s: %q %q %q, want %q %q %q", tc.path, file, name, info, filepath.Join(root, tc.file), tc.name, tc.info)
		}
	}
	// The URL path is cleaned first: no way out of Root.
	m := paramMap(t, tr, newRequest(t, "GET", "http://h/../../etc/passwd", nil))
	if m["SCRIPT_FILENAME"] != filepath.Join(root, "etc/passwd") || m["DOCUMENT_URI"] != "/etc/passwd" {
		t.Errorf("dot-dot: %q %q", m["SCRIPT_FILENAME"], m["DOCUMENT_URI"])
	}

	tr = &Transport{Script: "/srv/app/public/index.php"}
	for _, tc := range []struct{ path, name, info string }{
		{"/", "", "/"},
		{"/blog/1", "", "/blog/1"},
		{"/index.php", "/index.php", ""},
		{"/index.php/blog", "/index.php", "/blog"},
		{"/index.phpx", "", "/index.phpx"},
	} {
		file, name, info := tr.splitScript(tc.path)
		if file != tr.Script || name != tc.name || info != tc.info {
			t.Errorf("script %s: %q %q %q, want %q %q", tc.path, file, name, info, tc.name, tc.info)
		}
	}
	if m := paramMap(t, tr, newRequest(t, "GET", "http://h/", nil)); m["DOCUMENT_ROOT"] != "/srv/app/public" {
		t.Errorf("DOCUMENT_ROOT %q", m["DOCUMENT_ROOT"])
	}
}
