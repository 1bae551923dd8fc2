package fastcgi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/proctest"
)

// app is a FastCGI application under test, reached through a unix socket.
type app struct {
	dir      string // document root
	sock     string
	listener *os.File // the listening socket, passed to php-cgi as fd 0
	dials    atomic.Int32

	mu     sync.Mutex
	stderr []string
}

// transport returns a Transport for the app that counts dials and
// collects stderr lines.
func (a *app) transport() *Transport {
	return &Transport{
		Dial: func(ctx context.Context) (net.Conn, error) {
			a.dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "unix", a.sock)
		},
		Root: a.dir,
		Stderr: func(line string) {
			a.mu.Lock()
			a.stderr = append(a.stderr, line)
			a.mu.Unlock()
		},
	}
}

func (a *app) stderrLines() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.stderr...)
}

// listenUnix makes a listening unix socket in a test directory.
func listenUnix(t *testing.T) (*net.UnixListener, string) {
	t.Helper()
	// Socket paths are limited to 108 bytes: t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "fcgi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "app.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	return l, sock
}

// startPHP runs a single-process php-cgi on a listening unix socket passed
// as its fd 0, as spawn-fcgi and drover do, with the given scripts as its
// document root. It is killed when the test ends.
func startPHP(t *testing.T, scripts map[string]string) *app {
	t.Helper()
	a := newPHPApp(t, scripts)
	a.spawn(t, 100000)
	return a
}

// newPHPApp prepares the document root and the listening socket; spawn
// starts php-cgi processes on it.
func newPHPApp(t *testing.T, scripts map[string]string) *app {
	t.Helper()
	if _, err := exec.LookPath("php-cgi"); err != nil {
		proctest.Missing(t, "php-cgi")
	}
	a := &app{dir: t.TempDir()}
	for name, body := range scripts {
		p := filepath.Join(a.dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l, sock := listenUnix(t)
	a.sock = sock
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	a.listener = f
	t.Cleanup(func() { f.Close() })
	return a
}

// spawn starts a php-cgi that exits after maxRequests requests; the
// returned channel is closed when it has exited.
func (a *app) spawn(t *testing.T, maxRequests int) <-chan struct{} {
	t.Helper()
	php, err := exec.LookPath("php-cgi")
	if err != nil {
		proctest.Missing(t, "php-cgi")
	}
	// -n: no php.ini, so that the distribution's settings (such as
	// output_buffering=4096 or post_max_size=8M) do not change the tests.
	cmd := exec.Command(php, "-n",
		"-d", "output_buffering=0",
		"-d", "post_max_size=64M",
		"-d", "display_errors=0",
		"-d", "log_errors=1",
		"-d", "html_errors=0",
	)
	cmd.Stdin = a.listener
	cmd.Env = []string{"PATH=/usr/bin:/bin", fmt.Sprintf("PHP_FCGI_MAX_REQUESTS=%d", maxRequests)}
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if out.Len() > 0 {
			t.Logf("php-cgi output: %s", out.String())
		}
	})
	return exited
}

// get makes a request through tr and returns the response with its whole
// body read.
func do(t *testing.T, tr http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// testContext is cancelled when the test ends and bounds it in time, so
// that a hang fails the test instead of the whole run.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
