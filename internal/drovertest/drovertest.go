// Package drovertest is the toolkit of drover's own tests, in the spirit
// of net/http/httptest: it builds the sample worker and the drover binary
// once per test binary, starts a real drover (in-process or as a child
// process) from TOML text, and observes processes through /proc.
package drovertest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/process"
	"github.com/drover-pool/drover/internal/proctest"
	"github.com/drover-pool/drover/internal/server"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// repoRoot finds the module root from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// build compiles the sample app and drover once per test binary.
func build(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "drovertest-bin-")
		if buildErr != nil {
			return
		}
		// Workers run as other users in some tests.
		if buildErr = os.Chmod(buildDir, 0o755); buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", buildDir+"/", "./cmd/drover", "./examples/sampleapp")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

// SampleApp returns the path of the built sample worker.
func SampleApp(t testing.TB) string { return filepath.Join(build(t), "sampleapp") }

// Binary returns the path of the built drover binary.
func Binary(t testing.TB) string { return filepath.Join(build(t), "drover") }

// Main is the TestMain of packages that start workers: it serves as the
// exec helper stage when the test binary is re-executed for one (see
// process.Init), runs the tests, and removes the built binaries.
func Main(m *testing.M) {
	process.Init()
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Vars are what a config template can use: {{.App}}, {{.PyApp}},
// {{.Listen}}, {{.Runtime}}, {{.Dir}}, {{.Admin}}.
type Vars struct {
	App     string // sample app path
	PyApp   string // examples/pyapp/app.py
	Listen  string // a free 127.0.0.1:port for the front end
	Admin   string // a free 127.0.0.1:port for the admin API
	Runtime string // a fresh runtime_dir
	Dir     string // a scratch directory
}

// WriteConfig expands tmpl with fresh Vars and writes it to a file.
func WriteConfig(t testing.TB, tmpl string) (path string, v Vars) {
	t.Helper()
	dir := t.TempDir()
	// Workers running as another user must reach their sockets below.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	v = Vars{
		App:     SampleApp(t),
		PyApp:   filepath.Join(repoRoot(), "examples", "pyapp", "app.py"),
		Listen:  "127.0.0.1:" + strconv.Itoa(FreePort(t)),
		Admin:   "127.0.0.1:" + strconv.Itoa(FreePort(t)),
		Runtime: filepath.Join(dir, "run"),
		Dir:     dir,
	}
	var b bytes.Buffer
	if err := template.Must(template.New("cfg").Parse(tmpl)).Execute(&b, v); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "drover.toml")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, v
}

// Drover is an in-process drover under test.
type Drover struct {
	*server.Server
	Vars
	URL  string // http://Listen
	File string
	// Logs collects drover's log; it is printed when the test fails.
	Logs *SyncBuffer
}

// Start runs an in-process drover from a config template and stops it at
// the end of the test. The template should use {{.Listen}} and
// {{.Runtime}}.
func Start(t testing.TB, tmpl string) *Drover {
	t.Helper()
	return StartWith(t, tmpl, server.Options{})
}

// StartWith is Start with server options (a fake clock, a faster memory
// sampler); the Logger option is replaced by the test's log buffer.
func StartWith(t testing.TB, tmpl string, opts server.Options) *Drover {
	t.Helper()
	file, v := WriteConfig(t, tmpl)
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &SyncBuffer{}
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	srv, err := server.New(cfg, opts)
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if t.Failed() {
			t.Logf("drover log:\n%s", logs.String())
		}
	})
	return &Drover{Server: srv, Vars: v, URL: "http://" + v.Listen, File: file, Logs: logs}
}

// Get performs a GET and returns status, body and headers; transport
// errors fail the test.
func Get(t testing.TB, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), resp.Header
}

// Process is a drover binary running as a child of the test.
type Process struct {
	Vars
	Cmd  *exec.Cmd
	URL  string
	File string
	// Output collects drover's stdout and stderr.
	Output *SyncBuffer

	exited chan struct{}
}

// StartBinary runs the drover binary with "serve -c" on a config template
// and waits until its front end answers /healthz. The process is killed at
// the end of the test if it still runs.
func StartBinary(t testing.TB, tmpl string) *Process {
	t.Helper()
	file, v := WriteConfig(t, tmpl)
	out := &SyncBuffer{}
	cmd := exec.Command(Binary(t), "serve", "-c", file)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Process{Vars: v, Cmd: cmd, URL: "http://" + v.Listen, File: file, Output: out}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("drover output:\n%s", out.String())
		}
	})
	p.exited = exited
	Eventually(t, 10*time.Second, "drover answers /healthz", func() bool {
		select {
		case <-exited:
			t.Fatalf("drover exited at start:\n%s", out.String())
		default:
		}
		resp, err := http.Get(p.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

// Wait waits for the drover process to exit, at most timeout.
func (p *Process) Wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("drover did not exit within %s", timeout)
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Eventually, Alive, Children and Status are proctest's, here too so
// that server tests need one import.
var (
	Eventually = proctest.Eventually
	Alive      = proctest.Alive
	Children   = proctest.Children
	Status     = proctest.Status
)
