package http1

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// body is a response body. The connection goes back to the idle pool when
// the body reaches EOF (keep-alive permitting) and is closed when the body
// is closed before that. Close may be called while a Read is blocked, to
// abort it.
type body struct {
	c         *conn
	r         bodyReader
	w         *bodyWriter
	stop      func() bool
	ctx       context.Context
	keepAlive bool

	mu      sync.Mutex
	reading bool  // a Read is in b.r.Read
	done    bool  // the exchange is over: c is no longer ours
	closed  bool  // Close was called
	err     error // returned by Read once done
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return 0, errBodyClosed
	}
	if b.done {
		err := b.err
		b.mu.Unlock()
		return 0, err
	}
	b.reading = true
	b.mu.Unlock()

	n, err := b.r.Read(p)

	b.mu.Lock()
	b.reading = false
	if err == nil {
		b.mu.Unlock()
		return n, nil
	}
	if b.done {
		// Close ran meanwhile and closed the connection.
		b.mu.Unlock()
		return n, errBodyClosed
	}
	b.done = true
	if err == io.EOF {
		b.err = io.EOF
		b.mu.Unlock()
		b.c.finish(b.stop, b.w, b.keepAlive)
		return n, io.EOF
	}
	err = wrapErr(b.ctx, "read response body", err)
	b.err = err
	b.mu.Unlock()
	stopWatch(b.stop)
	b.c.discard()
	return n, err
}

// Close ends the exchange. Unless the body was read to its end, the
// connection is closed, except when the rest of the body (up to 4 KiB) is
// already buffered.
func (b *body) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	if b.done {
		b.mu.Unlock()
		return nil
	}
	b.done = true
	reading := b.reading
	b.mu.Unlock()

	if reading {
		// Another goroutine is inside Read, using the connection's
		// buffer: make it fail, and leave the buffer to the GC.
		stopWatch(b.stop)
		b.c.nc.Close()
		return nil
	}
	if !stopWatch(b.stop) || !b.keepAlive || !b.drain() {
		b.c.discard()
		return nil
	}
	b.c.finish(nil, b.w, true)
	return nil
}

// drain reads the rest of the body if it is already buffered and short.
// The read deadline in the past makes any read from the network fail.
func (b *body) drain() bool {
	c := b.c
	if c.nc.SetReadDeadline(aLongTimeAgo) != nil {
		return false
	}
	var buf [512]byte
	total := 0
	for total <= maxDrain {
		n, err := b.r.Read(buf[:])
		total += n
		if err == io.EOF {
			return c.nc.SetReadDeadline(time.Time{}) == nil
		}
		if err != nil {
			return false
		}
	}
	return false
}

// upgradedConn is the body of a 101 Switching Protocols response: the raw
// connection, after the bytes that were already buffered. The caller owns
// it; the request's context no longer applies.
type upgradedConn struct {
	net.Conn
	buf []byte // read before the connection
}

func (u *upgradedConn) Read(p []byte) (int, error) {
	if len(u.buf) > 0 {
		n := copy(p, u.buf)
		u.buf = u.buf[n:]
		return n, nil
	}
	return u.Conn.Read(p)
}

// CloseWrite half-closes the connection when the underlying one can
// (httputil.ReverseProxy then propagates a client's half-close).
func (u *upgradedConn) CloseWrite() error {
	if cw, ok := u.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("http1: connection cannot half-close")
}

// NetConn returns the underlying connection.
func (u *upgradedConn) NetConn() net.Conn { return u.Conn }
