package backend

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/drover-pool/drover/internal/backend/cgi"
	"github.com/drover-pool/drover/internal/backend/fastcgi"
	"github.com/drover-pool/drover/internal/process"
)

// CGI is the kind of pools of CGI programs: an instance is a slot, not a
// process, and each request runs the program in a process of its own with
// the pool's identity and limits, so max_instances bounds how many run at
// once and request_timeout kills the request's whole process group.
type CGI struct {
	Pool    string
	Root    string // document root: the script is the longest path prefix naming a file
	Script  string // fixed script
	TempDir string // where chunked request bodies are buffered
	Logger  *slog.Logger
}

// NewEndpoint implements Kind.
func (k *CGI) NewEndpoint(id int) (Endpoint, error) {
	return &cgiEndpoint{kind: k}, nil
}

type cgiEndpoint struct {
	kind *CGI
	tr   *cgi.Transport // built by Configure, read-only after
}

// Virtual marks cgi instances as processless.
func (e *cgiEndpoint) Virtual() {}

// Configure keeps the pool's process template for the requests' processes;
// the command, if any, is the interpreter (e.g. ["python3"]).
func (e *cgiEndpoint) Configure(spec *process.Spec) error {
	k := e.kind
	e.tr = &cgi.Transport{
		Spec:    *spec,
		Root:    k.Root,
		Script:  k.Script,
		TempDir: k.TempDir,
		ConnInfo: func(ctx context.Context) (fastcgi.ConnInfo, bool) {
			ci, ok := ConnInfoFrom(ctx)
			return fastcgi.ConnInfo{RemoteAddr: ci.RemoteAddr, LocalAddr: ci.LocalAddr, HTTPS: ci.HTTPS}, ok
		},
	}
	if k.Logger != nil {
		pool := k.Pool
		e.tr.Stderr = func(line string) { k.Logger.Warn(line, "pool", pool, "stream", "cgi-stderr") }
	}
	return nil
}

func (e *cgiEndpoint) Started() {}

func (e *cgiEndpoint) WaitReady(context.Context, <-chan struct{}) error { return nil }

func (e *cgiEndpoint) Ping(context.Context) error { return nil }

func (e *cgiEndpoint) RoundTrip(req *http.Request) (*http.Response, error) {
	return e.tr.RoundTrip(req)
}

func (e *cgiEndpoint) Close() error { return nil }
