// Package uwsgi speaks the uwsgi protocol to application instances, as an
// http.RoundTripper. It serves two kinds of pool:
//
// uwsgi: real uWSGI instances (uwsgi --socket $DROVER_SOCKET ...). A
// request is one uwsgi packet on a fresh connection: the header
// (modifier1 0, u16 little-endian size, modifier2 0) and the vars (u16 LE
// key size, key, u16 LE value size, value, repeated), built as nginx's
// uwsgi_params builds them, then the body. uWSGI answers with a raw HTTP/1.x
// response, read with http.ReadResponse, whose body ends where its
// Content-Length or chunked coding says, or at EOF; uWSGI then closes the
// connection, so KeepAlive must be false. Two uWSGI settings matter: its
// default --buffer-size of 4096 rejects requests whose vars are larger
// (give it --buffer-size 65535, the protocol's limit), and it answers pings
// only with the ping plugin loaded (--plugin python3,ping on Debian's
// modular build).
//
// wsgi: drover's own Python shim (package python, drover_wsgi.py). Its wire
// format is this same uwsgi request packet over persistent connections
// (KeepAlive true), with two additions that let requests follow each other
// on one connection, and one that saves the shim time (CompactVars: with
// modifier2 = 1 each key and value is followed by a NUL byte instead of
// being preceded by its length, which Python splits at C speed):
//
//   - Request bodies are framed. A body of known length is exactly
//     CONTENT_LENGTH bytes. A body of unknown length (a chunked upload) is
//     announced by the var DROVER_CHUNKED=1 and sent as chunks, each a u32
//     little-endian length and that many bytes, ended by a zero length, so
//     drover streams it without buffering.
//   - The response is an HTTP/1.1 status line and headers, then a body
//     framed by Content-Length (the application's, or one the shim computed
//     for a list response) or else by chunked transfer coding. A response
//     that cannot be completed is aborted by closing the connection, which
//     the Transport reports as an error from the body's Read.
//
// The shim serves DROVER_CONCURRENCY connections (with one thread each, or
// fewer threads that take turns), so a connection beyond that would sit in
// its accept queue behind idle ones: set MaxConns to the shim's concurrency
// and the Transport waits for a free connection instead of opening one
// more.
//
// A ping (Transport.Ping) is a packet with modifier1 100 and no vars; both
// uWSGI and the shim answer with a 4-byte header whose modifier1 is 100.
//
// Request bodies of unknown length sent to real uWSGI (KeepAlive false) are
// read ahead up to 64 KiB: a body that ends within that goes out with its
// Content-Length, as uWSGI's wsgi.input needs. A longer one goes out in HTTP
// chunked coding with HTTP_TRANSFER_ENCODING=chunked and no CONTENT_LENGTH,
// which uWSGI applications can read only with uwsgi.chunked_read(): plain
// wsgi.input sees an empty body. (nginx buffers such bodies whole instead.)
package uwsgi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
)

const (
	modPing = 100
	// peekSize is how much of an unknown-length body is read ahead for real
	// uWSGI in the hope of finding its end (see the package doc).
	peekSize = 64 << 10
	// bufSize is the write buffer: the packet and the first body bytes go
	// out together, and a body is streamed in pieces of at most this size.
	bufSize = 32 << 10
	// defaultMaxIdle applies when neither MaxIdleConns nor MaxConns is set.
	defaultMaxIdle = 2
)

var pingPacket = [headerSize]byte{modPing, 0, 0, 0}

// Transport is an http.RoundTripper that sends requests to one uwsgi
// instance. The zero value is not usable: Dial must be set. A Transport is
// safe for concurrent use; its settings must not change after first use.
type Transport struct {
	// Dial connects to the instance (the pool's unix socket, normally).
	Dial func(ctx context.Context) (net.Conn, error)
	// Params are extra vars sent with every request, like nginx's
	// uwsgi_param (SCRIPT_NAME, UWSGI_SCHEME, ...). A Param replaces the var
	// the Transport would have computed under the same name.
	Params map[string]string
	// KeepAlive reuses connections and frames request bodies as drover's
	// shim expects (see the package doc). Only for the shim: real uWSGI
	// closes the connection after each response.
	KeepAlive bool
	// CompactVars sends the vars as NUL-ended keys and values, marked by
	// modifier2 = 1, which the shim parses faster; a packet whose vars
	// hold a NUL keeps the usual form. Only for the shim.
	CompactVars bool
	// MaxIdleConns bounds the idle connections kept for reuse; 0 means
	// MaxConns, or 2 when MaxConns is 0 too. KeepAlive only.
	MaxIdleConns int
	// MaxConns bounds the open connections; RoundTrip and Ping wait (up to
	// their context) for one to come free. 0 means no bound. KeepAlive
	// only; set it to the shim's DROVER_CONCURRENCY (see the package doc).
	MaxConns int

	mu      sync.Mutex
	idle    []*conn      // most recently used last
	open    int          // connections counted against MaxConns
	waiters []chan *conn // FIFO; nil received = "a slot is yours, dial"
}

// conn is one connection with its read buffer, which must survive between
// requests on a persistent connection.
type conn struct {
	nc net.Conn
	br *bufio.Reader
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, bufSize); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= 4*bufSize {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// RoundTrip sends req to the instance and returns its response, whose body
// streams from the connection. The request's context bounds the whole
// exchange, body included: when it ends the connection is closed and the
// error wraps the context's error. RoundTrip always closes req.Body.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	body := io.Reader(req.Body)
	var closer io.Closer = req.Body
	if req.Body == nil || req.Body == http.NoBody {
		body, closer = nil, nil
	}
	closeBody := func() {
		if closer != nil {
			closer.Close()
		}
	}
	if t.Dial == nil {
		closeBody()
		return nil, errors.New("uwsgi: Transport.Dial is nil")
	}

	mode, length := bodyNone, int64(0)
	switch {
	case body == nil:
	case req.ContentLength > 0:
		mode, length = bodyLength, req.ContentLength
		body = io.LimitReader(body, length)
	case t.KeepAlive:
		mode = bodyShimChunked
	default:
		// Unknown length to real uWSGI: look for the end (package doc).
		peek := make([]byte, peekSize)
		n, err := io.ReadFull(body, peek)
		switch err {
		case io.EOF, io.ErrUnexpectedEOF:
			closeBody()
			closer = nil
			if n == 0 {
				body = nil
			} else {
				mode, length, body = bodyLength, int64(n), bytes.NewReader(peek[:n])
			}
		case nil:
			mode, body = bodyHTTPChunked, io.MultiReader(bytes.NewReader(peek), body)
		default:
			closeBody()
			return nil, fmt.Errorf("uwsgi: read request body: %w", err)
		}
	}

	pkt := getBuf()
	b, err := t.appendPacket((*pkt)[:0], req, length, mode)
	if err != nil {
		putBuf(pkt)
		closeBody()
		return nil, err
	}
	*pkt = b
	for attempt := 0; ; attempt++ {
		c, reused, err := t.getConn(ctx)
		if err != nil {
			putBuf(pkt)
			closeBody()
			return nil, err
		}
		x := &exchange{t: t, c: c, ctx: ctx}
		x.pending.Store(2)
		x.stop = context.AfterFunc(ctx, x.abort)
		if body == nil {
			_, err := c.nc.Write(b)
			x.done(err == nil)
			if err != nil {
				x.done(false) // the read side never starts
				if reused && attempt == 0 && ctx.Err() == nil {
					continue // a stale idle connection; nothing was sent
				}
				putBuf(pkt)
				return nil, x.errorf("write request vars", err)
			}
		} else {
			go x.writeRequest(pkt, body, closer, mode, length)
		}
		resp, retry, err := x.readResponse(req)
		if err != nil && retry && body == nil && reused && attempt == 0 {
			continue
		}
		if body == nil {
			putBuf(pkt)
		}
		return resp, err
	}
}

// exchange is one request/response on one connection. Its writer (the
// request body) and reader (the response) finish independently, in either
// order; the connection goes back to the pool only when both finished
// cleanly, and is closed otherwise.
type exchange struct {
	t        *Transport
	c        *conn
	ctx      context.Context
	stop     func() bool // unregisters the context's AfterFunc
	detached atomic.Bool // stop was called
	pending  atomic.Int32
	failed   atomic.Bool
	reusable bool                  // set by the reader before it finishes
	brFree   bool                  // the reader is done with c.br: it may be recycled
	werr     atomic.Pointer[error] // the writer's error, for the reader to report
}

// abort closes the connection at once: the context ended, the client's body
// failed or the caller closed the response body early. Whatever is blocked
// on the connection fails, and done later discards it.
func (x *exchange) abort() {
	x.failed.Store(true)
	x.c.nc.Close()
}

// done records that one side finished; the last one releases the connection.
func (x *exchange) done(ok bool) {
	if !ok {
		x.failed.Store(true)
	}
	if x.pending.Add(-1) > 0 {
		return
	}
	x.detach()
	if !x.failed.Load() && x.reusable {
		x.t.putIdle(x.c)
	} else {
		x.t.discard(x.c, x.brFree)
	}
}

// detach unregisters the context's AfterFunc. The reader calls it as soon as
// the response is complete: the request is over then, and a caller that
// cancels its context right after reading the body (as every server handler
// does on return) must not cut a writer that is about to finish, which
// would cost the connection. As with http.Transport, a writer still blocked
// on the request body after the response is bounded by that body, which the
// HTTP server closes when its handler returns.
func (x *exchange) detach() {
	if x.detached.Swap(true) {
		return
	}
	if !x.stop() { // the AfterFunc ran or runs: the connection is closed
		x.failed.Store(true)
	}
}

// errorf wraps err from step what, naming the context's error when the
// context ended (the connection was closed because of it) and the writer's
// error when the request side failed first.
func (x *exchange) errorf(what string, err error) error {
	if cerr := x.ctx.Err(); cerr != nil {
		return fmt.Errorf("uwsgi: %s: %w", what, cerr)
	}
	if werr := x.werr.Load(); werr != nil {
		return fmt.Errorf("uwsgi: %s: %w (after: %w)", what, err, *werr)
	}
	return fmt.Errorf("uwsgi: %s: %w", what, err)
}

// writeRequest sends the packet in *pkt and the body; it runs concurrently
// with readResponse so that an application answering before it read the
// whole body, or streaming while it reads, never deadlocks against drover.
func (x *exchange) writeRequest(pkt *[]byte, body io.Reader, closer io.Closer, mode bodyMode, length int64) {
	var err error
	var clientFailed bool
	switch mode {
	case bodyLength:
		clientFailed, err = writeLength(x.c.nc, *pkt, body, length)
	case bodyShimChunked:
		clientFailed, err = writeShimChunked(x.c.nc, *pkt, body)
	case bodyHTTPChunked:
		clientFailed, err = writeHTTPChunked(x.c.nc, *pkt, body)
	}
	if closer != nil {
		closer.Close()
	}
	putBuf(pkt)
	if err != nil {
		x.werr.Store(&err)
		if clientFailed {
			// The instance waits for bytes that will never come: cut it off.
			x.abort()
		}
	}
	x.done(err == nil)
}

// writeLength sends b (the packet) and exactly n body bytes, reading the
// body into b's spare capacity so that a small request is a single write.
// clientFailed reports an error of the body rather than of the connection.
func writeLength(nc net.Conn, b []byte, body io.Reader, n int64) (clientFailed bool, err error) {
	for n > 0 {
		if len(b) == cap(b) {
			if _, err := nc.Write(b); err != nil {
				return false, fmt.Errorf("uwsgi: write request: %w", err)
			}
			b = b[:0]
		}
		space := b[len(b):cap(b)]
		if int64(len(space)) > n {
			space = space[:n]
		}
		m, rerr := body.Read(space)
		b = b[:len(b)+m]
		n -= int64(m)
		if m > 0 {
			if _, err := nc.Write(b); err != nil {
				return false, fmt.Errorf("uwsgi: write request body: %w", err)
			}
			b = b[:0]
		}
		if rerr == io.EOF && n > 0 {
			return true, fmt.Errorf("uwsgi: read request body: %w (%d bytes short of its Content-Length)", io.ErrUnexpectedEOF, n)
		}
		if rerr != nil && rerr != io.EOF {
			return true, fmt.Errorf("uwsgi: read request body: %w", rerr)
		}
	}
	if len(b) > 0 {
		if _, err := nc.Write(b); err != nil {
			return false, fmt.Errorf("uwsgi: write request vars: %w", err)
		}
	}
	return false, nil
}

// writeShimChunked sends b (the packet) and the body as the shim's
// length-prefixed chunks, each body read going out as one write.
func writeShimChunked(nc net.Conn, b []byte, body io.Reader) (clientFailed bool, err error) {
	for {
		if cap(b)-len(b) < 4+1024 {
			if _, err := nc.Write(b); err != nil {
				return false, fmt.Errorf("uwsgi: write request: %w", err)
			}
			b = b[:0]
		}
		hdr := len(b)
		m, rerr := body.Read(b[hdr+4 : cap(b)])
		if m > 0 {
			binary.LittleEndian.PutUint32(b[hdr:hdr+4], uint32(m))
			b = b[:hdr+4+m]
			if _, err := nc.Write(b); err != nil {
				return false, fmt.Errorf("uwsgi: write request body: %w", err)
			}
			b = b[:0]
		}
		if rerr == io.EOF {
			b = append(b, 0, 0, 0, 0)
			if _, err := nc.Write(b); err != nil {
				return false, fmt.Errorf("uwsgi: write request body: %w", err)
			}
			return false, nil
		}
		if rerr != nil {
			return true, fmt.Errorf("uwsgi: read request body: %w", rerr)
		}
	}
}

// writeHTTPChunked sends b (the packet) and the body in HTTP chunked coding,
// for real uWSGI (see the package doc).
func writeHTTPChunked(nc net.Conn, b []byte, body io.Reader) (clientFailed bool, err error) {
	bw := bufio.NewWriterSize(nc, bufSize+64)
	bw.Write(b)
	chunk := getBuf()
	defer putBuf(chunk)
	buf := (*chunk)[:bufSize]
	for {
		m, rerr := body.Read(buf)
		if m > 0 {
			var size [20]byte
			bw.Write(strconv.AppendUint(size[:0], uint64(m), 16))
			bw.WriteString("\r\n")
			bw.Write(buf[:m])
			bw.WriteString("\r\n")
			if err := bw.Flush(); err != nil {
				return false, fmt.Errorf("uwsgi: write request body: %w", err)
			}
		}
		if rerr == io.EOF {
			bw.WriteString("0\r\n\r\n")
			if err := bw.Flush(); err != nil {
				return false, fmt.Errorf("uwsgi: write request body: %w", err)
			}
			return false, nil
		}
		if rerr != nil {
			return true, fmt.Errorf("uwsgi: read request body: %w", rerr)
		}
	}
}

// readResponse reads the response head; retry reports that nothing at all
// came back, so a request without a body may be tried on a new connection.
func (x *exchange) readResponse(req *http.Request) (resp *http.Response, retry bool, err error) {
	br := x.c.br
	if _, err := br.Peek(1); err != nil {
		x.brFree = true
		x.done(false)
		return nil, x.ctx.Err() == nil, x.errorf("read response head", err)
	}
	resp, err = http.ReadResponse(br, req)
	// Informational answers (103 Early Hints, a stray 100) precede the real
	// one; 101 would switch protocols, which this Transport does not do.
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(br, req)
	}
	if err != nil {
		x.brFree = true
		x.done(false)
		return nil, false, x.errorf("read response head", err)
	}
	x.reusable = x.t.KeepAlive && !resp.Close && resp.StatusCode != http.StatusSwitchingProtocols
	if resp.Body == http.NoBody {
		x.detach()
		x.brFree = true
		x.done(br.Buffered() == 0)
		return resp, false, nil
	}
	resp.Body = &respBody{
		rc: resp.Body,
		x:  x,
		// uWSGI closing with request bytes unread makes the kernel report
		// ECONNRESET after the last response byte; for a body that ends at
		// EOF that is its end (a crash would look like plain EOF anyway).
		resetIsEOF: !x.t.KeepAlive && resp.ContentLength < 0 && len(resp.TransferEncoding) == 0,
	}
	return resp, false, nil
}

// respBody is a response body that releases the exchange when it ends.
type respBody struct {
	rc         io.ReadCloser
	x          *exchange
	resetIsEOF bool
	eof        bool // Read saw the end; only Read's goroutine touches it
	finished   atomic.Bool
}

var errBodyClosed = errors.New("uwsgi: read on closed response body")

func (b *respBody) Read(p []byte) (int, error) {
	if b.finished.Load() {
		// The connection and its buffer may belong to another request now.
		if b.eof {
			return 0, io.EOF
		}
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF || b.resetIsEOF && errors.Is(err, syscall.ECONNRESET):
		b.eof = true
		b.finish(true)
		return n, io.EOF
	}
	b.finish(false)
	return n, b.x.errorf("read response body", err)
}

// Close before the end aborts the response: the connection is closed rather
// than drained, so a streaming application stops instead of running on.
func (b *respBody) Close() error {
	b.finish(false)
	return nil
}

func (b *respBody) finish(ok bool) {
	if b.finished.Swap(true) {
		return
	}
	if ok && b.x.c.br.Buffered() > 0 {
		ok = false // bytes past the response: the stream is out of step
	}
	if ok {
		// Only Read calls finish(true), so no Read is using the buffer.
		b.x.brFree = true
		b.x.detach()
	} else {
		b.x.abort()
	}
	b.x.done(ok)
}

// Ping sends a uwsgi ping (modifier1 100) and waits for the answer, whose
// modifier1 must be 100 too. A non-empty answer (uWSGI's warning message)
// still counts as alive.
func (t *Transport) Ping(ctx context.Context) error {
	if t.Dial == nil {
		return errors.New("uwsgi: Transport.Dial is nil")
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := t.getConn(ctx)
		if err != nil {
			return err
		}
		err = t.ping(ctx, c)
		if err == nil || !reused || attempt > 0 || ctx.Err() != nil {
			return err
		}
		// A stale idle connection: try once on a new one.
	}
}

func (t *Transport) ping(ctx context.Context, c *conn) error {
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	var h [headerSize]byte
	_, err := c.nc.Write(pingPacket[:])
	if err == nil {
		_, err = io.ReadFull(c.br, h[:])
	}
	if err == nil && h[0] == modPing {
		if size := int64(h[1]) | int64(h[2])<<8; size > 0 {
			_, err = io.CopyN(io.Discard, c.br, size)
		}
	}
	stopped := stop()
	switch {
	case err != nil:
		t.discard(c, true)
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
		}
		return fmt.Errorf("uwsgi: ping: %w", err)
	case h[0] != modPing:
		t.discard(c, true)
		return fmt.Errorf("uwsgi: ping: answer has modifier1 %d, want %d", h[0], modPing)
	}
	if stopped && t.KeepAlive && c.br.Buffered() == 0 {
		t.putIdle(c)
	} else {
		t.discard(c, true)
	}
	return nil
}

// getConn returns an idle connection (reused) or a new one, waiting for a
// free slot when MaxConns connections are open.
func (t *Transport) getConn(ctx context.Context) (c *conn, reused bool, err error) {
	if !t.KeepAlive {
		c, err = t.dial(ctx)
		return c, false, err
	}
	t.mu.Lock()
	if n := len(t.idle); n > 0 {
		c = t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		return c, true, nil
	}
	if t.MaxConns <= 0 || t.open < t.MaxConns {
		t.open++
		t.mu.Unlock()
		return t.dialSlot(ctx)
	}
	ch := make(chan *conn, 1)
	t.waiters = append(t.waiters, ch)
	t.mu.Unlock()
	select {
	case c = <-ch:
		if c != nil {
			return c, true, nil
		}
		return t.dialSlot(ctx)
	case <-ctx.Done():
	}
	t.mu.Lock()
	for i, w := range t.waiters {
		if w == ch {
			t.waiters = append(t.waiters[:i], t.waiters[i+1:]...)
			t.mu.Unlock()
			return nil, false, fmt.Errorf("uwsgi: wait for a free connection: %w", ctx.Err())
		}
	}
	t.mu.Unlock()
	// Handed something while giving up: pass it on.
	if c = <-ch; c != nil {
		t.putIdle(c)
	} else {
		t.dropSlot()
	}
	return nil, false, fmt.Errorf("uwsgi: wait for a free connection: %w", ctx.Err())
}

// dialSlot dials for a slot already counted in t.open.
func (t *Transport) dialSlot(ctx context.Context) (*conn, bool, error) {
	c, err := t.dial(ctx)
	if err != nil {
		t.dropSlot()
		return nil, false, err
	}
	return c, false, nil
}

func (t *Transport) dial(ctx context.Context) (*conn, error) {
	nc, err := t.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("uwsgi: dial: %w", err)
	}
	br := brPool.Get().(*bufio.Reader)
	br.Reset(nc)
	return &conn{nc: nc, br: br}, nil
}

// putIdle hands a healthy connection to the first waiter, or keeps it idle.
func (t *Transport) putIdle(c *conn) {
	t.mu.Lock()
	if len(t.waiters) > 0 {
		ch := t.waiters[0]
		t.waiters[0] = nil
		t.waiters = t.waiters[1:]
		t.mu.Unlock()
		ch <- c
		return
	}
	if len(t.idle) < t.maxIdle() {
		t.idle = append(t.idle, c)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	t.discard(c, true)
}

// brPool recycles read buffers: real uWSGI needs a connection, and so a
// buffer, per request.
var brPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 8<<10) }}

// discard closes a connection that must not be reused; recycleBuf says that
// nothing reads its buffer any more.
func (t *Transport) discard(c *conn, recycleBuf bool) {
	c.nc.Close()
	if recycleBuf {
		c.br.Reset(nil)
		brPool.Put(c.br)
		c.br = nil
	}
	if t.KeepAlive {
		t.dropSlot()
	}
}

// dropSlot gives up one open connection's slot, to a waiter if there is one.
func (t *Transport) dropSlot() {
	t.mu.Lock()
	if len(t.waiters) > 0 {
		ch := t.waiters[0]
		t.waiters[0] = nil
		t.waiters = t.waiters[1:]
		t.mu.Unlock()
		ch <- nil
		return
	}
	t.open--
	t.mu.Unlock()
}

func (t *Transport) maxIdle() int {
	switch {
	case t.MaxIdleConns > 0:
		return t.MaxIdleConns
	case t.MaxConns > 0:
		return t.MaxConns
	}
	return defaultMaxIdle
}

// CloseIdleConnections closes the connections kept for reuse, as a pool
// does before it stops an instance. Connections in use are not affected.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		t.discard(c, true)
	}
}
