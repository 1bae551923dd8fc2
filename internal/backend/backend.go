// Package backend is the transport half of drover's request path: it knows,
// for each pool kind (http, fastcgi, uwsgi, cgi, wsgi), how an instance is
// reached, when a freshly started instance is ready, how to ping it, and how
// one request makes a round trip to it.
//
// The pool package owns instances and decides which one serves a request;
// this package never chooses. A Kind makes one Endpoint per instance before
// the instance's process starts; the Endpoint adds what the process must be
// given (environment, a listening socket as fd 0) and is afterwards the
// instance's http.RoundTripper.
package backend

import (
	"context"
	"errors"
	"net/http"

	"github.com/drover-pool/drover/internal/process"
)

// Kind creates the endpoints of one pool's instances.
type Kind interface {
	// NewEndpoint prepares the transport side of instance id before its
	// process starts.
	NewEndpoint(id int) (Endpoint, error)
}

// Endpoint is the transport side of one instance.
type Endpoint interface {
	http.RoundTripper
	// Configure adds to spec what the instance's process must be given:
	// environment, listening socket, or a different argv.
	Configure(spec *process.Spec) error
	// Started is called once the process runs; the endpoint can drop
	// what only the child needed (its copy of the listening socket).
	Started()
	// WaitReady blocks until the instance can take requests, ctx ends, or
	// exited is closed (the process died first).
	WaitReady(ctx context.Context, exited <-chan struct{}) error
	// Ping checks that an idle instance still answers.
	Ping(ctx context.Context) error
	// Close drops idle connections and removes sockets once the instance
	// is gone.
	Close() error
}

// Virtual is implemented by endpoints whose instance is not a long-lived
// process: a cgi instance is a slot, and each request runs a process of
// its own. The pool starts no process for them; Configure still gives the
// endpoint the pool's process template (environment, identity, limits).
type Virtual interface {
	Virtual()
}

// ErrExited is returned by WaitReady when the process died before it
// became ready.
var ErrExited = errors.New("exited before it was ready")

// ConnInfo is what a backend needs to know about the client connection
// that a request arrived on, beyond the request itself.
type ConnInfo struct {
	// RemoteAddr is the client's address ("ip:port"; "" for unix sockets).
	RemoteAddr string
	// LocalAddr is the address the request arrived at. Empty: the
	// backends take it from the context's http.LocalAddrContextKey, which
	// costs its formatting only to the kinds that send it.
	LocalAddr string
	// HTTPS is true when the client connection used TLS.
	HTTPS bool
	// ScriptName is the route prefix that strip_prefix removed from the
	// path: where the application is mounted (WSGI's SCRIPT_NAME).
	ScriptName string
}

// ConnInfoKey is the context key ConnInfoFrom looks up. A context may
// answer it with a ConnInfo (WithConnInfo does) or with a ConnInfoSource,
// which works the ConnInfo out only for the kinds that ask: the front end's
// request contexts do, and the http kind never asks.
type ConnInfoKey struct{}

// ConnInfoSource gives a request's ConnInfo on demand.
type ConnInfoSource interface {
	ConnInfo() ConnInfo
}

// WithConnInfo returns a context carrying ci for the backends to read.
func WithConnInfo(ctx context.Context, ci ConnInfo) context.Context {
	return context.WithValue(ctx, ConnInfoKey{}, ci)
}

// ConnInfoFrom returns the ConnInfo that ctx carries (see ConnInfoKey).
func ConnInfoFrom(ctx context.Context) (ConnInfo, bool) {
	switch v := ctx.Value(ConnInfoKey{}).(type) {
	case ConnInfo:
		return v, true
	case ConnInfoSource:
		return v.ConnInfo(), true
	}
	return ConnInfo{}, false
}
