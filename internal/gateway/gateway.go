// Package gateway is drover's front end: it accepts client connections
// (HTTP/1.1, h2c, and h2 over TLS), routes each request by host and path
// prefix to a pool or a static directory, proxies it, and gives drover's
// own answers (404 no-route, 503 queue-full...) when it cannot.
//
// The routing table is swapped atomically, so a reload changes every route
// at once and no request sees half a table. Listeners can be added and
// removed while others keep serving.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drover-pool/drover/internal/gateway/evloop"
	"github.com/drover-pool/drover/internal/gateway/h1"
)

// Gateway is the front end. Create it with New.
type Gateway struct {
	log       *slog.Logger
	access    *AccessLog
	tlsConfig *tls.Config
	noLoops   bool

	table    atomic.Pointer[Table]
	draining atomic.Bool

	mu        sync.Mutex // guards listeners
	listeners map[string]*listener
	wg        sync.WaitGroup // the Serve goroutines
}

// listener is one listen address. TLS listeners are served by net/http
// alone; cleartext ones by h1, which hands h2c connections to srv.
//
// Cleartext TCP listeners are served by event loops, which hand h1 the
// connections they do not serve themselves.
type listener struct {
	addr string
	srv  *http.Server
	h1   *h1.Server     // nil for TLS
	h2c  *connQueue     // the connections h1 passes to srv
	loop *evloop.Server // nil for TLS and unix sockets
}

// shutdown stops the listener gracefully (until ctx ends). The loops go
// first: until they are done they may still hand connections to h1.
func (l *listener) shutdown(ctx context.Context) error {
	var errs []error
	if l.loop != nil {
		errs = append(errs, l.loop.Shutdown(ctx))
	}
	if l.h1 != nil {
		errs = append(errs, l.h1.Shutdown(ctx))
	}
	errs = append(errs, l.srv.Shutdown(ctx))
	return errors.Join(errs...)
}

func (l *listener) close() {
	if l.loop != nil {
		_ = l.loop.Close()
	}
	if l.h1 != nil {
		_ = l.h1.Close()
	}
	_ = l.srv.Close()
}

// connQueue is the net.Listener through which h1 hands h2c connections
// to net/http's server.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// Options configure a Gateway.
type Options struct {
	Logger    *slog.Logger
	AccessLog *AccessLog // nil: no access log
	// TLS, when set, serves TCP listeners with TLS (h2 by ALPN).
	TLS *tls.Config
	// NoEventLoops serves cleartext TCP listeners with h1 alone (for
	// comparisons and tests of that path).
	NoEventLoops bool
}

// New returns a gateway with an empty routing table.
func New(o Options) *Gateway {
	g := &Gateway{log: o.Logger, access: o.AccessLog, tlsConfig: o.TLS, noLoops: o.NoEventLoops, listeners: map[string]*listener{}}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.table.Store(NewTable(nil))
	return g
}

// SetRoutes switches to a new routing table atomically.
func (g *Gateway) SetRoutes(t *Table) { g.table.Store(t) }

// SetDraining makes /readyz answer 503, so that load balancers stop
// sending before drover stops accepting.
func (g *Gateway) SetDraining(v bool) { g.draining.Store(v) }

// Draining reports whether SetDraining(true) was called.
func (g *Gateway) Draining() bool { return g.draining.Load() }

// ServeHTTP routes one request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.access != nil {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		defer func() { g.access.Log(r, rec, start) }()
		w = rec
	}
	switch r.URL.Path {
	case "/healthz":
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
		return
	case "/readyz":
		w.Header().Set("Content-Type", "text/plain")
		if g.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("draining\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
		return
	}
	route := g.table.Load().Match(r.Host, r.URL.Path)
	if route == nil {
		answer(w, http.StatusNotFound, reasonNoRoute, 0)
		return
	}
	if route.StripPrefix {
		stripPrefix(r, route.Path)
		r = r.WithContext(context.WithValue(r.Context(), scriptNameKey{}, strings.TrimSuffix(route.Path, "/")))
	}
	route.Handler.ServeHTTP(w, r)
}

// loopRoute is the event loops' view of the routing table: requests to
// pools of HTTP workers are theirs; drover's own endpoints, static
// directories and other kinds of pool are h1's.
func (g *Gateway) loopRoute(host, path string) (*evloop.Target, string) {
	route := g.table.Load().Match(host, path)
	if route == nil {
		return nil, ""
	}
	px, ok := route.Handler.(*Proxy)
	if !ok || px.loop == nil {
		return nil, ""
	}
	if route.StripPrefix {
		return px.loop, route.Path
	}
	return px.loop, ""
}

// scriptNameKey carries the prefix strip_prefix removed.
type scriptNameKey struct{}

// Limits of the front end, as nginx's defaults roughly: a head must
// arrive within 30s, a kept-alive connection may idle for 2 minutes.
const (
	readHeaderTimeout = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 1 << 20
)

// Listen starts serving on addr ("host:port" or "unix:/path"). Listening
// errors are returned at once; serving runs until Shutdown or Close(addr).
func (g *Gateway) Listen(addr string) error {
	l, err := listen(addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           g,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		Protocols:         new(http.Protocols),
	}
	ln := &listener{addr: addr, srv: srv}
	isTLS := g.tlsConfig != nil && !strings.HasPrefix(addr, "unix:")
	if isTLS {
		srv.Protocols.SetHTTP1(true)
		srv.TLSConfig = g.tlsConfig.Clone()
		srv.Protocols.SetHTTP2(true)
		l = tls.NewListener(l, srv.TLSConfig)
		if !slices.Contains(srv.TLSConfig.NextProtos, "h2") {
			srv.TLSConfig.NextProtos = append([]string{"h2", "http/1.1"}, srv.TLSConfig.NextProtos...)
		}
	} else {
		srv.Protocols.SetUnencryptedHTTP2(true)
		ln.h2c = newConnQueue(l.Addr())
		ln.h1 = &h1.Server{
			Handler:           g,
			H2:                ln.h2c.push,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			Logger:            g.log,
		}
		if _, ok := l.(*net.TCPListener); ok && !g.noLoops {
			ln.loop = &evloop.Server{
				Route:         g.loopRoute,
				Handoff:       ln.h1.ServeConn,
				HeaderTimeout: readHeaderTimeout,
				IdleTimeout:   idleTimeout,
				Logger:        g.log,
			}
			if g.access != nil {
				ln.loop.Log = g.access.LogExchange
			}
		}
	}
	g.mu.Lock()
	if _, dup := g.listeners[addr]; dup {
		g.mu.Unlock()
		l.Close()
		return fmt.Errorf("listen %s: already listening", addr)
	}
	g.listeners[addr] = ln
	g.mu.Unlock()
	serve := func(serve func(net.Listener) error, l net.Listener) {
		defer g.wg.Done()
		if err := serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			g.log.Error("front end stopped", "listen", addr, "err", err)
		}
	}
	switch {
	case ln.loop != nil:
		g.wg.Add(2)
		go serve(func(l net.Listener) error { return ln.loop.Serve(l.(*net.TCPListener)) }, l)
		go serve(srv.Serve, ln.h2c)
	case ln.h1 != nil:
		g.wg.Add(2)
		go serve(ln.h1.Serve, l)
		go serve(srv.Serve, ln.h2c)
	default:
		g.wg.Add(1)
		go serve(srv.Serve, l)
	}
	g.log.Info("listening", "listen", addr, "tls", isTLS)
	return nil
}

// listen opens a TCP or unix listener. A stale unix socket file left by a
// previous run is replaced.
func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path)
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		return l, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return l, nil
}

// Addrs returns the addresses being served.
func (g *Gateway) Addrs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]string, 0, len(g.listeners))
	for a := range g.listeners {
		out = append(out, a)
	}
	return out
}

// Close stops one listener gracefully: it stops accepting and lets its
// connections finish their requests (until ctx ends).
func (g *Gateway) Close(ctx context.Context, addr string) error {
	g.mu.Lock()
	l := g.listeners[addr]
	delete(g.listeners, addr)
	g.mu.Unlock()
	if l == nil {
		return fmt.Errorf("close %s: not listening", addr)
	}
	return l.shutdown(ctx)
}

// Shutdown stops every listener gracefully: in-flight requests complete
// (until ctx ends, then connections are closed).
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	ls := g.listeners
	g.listeners = map[string]*listener{}
	g.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.shutdown(ctx); err != nil {
				l.close()
				mu.Lock()
				errs = append(errs, fmt.Errorf("listener %s: %w", l.addr, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	g.wg.Wait()
	return errors.Join(errs...)
}
