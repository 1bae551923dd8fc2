package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/drover-pool/drover/internal/backend/uwsgi"
	"github.com/drover-pool/drover/internal/process"
)

// UWSGI is the kind of pools of apps served by uWSGI itself (uwsgi
// --socket): the instance listens on DROVER_SOCKET, which uWSGI also reads
// as UWSGI_SOCKET, so an existing uwsgi command moves to drover unchanged.
// uWSGI closes the connection after each request, so there is no reuse.
type UWSGI struct {
	SocketDir string
	Prefix    string // socket file names, unique per pool object
}

// NewEndpoint implements Kind.
func (k *UWSGI) NewEndpoint(id int) (Endpoint, error) {
	path := filepath.Join(k.SocketDir, fmt.Sprintf("%s.%d.uwsgi", k.Prefix, id))
	_ = os.Remove(path)
	e := &uwsgiEndpoint{path: path}
	e.tr = &uwsgi.Transport{Dial: e.dial}
	return e, nil
}

type uwsgiEndpoint struct {
	path string
	tr   *uwsgi.Transport
}

func (e *uwsgiEndpoint) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", e.path)
}

func (e *uwsgiEndpoint) Configure(spec *process.Spec) error {
	setEnvDefault(spec, "DROVER_SOCKET", e.path)
	setEnvDefault(spec, "UWSGI_SOCKET", e.path)
	// uWSGI's 4 KiB default rejects requests with large headers.
	setEnvDefault(spec, "UWSGI_BUFFER_SIZE", "65535")
	return nil
}

func (e *uwsgiEndpoint) Started() {}

func (e *uwsgiEndpoint) WaitReady(ctx context.Context, exited <-chan struct{}) error {
	return waitConnect(ctx, exited, e.dial)
}

// Ping is a connect check: Debian's uWSGI answers the protocol's ping only
// with its ping plugin loaded.
func (e *uwsgiEndpoint) Ping(ctx context.Context) error {
	c, err := e.dial(ctx)
	if err != nil {
		return err
	}
	return c.Close()
}

func (e *uwsgiEndpoint) RoundTrip(req *http.Request) (*http.Response, error) {
	return e.tr.RoundTrip(withUWSGIConnInfo(req))
}

func (e *uwsgiEndpoint) Close() error {
	e.tr.CloseIdleConnections()
	if err := os.Remove(e.path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// withUWSGIConnInfo passes the client connection and the stripped route
// prefix (SCRIPT_NAME) to the uwsgi transport.
func withUWSGIConnInfo(req *http.Request) *http.Request {
	ci, ok := ConnInfoFrom(req.Context())
	if !ok {
		return req
	}
	return req.WithContext(uwsgi.WithConnInfo(req.Context(), uwsgi.ConnInfo{
		RemoteAddr: ci.RemoteAddr, LocalAddr: ci.LocalAddr, HTTPS: ci.HTTPS, ScriptName: ci.ScriptName,
	}))
}

// setEnvDefault adds key=value unless the pool's env already sets key.
func setEnvDefault(spec *process.Spec, key, value string) {
	for _, kv := range spec.Env {
		if strings.HasPrefix(kv, key+"=") {
			return
		}
	}
	spec.Env = append(spec.Env, key+"="+value)
}

// waitConnect polls, with growing pauses, until dial succeeds: an
// unmodified server's own listen() is the only sign of readiness it gives.
func waitConnect(ctx context.Context, exited <-chan struct{}, dial func(context.Context) (net.Conn, error)) error {
	pause := 2 * time.Millisecond
	for {
		if c, err := dial(ctx); err == nil {
			return c.Close()
		}
		t := time.NewTimer(pause)
		select {
		case <-exited:
			t.Stop()
			return ErrExited
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(pause*2, 100*time.Millisecond)
	}
}

// WSGI is the kind of pools of Python WSGI apps run by drover's bundled
// shim (package python): the shim gets its listening socket as fd 0, says
// READY on a pipe once the app is imported, and serves requests over
// persistent connections (uwsgi-encoded requests, HTTP/1.1 responses).
type WSGI struct {
	SocketDir   string
	Prefix      string   // socket file names, unique per pool object
	Shim        string   // path of the shim script
	Python      string   // interpreter, or a virtualenv directory
	App         string   // module:callable
	PythonPath  []string // extra sys.path entries
	Dir         string
	Concurrency int // slots per instance: the connections drover opens
	// Threads serve the connections: 1 with more slots makes requests wait
	// inside the instance for the one thread; 0: as many as Concurrency.
	Threads int
}

// NewEndpoint implements Kind.
func (k *WSGI) NewEndpoint(id int) (Endpoint, error) {
	sock, err := newFDSocket(filepath.Join(k.SocketDir, fmt.Sprintf("%s.%d.wsgi", k.Prefix, id)))
	if err != nil {
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		sock.remove()
		return nil, err
	}
	conc := max(k.Concurrency, 1)
	e := &wsgiEndpoint{kind: k, sock: sock, readyR: r, readyW: w}
	e.tr = &uwsgi.Transport{Dial: sock.dial, KeepAlive: true, CompactVars: true, MaxConns: conc, MaxIdleConns: conc}
	return e, nil
}

type wsgiEndpoint struct {
	kind   *WSGI
	sock   *fdSocket
	tr     *uwsgi.Transport
	readyR *os.File // drover reads "READY\n" here
	readyW *os.File // the shim's end; closed by Started
}

// python resolves the interpreter: a virtualenv directory means its
// bin/python.
func (k *WSGI) python() string {
	py := k.Python
	if py == "" {
		py = "python3"
	}
	if fi, err := os.Stat(py); err == nil && fi.IsDir() {
		return filepath.Join(py, "bin", "python")
	}
	return py
}

func (k *WSGI) threads() int {
	if k.Threads == 1 {
		return 1
	}
	return max(k.Concurrency, 1)
}

func (e *wsgiEndpoint) Configure(spec *process.Spec) error {
	k := e.kind
	args := []string{k.python(), "-u", k.Shim, "--app", k.App}
	for _, p := range k.PythonPath {
		args = append(args, "--pythonpath", p)
	}
	if k.Dir != "" {
		args = append(args, "--dir", k.Dir)
	}
	spec.Args = args
	spec.Stdin = e.sock.file
	spec.ExtraFiles = append(spec.ExtraFiles, e.readyW)
	fd := 2 + len(spec.ExtraFiles)
	spec.Env = append(spec.Env,
		"DROVER_READY_FD="+strconv.Itoa(fd),
		"DROVER_CONCURRENCY="+strconv.Itoa(max(k.Concurrency, 1)),
		"DROVER_THREADS="+strconv.Itoa(k.threads()))
	return nil
}

func (e *wsgiEndpoint) Started() {
	e.sock.handed()
	e.readyW.Close()
}

// WaitReady reads the shim's READY line; EOF means the app failed to
// import (its traceback is in the log).
func (e *wsgiEndpoint) WaitReady(ctx context.Context, exited <-chan struct{}) error {
	stop := context.AfterFunc(ctx, func() { e.readyR.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 16)
	n, err := e.readyR.Read(buf)
	e.readyR.Close()
	switch {
	case strings.HasPrefix(string(buf[:n]), "READY"):
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case err == nil || errors.Is(err, io.EOF):
		return ErrExited
	}
	return fmt.Errorf("%w: %v", ErrExited, err)
}

func (e *wsgiEndpoint) Ping(ctx context.Context) error { return e.tr.Ping(ctx) }

func (e *wsgiEndpoint) RoundTrip(req *http.Request) (*http.Response, error) {
	return e.tr.RoundTrip(withUWSGIConnInfo(req))
}

func (e *wsgiEndpoint) Close() error {
	e.tr.CloseIdleConnections()
	e.readyR.Close()
	return e.sock.remove()
}
