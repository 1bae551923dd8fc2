package uwsgi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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

	"github.com/drover-pool/drover/python"
)

// Debian's interpreter: python3-flask is importable only from it.
const debianPython = "/usr/bin/python3"

// testTimeout bounds every exchange with a test process, so that a bug
// shows as a failure rather than a hung test binary.
const testTimeout = 30 * time.Second

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a test instance: a process group killed and reaped at cleanup.
type proc struct {
	cmd    *exec.Cmd
	sock   string
	output *lockedBuffer
	exited chan struct{} // closed once Wait returned
	err    error         // Wait's result, valid after exited
}

func (p *proc) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(testTimeout):
		t.Fatalf("process %d did not exit; output:\n%s", p.cmd.Process.Pid, p.output.String())
		return nil
	}
}

// start runs cmd in its own process group and registers its cleanup.
func start(t testing.TB, cmd *exec.Cmd, output *lockedBuffer) *proc {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	p := &proc{cmd: cmd, output: output, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(cmd.Path), output.String())
		}
	})
	return p
}

// shortDir returns a fresh directory with a short path: unix socket paths
// are limited to 108 bytes and test names make t.TempDir long.
func shortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "drw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testdataDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func cleanEnv(extra ...string) []string {
	return append([]string{"PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1", "LANG=C.UTF-8"}, extra...)
}

// shimOptions say how to launch the shim.
type shimOptions struct {
	app         string // module:callable
	concurrency int
	env         []string
}

// launchShim starts drover_wsgi.py the way drover does: a listening unix
// socket as fd 0 and DROVER_READY_FD on a pipe. ready reports whether the
// shim said READY (false: it exited first).
func launchShim(t testing.TB, o shimOptions) (p *proc, ready bool) {
	t.Helper()
	if _, err := os.Stat(debianPython); err != nil {
		proctest.Missing(t, debianPython)
	}
	dir := shortDir(t)
	shim, err := python.WriteShim(dir)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "app.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false) // the socket file outlives our copy
	lf, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	readR, readyW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer readR.Close()

	concurrency := o.concurrency
	if concurrency == 0 {
		concurrency = 1
	}
	out := &lockedBuffer{}
	cmd := exec.Command(debianPython, shim, "--app", o.app, "--dir", testdataDir(t))
	cmd.Env = cleanEnv(append([]string{"DROVER_READY_FD=3", "DROVER_CONCURRENCY=" + itoa(concurrency)}, o.env...)...)
	cmd.Stdin = lf
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.Stdout = out
	cmd.Stderr = out
	p = start(t, cmd, out)
	p.sock = sock
	lf.Close()
	readyW.Close()

	line, _ := bufio.NewReader(readR).ReadString('\n')
	return p, line == "READY\n"
}

func itoa(n int) string {
	return string(appendInt(nil, n))
}

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// startShim launches the shim and fails the test unless it becomes ready.
func startShim(t testing.TB, o shimOptions) *proc {
	t.Helper()
	p, ready := launchShim(t, o)
	if !ready {
		p.wait(t)
		t.Fatalf("shim exited before READY: %v\n%s", p.err, p.output.String())
	}
	return p
}

// startUWSGI runs real uWSGI on a unix socket and waits until its log says
// the application is loaded.
func startUWSGI(t testing.TB, wsgiFile string, extra ...string) *proc {
	t.Helper()
	return startUWSGIPlugins(t, "python3,ping", wsgiFile, extra...)
}

func startUWSGIPlugins(t testing.TB, plugins, wsgiFile string, extra ...string) *proc {
	t.Helper()
	bin, err := exec.LookPath("uwsgi")
	if err != nil {
		proctest.Missing(t, "uwsgi")
	}
	if _, err := os.Stat("/usr/lib/uwsgi/plugins/python3_plugin.so"); err != nil {
		proctest.Missing(t, "uwsgi-plugin-python3")
	}
	dir := shortDir(t)
	sock := filepath.Join(dir, "uwsgi.sock")
	args := append([]string{
		"--socket", sock,
		"--plugin", plugins,
		"--wsgi-file", filepath.Join(testdataDir(t), wsgiFile),
		"--chdir", testdataDir(t),
		"--buffer-size", "65535",
		"--need-app",
		"--disable-logging",
	}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Env = cleanEnv()
	out := &lockedBuffer{}
	pr, pw := io.Pipe()
	cmd.Stdout = out
	cmd.Stderr = pw
	p := start(t, cmd, out)
	p.sock = sock
	go func() {
		<-p.exited
		pw.Close()
	}()
	readyLine := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		found := false
		for sc.Scan() {
			out.Write(append(sc.Bytes(), '\n'))
			if !found && strings.Contains(sc.Text(), "WSGI app 0 (mountpoint='') ready") {
				found = true
				readyLine <- true
			}
		}
		io.Copy(io.Discard, pr)
		if !found {
			readyLine <- false
		}
	}()
	select {
	case ok := <-readyLine:
		if !ok {
			t.Fatalf("uwsgi exited before its app was ready:\n%s", out.String())
		}
	case <-time.After(testTimeout):
		t.Fatalf("uwsgi not ready in time:\n%s", out.String())
	}
	return p
}

// dialer dials a unix socket and counts the connections made.
type dialer struct {
	sock  string
	dials atomic.Int32
}

func (d *dialer) Dial(ctx context.Context) (net.Conn, error) {
	d.dials.Add(1)
	var nd net.Dialer
	return nd.DialContext(ctx, "unix", d.sock)
}

// do sends one request through tr and returns status, headers and body.
func do(t *testing.T, tr http.RoundTripper, method, url string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	resp, b, err := tryDo(tr, method, url, body, hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp, b
}

func tryDo(tr http.RoundTripper, method, url string, body io.Reader, hdr ...string) (*http.Response, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, "", err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, string(b), err
	}
	return resp, string(b), nil
}

// unknownLength hides a reader's length, as a chunked upload does.
type unknownLength struct{ r io.Reader }

func (u unknownLength) Read(p []byte) (int, error) { return u.r.Read(p) }

var errTest = errors.New("test: body failed")

// stalledStream starts GET /stream on tr and reads its first part: the
// application then waits until release writes to its fifo, after which
// the body ends with "second " and what release wrote.
func stalledStream(t *testing.T, tr http.RoundTripper) (resp *http.Response, release func(string)) {
	t.Helper()
	fifo := filepath.Join(shortDir(t), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://x/stream?fifo="+fifo, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first part %q, %v", buf, err)
	}
	return resp, func(s string) {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(s)
		f.Close()
	}
}

// helloLater sends GET /hello on tr from a goroutine; the channel gets
// the body, or the error's text.
func helloLater(tr http.RoundTripper) <-chan string {
	ch := make(chan string, 1)
	go func() {
		_, body, err := tryDo(tr, "GET", "http://x/hello", nil)
		if err != nil {
			body = err.Error()
		}
		ch <- body
	}()
	return ch
}
