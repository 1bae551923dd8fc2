package gateway

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/drover-pool/drover/internal/backend"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/gateway/evloop"
	"github.com/drover-pool/drover/internal/gateway/h1"
	"github.com/drover-pool/drover/internal/pool"
)

// errRequestTimeout is the round trip's error when request_timeout passed
// before the instance answered.
var errRequestTimeout = errors.New("request-timeout")

// Proxy forwards requests to one pool's instances. Selection is the pool's
// business (Acquire); the wire is the instance's Endpoint; Proxy holds the
// slot for as long as the exchange lasts: until the response body has been
// copied to the client, or the upgraded connection closed.
type Proxy struct {
	pool     *pool.Pool
	rp       *httputil.ReverseProxy
	timeout  time.Duration
	reset    bool // on_stopped = "reset"
	observer Observer
	requests registry
	// loop is the proxy as the event loops see it; nil when its pool's
	// instances do not speak HTTP.
	loop *evloop.Target
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

type bufferPool struct{}

func (bufferPool) Get() []byte  { return *bufPool.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { bufPool.Put(&b) }

// NewProxy returns the handler for routes to p. obs, when not nil, is told
// about every finished request.
func NewProxy(p *pool.Pool, logger *slog.Logger, obs Observer) *Proxy {
	cfg := p.Config()
	px := &Proxy{
		pool:     p,
		timeout:  cfg.RequestTimeout.D(),
		reset:    cfg.RapidFail.OnStopped == "reset",
		observer: obs,
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Kind == "http" {
		px.loop = &evloop.Target{Pool: p, Timeout: px.timeout, Hooks: (*loopHooks)(px), ResetOnStop: px.reset}
	}
	px.rp = &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    (*slotTransport)(px),
		ErrorHandler: px.fail,
		BufferPool:   bufferPool{},
		ErrorLog:     log.New(slogWriter{logger.With("pool", p.Name())}, "", 0),
	}
	return px
}

// rewrite keeps the client's Host header (like nginx's
// proxy_set_header Host $host) and appends to X-Forwarded-For.
func rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = "instance"
	if xff, ok := pr.In.Header["X-Forwarded-For"]; ok {
		pr.Out.Header["X-Forwarded-For"] = xff
	}
	pr.SetXForwarded()
}

func (px *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := &inflight{req: r, start: time.Now()}
	e.sw.ResponseWriter = w
	e.ctx = requestContext{Context: r.Context(), e: e}
	ctx := context.Context(&e.ctx)
	px.requests.add(e)
	defer func() {
		px.requests.remove(e)
		if px.observer != nil {
			code := e.sw.code
			if code == 0 {
				code = 499 // aborted before any answer
			}
			px.observer.ObserveRequest(px.pool.Name(), code, time.Since(e.start), time.Duration(e.wait.Load()))
		}
	}()
	if r.Header.Get("Upgrade") != "" {
		// Upgrades (WebSocket) take ReverseProxy's path, which knows
		// how to splice the two connections.
		px.rp.ServeHTTP(&e.sw, r.WithContext(ctx))
		return
	}
	// The copy is the proxy's own: forward edits it for the instance.
	px.forward(&e.sw, r.WithContext(ctx))
}

// loopHooks keep the registry and the metrics for the requests the event
// loops serve.
type loopHooks Proxy

func (h *loopHooks) Begin(x *evloop.Exchange) {
	e := &loopEntry{method: x.Method(), uri: x.RequestURI(), client: x.RemoteAddr(), pid: x.Pid(), start: x.Start()}
	// Copies: the loop's buffers are not the registry's to read.
	e.method, e.uri = strings.Clone(e.method), strings.Clone(e.uri)
	x.Token = e
	h.requests.add(e)
}

func (h *loopHooks) End(x *evloop.Exchange) {
	e := x.Token.(*loopEntry)
	h.requests.remove(e)
	if x.Status() == 0 || h.observer == nil {
		return // retried, or handed to the h1 path, which reports it
	}
	h.observer.ObserveRequest(h.pool.Name(), x.Status(), x.Now().Sub(e.start), x.Waited())
}

// requestContext is the context of a request the proxy forwards: it
// carries the request's inflight record and, for the backends, its
// ConnInfo, in the record itself rather than in a context.WithValue
// apiece.
type requestContext struct {
	context.Context
	e *inflight
}

type inflightKey struct{}

func (c *requestContext) Value(key any) any {
	switch key.(type) {
	case inflightKey:
		return c.e
	case backend.ConnInfoKey:
		return c.e // a backend.ConnInfoSource
	}
	return c.Context.Value(key)
}

// inflightFrom returns the inflight record of the request whose context
// is ctx or derives from it.
func inflightFrom(ctx context.Context) *inflight {
	if c, ok := ctx.(*requestContext); ok {
		return c.e
	}
	e, _ := ctx.Value(inflightKey{}).(*inflight)
	return e
}

// ConnInfo serves the backends that need to know about the client
// connection (FastCGI, uwsgi, CGI).
func (e *inflight) ConnInfo() backend.ConnInfo {
	r := e.req
	ci := backend.ConnInfo{RemoteAddr: r.RemoteAddr, HTTPS: r.TLS != nil}
	ci.ScriptName, _ = r.Context().Value(scriptNameKey{}).(string)
	return ci
}

// Requests lists the requests waiting for or holding a slot of the pool.
func (px *Proxy) Requests() []RequestInfo { return px.requests.list(px.pool.Name()) }

// Pool returns the proxy's pool.
func (px *Proxy) Pool() *pool.Pool { return px.pool }

// fail turns a failed round trip into drover's own answer.
func (px *Proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, pool.ErrQueueFull):
		answer(w, http.StatusServiceUnavailable, reasonQueueFull, 1)
	case errors.Is(err, pool.ErrWaitTimeout):
		answer(w, http.StatusServiceUnavailable, reasonWaitTimeout, 1)
	case errors.Is(err, pool.ErrStopped):
		if px.reset {
			reset(w)
			return
		}
		answer(w, http.StatusServiceUnavailable, reasonPoolStopped, 0)
	case errors.Is(err, errRequestTimeout):
		answer(w, http.StatusGatewayTimeout, reasonRequestTimeout, 0)
	case r.Context().Err() != nil:
		// The client is gone; nobody reads an answer. 499 is what
		// nginx logs for it.
		w.WriteHeader(499)
	default:
		answer(w, http.StatusBadGateway, reasonBadGateway, 0)
	}
}

// slotTransport is the ReverseProxy's RoundTripper: acquire a slot, make
// the round trip on that instance, and hand the slot's release to the
// response body.
type slotTransport Proxy

func (t *slotTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	px := (*Proxy)(t)
	e := inflightFrom(req.Context())
	for attempt := 0; ; attempt++ {
		start := time.Now()
		inst, err := px.pool.Acquire(req.Context())
		if e != nil {
			e.wait.Add(int64(time.Since(start)))
		}
		if err != nil {
			return nil, err
		}
		if e != nil {
			e.pid.Store(int64(inst.Pid()))
		}
		l := px.newLease(inst, req.Context(), e)
		out := req
		if l.ctx != req.Context() {
			out = req.WithContext(l.ctx)
		}
		resp, err := inst.RoundTrip(out)
		if err == nil {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				// An upgraded connection (WebSocket) holds its slot
				// for as long as it lasts; request_timeout is for
				// producing a response, and it has.
				l.stopTimer()
			}
			resp.Body = l.wrap(resp.Body)
			return resp, nil
		}
		timedOut := l.timedOut.Load()
		if !timedOut && req.Context().Err() == nil {
			// The instance broke the exchange: take it out before its
			// slot could go to the next waiter.
			px.pool.Fail(inst, events.Crash, "bad gateway: "+err.Error())
		}
		l.done()
		switch {
		case timedOut:
			return nil, errRequestTimeout
		case req.Context().Err() != nil:
			return nil, req.Context().Err()
		case attempt == 0 && retryable(req, err):
			continue
		}
		return nil, err
	}
}

// retryable applies the contract's retry rule: once on another instance
// when nothing was sent, or for an idempotent request without a body that
// failed before response headers.
func retryable(req *http.Request, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// lease is one held slot: it owns the request_timeout timer and releases
// the slot exactly once.
type lease struct {
	px       *Proxy
	inst     *pool.Instance
	ctx      context.Context
	abort    context.CancelFunc // ends the round trip when the time is up
	cancel   context.CancelFunc // ctx's own, when the lease made one
	timer    *time.Timer
	timedOut atomic.Bool
	released atomic.Bool
	body     leasedBody // the response body, as wrap returns it
}

// newLease starts the lease of a slot on inst. The first lease of a
// request lives in its inflight record (one allocation fewer per
// request); a retry's is its own.
func (px *Proxy) newLease(inst *pool.Instance, parent context.Context, e *inflight) *lease {
	var l *lease
	if e != nil && e.lease.px == nil {
		l = &e.lease
	} else {
		l = new(lease)
	}
	l.px, l.inst, l.ctx = px, inst, parent
	if px.timeout > 0 {
		// A front-end request's own context can be canceled; others get
		// a context of the lease's.
		if l.abort = h1.Cancel(parent); l.abort == nil {
			l.ctx, l.cancel = context.WithCancel(parent)
			l.abort = l.cancel
		}
		l.timer = time.AfterFunc(px.timeout, l.expire)
	}
	return l
}

// expire runs when the request held its slot past request_timeout: the
// instance's whole process group is killed and the request aborted.
func (l *lease) expire() {
	l.timedOut.Store(true)
	l.px.pool.Fail(l.inst, events.TimeoutKill, "request ran past request_timeout "+l.px.timeout.String())
	l.abort()
}

func (l *lease) stopTimer() {
	if l.timer != nil {
		l.timer.Stop()
	}
}

func (l *lease) done() {
	if l.released.Swap(true) {
		return
	}
	l.stopTimer()
	if l.cancel != nil {
		l.cancel()
	}
	l.px.pool.Release(l.inst)
}

func (l *lease) wrap(body io.ReadCloser) io.ReadCloser {
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &leasedConn{ReadWriteCloser: rwc, l: l}
	}
	l.body = leasedBody{ReadCloser: body, l: l}
	return &l.body
}

// leasedBody releases the slot when the proxy closes the response body,
// which it does on every path once copying ends.
type leasedBody struct {
	io.ReadCloser
	l *lease
}

func (b *leasedBody) Close() error {
	err := b.ReadCloser.Close()
	b.l.done()
	return err
}

// Buffered passes the body's hint on (see copyBody).
func (b *leasedBody) Buffered() int {
	if a, ok := b.ReadCloser.(interface{ Buffered() int }); ok {
		return a.Buffered()
	}
	return 0
}

// leasedConn is leasedBody for an upgraded connection, which the proxy
// needs to be writable.
type leasedConn struct {
	io.ReadWriteCloser
	l *lease
}

func (c *leasedConn) Close() error {
	err := c.ReadWriteCloser.Close()
	c.l.done()
	return err
}

// slogWriter adapts the ReverseProxy's log.Logger to slog.
type slogWriter struct{ l *slog.Logger }

func (s slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	if n := len(msg); n > 0 && msg[n-1] == '\n' {
		msg = msg[:n-1]
	}
	s.l.Warn(msg)
	return len(p), nil
}
