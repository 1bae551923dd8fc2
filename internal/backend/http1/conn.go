package http1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// aLongTimeAgo is a deadline in the past: it makes blocked and future
// reads and writes on a connection fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one connection to the upstream. Outside the idle pool it is
// owned by one exchange: the RoundTrip goroutine, then the response body.
type conn struct {
	t  *Transport
	nc net.Conn
	br *bufio.Reader // reads from the conn itself, to count bytes

	nread int64 // bytes read from nc so far
	limit int64 // while reading a response head: nread may not pass it

	reused  bool
	idleSeq uint64
	idleAt  time.Time

	abortFn func() // c.abort, bound once for context.AfterFunc

	rc syscall.RawConn // for alive; nil when nc is not a syscall.Conn
}

func (t *Transport) newConn(nc net.Conn) *conn {
	c := &conn{t: t, nc: nc}
	c.abortFn = c.abort
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
		}
	}
	if br, ok := t.readers.Get().(*bufio.Reader); ok {
		br.Reset(c)
		c.br = br
	} else {
		size := t.ReadBufferSize
		if size <= 0 {
			size = DefaultReadBufferSize
		}
		c.br = bufio.NewReaderSize(c, size)
	}
	return c
}

// Read counts what is read from the network and enforces the response
// head limit. Only the connection's bufio.Reader calls it.
func (c *conn) Read(p []byte) (int, error) {
	if c.limit > 0 {
		rem := c.limit - c.nread
		if rem <= 0 {
			return 0, errHeaderSize
		}
		if int64(len(p)) > rem {
			p = p[:rem]
		}
	}
	n, err := c.nc.Read(p)
	c.nread += int64(n)
	return n, err
}

// abort runs when the exchange's context is done: it makes the blocked
// read or write fail. The connection is discarded afterwards.
func (c *conn) abort() { c.nc.SetDeadline(aLongTimeAgo) }

// discard closes the connection and recycles its read buffer. Only the
// owner calls it, once, when nothing else can use the bufio.Reader.
func (c *conn) discard() {
	c.nc.Close()
	if br := c.br; br != nil {
		c.br = nil
		br.Reset(nil)
		c.t.readers.Put(br)
	}
}

// alive probes, without blocking, whether the upstream closed an idle
// connection (or sent something unsolicited, which is just as fatal).
func (c *conn) alive() bool {
	if c.rc == nil {
		return true
	}
	// EAGAIN: open, nothing to read. Zero bytes: closed by the upstream.
	// Data: unsolicited bytes. Any other error: broken.
	ok := false
	var b [1]byte
	err := c.rc.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = rerr == syscall.EAGAIN || rerr == syscall.EINTR
		return true
	})
	return ok && err == nil
}

// roundTrip does one exchange on c, which it owns. On error c has been
// discarded; retry reports whether the request may be sent again on
// another connection.
func (c *conn) roundTrip(ctx context.Context, req *http.Request, head []byte, hasBody, chunked, idempotent bool) (resp *http.Response, retry bool, err error) {
	var stop func() bool
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			c.t.putIdleOrDiscard(c)
			closeBody(req, hasBody)
			return nil, false, err
		}
		stop = context.AfterFunc(ctx, c.abortFn)
	}
	var w *bodyWriter
	if !hasBody {
		n, err := c.nc.Write(head)
		if err != nil {
			stopWatch(stop)
			c.discard()
			retry := c.reused && (n == 0 || idempotent)
			return nil, retry, wrapErr(ctx, "write request", err)
		}
	} else {
		w = c.startWriter(head, req, chunked)
	}

	start := c.nread
	resp, kind, length, err := c.readResponse(req)
	if err != nil {
		stopWatch(stop)
		// The writer goroutine never touches the bufio.Reader.
		c.discard()
		if w != nil {
			if done, werr := w.poll(); done && werr != nil {
				var be *bodyReadError
				if errors.As(werr, &be) && ctx.Err() == nil {
					// The request body failed; that is why the
					// upstream's answer never came.
					return nil, false, werr
				}
			}
		}
		if err == errHeaderSize {
			return nil, false, err
		}
		retry := c.reused && c.nread == start && ctx.Err() == nil && idempotent && isConnGone(err)
		return nil, retry, wrapErr(ctx, "read response", err)
	}

	if resp.StatusCode == http.StatusSwitchingProtocols {
		return c.upgrade(ctx, resp, w, stop)
	}

	if kind == bodyStd && resp.Body == http.NoBody {
		kind = bodyNone
	}
	// Keep-alive needs HTTP/1.1, no "Connection: close" either way, and a
	// body whose end is known.
	keepAlive := !resp.Close && resp.ProtoAtLeast(1, 1) && !req.Close &&
		!httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close") &&
		(kind != bodyStd || resp.ContentLength >= 0 ||
			len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked")

	if kind == bodyNone && w == nil {
		// Nothing more to read: the connection is free now.
		resp.Body = http.NoBody
		c.finish(stop, nil, keepAlive)
		return resp, false, nil
	}
	b := &body{c: c, w: w, stop: stop, ctx: ctx, keepAlive: keepAlive}
	b.r = bodyReader{kind: kind, br: c.br, n: length, resp: resp, std: resp.Body}
	resp.Body = b
	return resp, false, nil
}

// putIdleOrDiscard returns an unused connection.
func (t *Transport) putIdleOrDiscard(c *conn) {
	if t.maxIdle() > 0 {
		t.putIdle(c)
	} else {
		c.discard()
	}
}

// readResponse reads the final response head, skipping interim 1xx
// responses other than 101, with readHead or else http.ReadResponse (kind
// bodyStd).
func (c *conn) readResponse(req *http.Request) (*http.Response, bodyKind, int64, error) {
	maxHeader := c.t.MaxResponseHeaderBytes
	if maxHeader <= 0 {
		maxHeader = DefaultMaxResponseHeaderBytes
	}
	// Like net/http: the interim responses count toward the head limit,
	// unless a trace consumed them.
	c.limit = c.nread + maxHeader
	for n1xx := 0; ; n1xx++ {
		resp, kind, length, ok := readHead(c.br, req)
		var err error
		if !ok {
			resp, err = http.ReadResponse(c.br, req)
			kind = bodyStd
		}
		if err != nil {
			c.limit = 0
			return nil, 0, 0, err
		}
		code := resp.StatusCode
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			c.limit = 0
			return resp, kind, length, nil
		}
		if n1xx == max1xx {
			c.limit = 0
			return nil, 0, 0, errToo1xx
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				c.limit = 0
				return nil, 0, 0, err
			}
			c.limit = c.nread + maxHeader
		}
	}
}

// upgrade hands the connection over as the body of a 101 response.
func (c *conn) upgrade(ctx context.Context, resp *http.Response, w *bodyWriter, stop func() bool) (*http.Response, bool, error) {
	if w != nil {
		if done, werr := w.wait(writeWaitBeforeReuse); !done || werr != nil {
			stopWatch(stop)
			c.discard()
			return nil, false, errors.New("http1: 101 Switching Protocols before the request body was sent")
		}
	}
	if !stopWatch(stop) {
		c.discard()
		return nil, false, wrapErr(ctx, "read response", context.Canceled)
	}
	u := &upgradedConn{Conn: c.nc}
	if n := c.br.Buffered(); n > 0 {
		u.buf = make([]byte, n)
		c.br.Read(u.buf)
	}
	br := c.br
	c.br = nil
	br.Reset(nil)
	c.t.readers.Put(br)
	resp.Body = u
	return resp, false, nil
}

// finish ends an exchange whose response was read entirely: the
// connection goes back to the pool if everything allows it.
func (c *conn) finish(stop func() bool, w *bodyWriter, keepAlive bool) {
	reuse := stopWatch(stop) && keepAlive
	if w != nil {
		// Wait briefly: the upstream may still be reading the end of
		// the request body.
		if done, err := w.wait(writeWaitBeforeReuse); !done || err != nil {
			reuse = false
		}
	}
	if reuse && c.t.maxIdle() > 0 {
		c.t.putIdle(c)
	} else {
		c.discard()
	}
}

// stopWatch stops watching the context and reports whether the watch had
// not fired (so the connection's deadline is untouched).
func stopWatch(stop func() bool) bool {
	if stop == nil {
		return true
	}
	return stop()
}

func wrapErr(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		err = cerr
	}
	return fmt.Errorf("http1: %s: %w", what, err)
}

func isConnGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}
