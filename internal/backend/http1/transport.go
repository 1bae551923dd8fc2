package http1

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

const (
	// DefaultMaxIdleConns is used when Transport.MaxIdleConns is 0.
	DefaultMaxIdleConns = 2
	// DefaultReadBufferSize is used when Transport.ReadBufferSize is 0.
	DefaultReadBufferSize = 4 << 10
	// DefaultMaxResponseHeaderBytes is used when
	// Transport.MaxResponseHeaderBytes is 0.
	DefaultMaxResponseHeaderBytes = 1 << 20

	// bodyBufSize is the size of the buffer request bodies are copied
	// through.
	bodyBufSize = 32 << 10
	// maxDrain is how much of an unread response body Close reads, from
	// what is already buffered only, to keep the connection.
	maxDrain = 4 << 10
	// max1xx bounds the interim responses accepted before the final one.
	max1xx = 100
	// writeWaitBeforeReuse is how long a response body's EOF waits for the
	// request body writer to finish before giving the connection up
	// (net/http waits the same).
	writeWaitBeforeReuse = 50 * time.Millisecond
)

// Transport is an http.RoundTripper for a single HTTP/1.1 upstream. Every
// request goes to the server Dial connects to, whatever its URL host. See
// the package documentation for the model.
//
// A Transport must not be copied after first use. It is safe for
// concurrent use.
type Transport struct {
	// Dial connects to the upstream. Required. It is called with the
	// request's context. Its error is returned by RoundTrip as is, so
	// errors.As(err, &opErr) with a *net.OpError whose Op is "dial" tells
	// the caller that nothing was sent.
	Dial func(ctx context.Context) (net.Conn, error)

	// MaxIdleConns is how many idle keep-alive connections are kept.
	// 0 means DefaultMaxIdleConns; negative disables keep-alive reuse.
	MaxIdleConns int

	// IdleConnTimeout, if positive, is how long a connection may stay
	// idle before it is closed (checked lazily when connections are taken
	// or returned). Set it below the upstream's own keep-alive timeout to
	// avoid retries on connections the upstream closed.
	IdleConnTimeout time.Duration

	// ReadBufferSize is the size of each connection's read buffer.
	// 0 means DefaultReadBufferSize.
	ReadBufferSize int

	// MaxResponseHeaderBytes limits the bytes read while reading a
	// response head (status line and headers; interim 1xx responses count
	// too unless an httptrace.ClientTrace's Got1xxResponse consumed them,
	// as in net/http). 0 means DefaultMaxResponseHeaderBytes.
	MaxResponseHeaderBytes int64

	mu   sync.Mutex
	idle []*conn // LIFO: the most recently returned is at the end
	seq  uint64  // stamps connections as they are returned

	readers sync.Pool // *bufio.Reader of ReadBufferSize
}

var (
	errNoDial     = errors.New("http1: Transport.Dial is nil")
	errNilURL     = errors.New("http1: nil Request.URL")
	errHeaderSize = errors.New("http1: response header too large")
	errBodyClosed = errors.New("http1: read on closed response body")
	errShortBody  = errors.New("http1: request body shorter than ContentLength")
	errToo1xx     = errors.New("http1: too many 1xx responses")
)

// CloseIdleConnections closes the connections that are idle now. The
// Transport stays usable.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		c.discard()
	}
}

// IdleConns reports how many connections are idle now (for tests and
// metrics).
func (t *Transport) IdleConns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle)
}

// RoundTrip implements http.RoundTripper. It writes req on a connection to
// the upstream and reads the response head; the caller must read and close
// resp.Body. The request body, if any, is always closed, possibly after
// RoundTrip returned.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	hasBody := req.Body != nil && req.Body != http.NoBody
	if t.Dial == nil || req.URL == nil {
		closeBody(req, hasBody)
		if req.URL == nil {
			return nil, errNilURL
		}
		return nil, errNoDial
	}
	hb := headPool.Get().(*[]byte)
	head, chunked, err := appendHead((*hb)[:0], req, hasBody)
	if err != nil {
		putHead(hb, head)
		closeBody(req, hasBody)
		return nil, err
	}
	resp, err := t.roundTrip(req, head, hasBody, chunked)
	putHead(hb, head)
	return resp, err
}

func (t *Transport) roundTrip(req *http.Request, head []byte, hasBody, chunked bool) (*http.Response, error) {
	ctx := req.Context()
	replayable := !hasBody || req.GetBody != nil
	idempotent := replayable && isIdempotent(req)
	var first error
	for try := 0; ; try++ {
		var c *conn
		var err error
		if try == 0 {
			c, err = t.getConn(ctx, !idempotent)
		} else {
			c, err = t.dial(ctx)
		}
		if err != nil {
			closeBody(req, hasBody)
			if first != nil {
				// Report the first failure: something was sent, so
				// the dial error must not tell the caller otherwise.
				return nil, fmt.Errorf("%w (retry: %v)", first, err)
			}
			return nil, err
		}
		resp, retry, err := c.roundTrip(ctx, req, head, hasBody, chunked, idempotent)
		if err == nil {
			return resp, nil
		}
		if try > 0 || !retry || ctx.Err() != nil {
			return nil, err
		}
		// Connections that have been idle longer than c are likely closed
		// by the upstream too.
		t.closeIdleOlder(c.idleSeq)
		if hasBody {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, fmt.Errorf("http1: GetBody for retry: %w (after: %v)", gerr, err)
			}
			r2 := *req
			r2.Body = body
			req = &r2
		}
		first = err
	}
}

func closeBody(req *http.Request, hasBody bool) {
	if hasBody {
		req.Body.Close()
	}
}

func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	if req.Header == nil {
		return false
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

func (t *Transport) maxIdle() int {
	if t.MaxIdleConns == 0 {
		return DefaultMaxIdleConns
	}
	return t.MaxIdleConns
}

// getConn pops the most recently used idle connection or dials. probe asks
// for a liveness check of a connection idle for a while.
func (t *Transport) getConn(ctx context.Context, probe bool) (*conn, error) {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			return t.dial(ctx)
		}
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		var expired []*conn
		var idleFor time.Duration
		if t.IdleConnTimeout > 0 || probe {
			idleFor = time.Since(c.idleAt)
			if t.IdleConnTimeout > 0 && idleFor > t.IdleConnTimeout {
				// LIFO: every other idle connection is older still.
				expired = t.idle
				t.idle = nil
			}
		}
		t.mu.Unlock()
		if expired != nil {
			c.discard()
			for _, e := range expired {
				e.discard()
			}
			return t.dial(ctx)
		}
		// A request that cannot be retried is worth one recv syscall:
		// the upstream may have closed the connection a moment ago.
		if probe && !c.alive() {
			t.closeIdleOlder(c.idleSeq)
			c.discard()
			continue
		}
		c.reused = true
		return c, nil
	}
}

func (t *Transport) dial(ctx context.Context) (*conn, error) {
	nc, err := t.Dial(ctx)
	if err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("http1: Dial returned a nil net.Conn")
	}
	return t.newConn(nc), nil
}

// putIdle makes c available for reuse, or closes it.
func (t *Transport) putIdle(c *conn) {
	if c.br.Buffered() > 0 {
		// The upstream sent more than the response: not trustworthy.
		c.discard()
		return
	}
	limit := t.maxIdle()
	var now time.Time
	t.mu.Lock()
	if len(t.idle) >= limit {
		t.mu.Unlock()
		c.discard()
		return
	}
	now = time.Now()
	var expired []*conn
	if d := t.IdleConnTimeout; d > 0 {
		i := 0
		for i < len(t.idle) && now.Sub(t.idle[i].idleAt) > d {
			i++
		}
		if i > 0 {
			expired = append(expired, t.idle[:i]...)
			k := copy(t.idle, t.idle[i:])
			clear(t.idle[k:])
			t.idle = t.idle[:k]
		}
	}
	t.seq++
	c.idleSeq = t.seq
	c.idleAt = now
	t.idle = append(t.idle, c)
	t.mu.Unlock()
	for _, e := range expired {
		e.discard()
	}
}

// closeIdleOlder closes the idle connections returned before the one
// stamped seq.
func (t *Transport) closeIdleOlder(seq uint64) {
	if seq == 0 {
		return
	}
	t.mu.Lock()
	i := 0
	for i < len(t.idle) && t.idle[i].idleSeq < seq {
		i++
	}
	var old []*conn
	if i > 0 {
		old = append(old, t.idle[:i]...)
		k := copy(t.idle, t.idle[i:])
		clear(t.idle[k:])
		t.idle = t.idle[:k]
	}
	t.mu.Unlock()
	for _, c := range old {
		c.discard()
	}
}
