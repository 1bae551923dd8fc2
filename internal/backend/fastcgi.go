package backend

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/drover-pool/drover/internal/backend/fastcgi"
	"github.com/drover-pool/drover/internal/process"
)

// FastCGI is the kind of pools of FastCGI responders (php-cgi, mapserv,
// flup apps). Each instance gets its listening socket as fd 0 and is ready
// as soon as it runs; pings are FCGI_GET_VALUES management records.
type FastCGI struct {
	SocketDir string
	Prefix    string // socket file names, unique per pool object
	Pool      string // the pool's name, for logs
	Root      string // document root: SCRIPT_FILENAME below it
	Script    string // fixed SCRIPT_FILENAME (front controller)
	// MaxIdleConns is how many kept connections per instance stay open;
	// it should equal the instance's slots (php-cgi serves one).
	MaxIdleConns int
	Logger       *slog.Logger
}

// NewEndpoint implements Kind.
func (k *FastCGI) NewEndpoint(id int) (Endpoint, error) {
	sock, err := newFDSocket(filepath.Join(k.SocketDir, fmt.Sprintf("%s.%d.fcgi", k.Prefix, id)))
	if err != nil {
		return nil, err
	}
	e := &fastcgiEndpoint{sock: sock}
	logger := k.Logger
	e.tr = &fastcgi.Transport{
		Dial:         sock.dial,
		Root:         k.Root,
		Script:       k.Script,
		MaxIdleConns: max(k.MaxIdleConns, 1),
		ConnInfo: func(ctx context.Context) (fastcgi.ConnInfo, bool) {
			ci, ok := ConnInfoFrom(ctx)
			return fastcgi.ConnInfo{RemoteAddr: ci.RemoteAddr, LocalAddr: ci.LocalAddr, HTTPS: ci.HTTPS}, ok
		},
	}
	if logger != nil {
		pool := k.Pool
		e.tr.Stderr = func(line string) { logger.Warn(line, "pool", pool, "stream", "fcgi-stderr") }
	}
	return e, nil
}

type fastcgiEndpoint struct {
	sock *fdSocket
	tr   *fastcgi.Transport
}

func (e *fastcgiEndpoint) Configure(spec *process.Spec) error {
	spec.Stdin = e.sock.file
	return nil
}

func (e *fastcgiEndpoint) Started() { e.sock.handed() }

// WaitReady returns at once: the socket listened before the process ran.
func (e *fastcgiEndpoint) WaitReady(ctx context.Context, exited <-chan struct{}) error {
	select {
	case <-exited:
		return ErrExited
	default:
		return nil
	}
}

func (e *fastcgiEndpoint) Ping(ctx context.Context) error { return e.tr.Ping(ctx) }

func (e *fastcgiEndpoint) RoundTrip(req *http.Request) (*http.Response, error) {
	return e.tr.RoundTrip(req)
}

func (e *fastcgiEndpoint) Close() error {
	e.tr.CloseIdleConnections()
	return e.sock.remove()
}
