package backend

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/drover-pool/drover/internal/backend/http1"
	"github.com/drover-pool/drover/internal/process"
)

// HTTP is the kind of pools whose instances are ordinary HTTP servers. Each
// instance is offered both a loopback TCP port (PORT) and a unix socket path
// (DROVER_SOCKET) and may listen on either; whichever accepts first is used.
type HTTP struct {
	// SocketDir is where instance sockets are created.
	SocketDir string
	// Prefix starts the instances' socket file names; unique per pool
	// object, since a reload runs an old and a new pool side by side.
	Prefix string
	// MaxIdleConns is how many keep-alive connections per instance are
	// kept idle; it should be at least the instance's slot count.
	MaxIdleConns int
	// HealthPath, when set, is GET by Ping, and readiness waits for it too.
	HealthPath string
}

// NewEndpoint implements Kind.
func (k *HTTP) NewEndpoint(id int) (Endpoint, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	e := &httpEndpoint{
		kind: k,
		port: port,
		sock: filepath.Join(k.SocketDir, fmt.Sprintf("%s.%d.sock", k.Prefix, id)),
	}
	_ = os.Remove(e.sock)
	e.tr = &http1.Transport{
		Dial:         func(ctx context.Context) (net.Conn, error) { return e.dial(ctx, "", "") },
		MaxIdleConns: max(k.MaxIdleConns, 2),
		// Below the keep-alive timeouts of common servers (Node: 5s), so
		// drover drops a connection before the worker does.
		IdleConnTimeout: 4 * time.Second,
	}
	return e, nil
}

// freePort asks the kernel for an unused loopback port. Another process
// could take it before the instance binds it; the instance then fails to
// start, which is counted and retried like any startup failure.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type httpEndpoint struct {
	kind *HTTP
	port int
	sock string
	tr   *http1.Transport
	// network is "tcp" or "unix" once the instance accepted a connection
	// there; set before the instance is handed out, read-only after.
	network atomic.Value
}

func (e *httpEndpoint) Configure(spec *process.Spec) error {
	spec.Env = append(spec.Env, "PORT="+strconv.Itoa(e.port), "DROVER_SOCKET="+e.sock)
	return nil
}

func (e *httpEndpoint) Started() {}

func (e *httpEndpoint) addr(network string) string {
	if network == "unix" {
		return e.sock
	}
	return "127.0.0.1:" + strconv.Itoa(e.port)
}

// Addr returns where the instance listens: ("unix", path) or ("tcp",
// "127.0.0.1:port"), whichever accepted first. Valid once it is ready.
func (e *httpEndpoint) Addr() (network, address string) {
	network, _ = e.network.Load().(string)
	if network == "" {
		network = "tcp"
	}
	return network, e.addr(network)
}

func (e *httpEndpoint) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	network, _ := e.network.Load().(string)
	if network == "" {
		network = "tcp"
	}
	var d net.Dialer
	return d.DialContext(ctx, network, e.addr(network))
}

// WaitReady waits for the instance to accept a connection on either of
// its addresses (and to answer the health path, when one is set).
func (e *httpEndpoint) WaitReady(ctx context.Context, exited <-chan struct{}) error {
	return waitConnect(ctx, exited, func(ctx context.Context) (net.Conn, error) {
		var err error
		for _, network := range []string{"unix", "tcp"} {
			var d net.Dialer
			var c net.Conn
			if c, err = d.DialContext(ctx, network, e.addr(network)); err != nil {
				continue
			}
			e.network.Store(network)
			if e.kind.HealthPath != "" {
				if err = e.Ping(ctx); err != nil {
					c.Close()
					return nil, err
				}
			}
			return c, nil
		}
		return nil, err
	})
}

func (e *httpEndpoint) Ping(ctx context.Context) error {
	path := e.kind.HealthPath
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://instance"+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "drover-health")
	resp, err := e.tr.RoundTrip(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("health %s: %s", path, resp.Status)
	}
	return nil
}

func (e *httpEndpoint) RoundTrip(req *http.Request) (*http.Response, error) {
	return e.tr.RoundTrip(req)
}

func (e *httpEndpoint) Close() error {
	e.tr.CloseIdleConnections()
	if err := os.Remove(e.sock); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
