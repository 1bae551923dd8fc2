package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Connection states, for Shutdown: only an idle connection may be closed
// under its goroutine's feet.
const (
	stateIdle    int32 = iota // waiting for the first byte of a request
	stateActive               // reading a head or serving a request
	stateClosing              // Shutdown or Close closed it
)

// conn is one client connection. Its goroutine (serve) owns everything
// but the fields under watchMu, which it shares with the watch timer and
// with whichever goroutine reads the request body, and state, which
// Shutdown reads.
type conn struct {
	srv        *Server
	rwc        net.Conn
	remoteAddr string
	baseCtx    context.Context
	state      atomic.Int32

	cr   connReader
	br   *bufio.Reader
	bw   *bufio.Writer
	wmu  sync.Mutex // orders a 100 Continue (body goroutine) and the response head
	head []byte     // the head being read; reused
	pend []byte     // a response held back for its Content-Length; reused

	respHeader http.Header // the response header map; reused
	resp       response    // the response; reused
	body       *body       // the current request's body, if it has one

	// deadline is set while one of h1's read deadlines is still on the
	// connection: the first body read or watch clears it, and so does a
	// handler that sets a read deadline of its own. idleArmed is when
	// the one there was armed as the idle deadline (zero if it is the
	// head's, or there is none). Serve, the body reader, the watch and
	// the handler all set read deadlines: dlMu orders them.
	dlMu      sync.Mutex
	deadline  bool
	idleArmed time.Time

	watchTimer *time.Timer
	watchMu    sync.Mutex // guards the fields below
	watch      watchState
	reqStart   time.Time // when the current request's handler began
	timerArmed bool      // watchTimer will fire (see watchTimeout)
	bodyDone   bool      // the current request's body is read to its end
	cancel     context.CancelFunc
	watchDone  chan struct{}
	aborting   atomic.Bool
	clientGone atomic.Bool
}

type watchState int

const (
	watchNone    watchState = iota
	watchWanted             // asked for; starts when the body has been read
	watchRunning            // a goroutine reads the connection
	watchOff                // the request is finishing: no more watching
)

// connReader sits under the bufio.Reader and gives back the byte the
// watcher read, if the client began its next request while being watched.
type connReader struct {
	c       *conn
	hasByte bool
	byteBuf [1]byte
}

func (cr *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if cr.hasByte {
		p[0] = cr.byteBuf[0]
		cr.hasByte = false
		return 1, nil
	}
	return cr.c.rwc.Read(p)
}

var (
	readerPool sync.Pool
	writerPool sync.Pool
)

const bufSize = 4 << 10

func newConn(s *Server, rwc net.Conn) *conn {
	c := &conn{srv: s, rwc: rwc}
	c.cr.c = c
	if br, ok := readerPool.Get().(*bufio.Reader); ok {
		br.Reset(&c.cr)
		c.br = br
	} else {
		c.br = bufio.NewReaderSize(&c.cr, bufSize)
	}
	if bw, ok := writerPool.Get().(*bufio.Writer); ok {
		bw.Reset(rwc)
		c.bw = bw
	} else {
		c.bw = bufio.NewWriterSize(rwc, bufSize)
	}
	if a := rwc.RemoteAddr(); a != nil {
		c.remoteAddr = a.String()
	}
	c.baseCtx = context.Background()
	if a := rwc.LocalAddr(); a != nil {
		c.baseCtx = context.WithValue(c.baseCtx, http.LocalAddrContextKey, a)
	}
	c.watchTimer = time.AfterFunc(time.Hour, c.watchTimeout)
	c.watchTimer.Stop()
	return c
}

func (c *conn) serve() {
	hijacked := false
	defer func() {
		if !hijacked {
			c.rwc.Close()
			c.srv.forget(c)
			if c.body != nil {
				c.body.abandon() // before its buffers are reused
			}
		}
		if c.srv.testHookConnDone != nil {
			defer c.srv.testHookConnDone(c)
		}
		c.watchTimer.Stop()
		if !hijacked {
			// A hijacker keeps using the buffers.
			c.br.Reset(nil)
			readerPool.Put(c.br)
			c.bw.Reset(nil)
			writerPool.Put(c.bw)
		}
	}()
	first := true
	for {
		if c.srv.inShutdown.Load() {
			return
		}
		// A kept-alive connection may idle for IdleTimeout; a head must
		// then arrive within ReadHeaderTimeout of its first byte (the
		// first request's, of the connection). The first body read or
		// a watch lifts the deadline.
		if first {
			c.setReadDeadline(c.srv.ReadHeaderTimeout)
		} else {
			c.armIdle()
		}
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		if !first && !c.headBuffered() {
			c.setReadDeadline(c.srv.ReadHeaderTimeout)
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // Shutdown closed it
		}
		req, err := c.readRequest(first)
		if err == errPreface {
			c.handOff()
			hijacked = true
			return
		}
		if err != nil {
			c.reject(err)
			return
		}
		first = false
		switch c.serveRequest(&req) {
		case afterHijack:
			hijacked = true
			return
		case afterClose:
			return
		}
		if !c.state.CompareAndSwap(stateActive, stateIdle) {
			return
		}
	}
}

// setReadDeadline sets the read deadline d from now, or lifts it for 0.
func (c *conn) setReadDeadline(d time.Duration) {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.idleArmed = time.Time{}
	if d > 0 {
		_ = c.rwc.SetReadDeadline(time.Now().Add(d))
		c.deadline = true
	} else if c.deadline {
		_ = c.rwc.SetReadDeadline(time.Time{})
		c.deadline = false
	}
}

// liftDeadline takes h1's read deadline off the connection, if one is on
// it: someone else reads the connection now (a body reader, the watch, a
// hijacker). A deadline the handler set stays.
func (c *conn) liftDeadline() {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	if c.deadline {
		_ = c.rwc.SetReadDeadline(time.Time{})
		c.deadline = false
		c.idleArmed = time.Time{}
	}
}

// handlerReadDeadline sets a read deadline the handler asked for
// (http.ResponseController): h1's own is gone, and nothing of h1's lifts
// the handler's until the next request.
func (c *conn) handlerReadDeadline(t time.Time) error {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.deadline = false
	c.idleArmed = time.Time{}
	return c.rwc.SetReadDeadline(t)
}

// armIdle puts the idle deadline, IdleTimeout from now, on the
// connection. An idle deadline armed less than a sixteenth of IdleTimeout
// ago (at most a second) is left in place: re-arming costs a runtime
// timer update per request, and what it buys is that a connection is not
// closed that much early.
func (c *conn) armIdle() {
	d := c.srv.IdleTimeout
	if d <= 0 {
		c.setReadDeadline(0)
		return
	}
	now := time.Now()
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	if c.deadline && !c.idleArmed.IsZero() && now.Sub(c.idleArmed) < min(d/16, time.Second) {
		return
	}
	_ = c.rwc.SetReadDeadline(now.Add(d))
	c.deadline = true
	c.idleArmed = now
}

// headBuffered reports whether a whole request head has arrived already,
// so that reading it cannot stall and needs no deadline of its own. The
// empty lines readHead skips before a request line do not count: "\r\n\r\n"
// followed by the start of a head is not a head.
func (c *conn) headBuffered() bool {
	b, _ := c.br.Peek(c.br.Buffered())
	b = bytes.TrimLeft(b, "\r\n")
	return bytes.Contains(b, lflf) || bytes.Contains(b, lfcrlf)
}

var (
	lflf   = []byte("\n\n")
	lfcrlf = []byte("\n\r\n")
)

// handOff gives the connection to the HTTP/2 server with what has been
// read of it so far.
func (c *conn) handOff() {
	c.srv.forget(c)
	pre := []byte(c.head)
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		pre = append(pre, b...)
	}
	if c.cr.hasByte {
		pre = append(pre, c.cr.byteBuf[0])
	}
	if c.srv.H2 == nil {
		c.rwc.Close()
		return
	}
	c.liftDeadline()
	c.srv.H2(&replayConn{Conn: c.rwc, pre: pre})
}

// replayConn reads pre before the connection.
type replayConn struct {
	net.Conn
	pre []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.pre) > 0 {
		n := copy(p, r.pre)
		r.pre = r.pre[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// reject answers a request h1 could not read, and the connection closes.
func (c *conn) reject(err error) {
	var he *headError
	if !errors.As(err, &he) {
		return // the client went away or timed out mid-head
	}
	_ = c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	msg := he.msg + "\n"
	fmt.Fprintf(c.bw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		he.code, http.StatusText(he.code), len(msg), msg)
	_ = c.bw.Flush()
	// Let the client read the answer before the close resets it.
	if tc, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		_ = tc.CloseWrite()
		_ = c.rwc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.Copy(io.Discard, io.LimitReader(c.rwc, 256<<10))
	}
}

// What serve does after a request.
type after int

const (
	afterNext   after = iota // read the next request
	afterClose               // close the connection
	afterHijack              // the handler owns the connection now
)

func (c *conn) serveRequest(head *http.Request) (next after) {
	inner, cancel := context.WithCancel(c.baseCtx)
	req := head.WithContext(&reqCtx{Context: inner, cancel: cancel})
	// The header map is the connection's, cleared for each request: a
	// ResponseWriter is not to be used once its handler returned.
	if c.respHeader == nil {
		c.respHeader = make(http.Header, 8)
	} else {
		clear(c.respHeader)
	}
	w := &c.resp
	*w = response{c: c, req: req, header: c.respHeader, contentLength: -1}
	c.body, _ = req.Body.(*body)
	if c.body != nil {
		c.body.resp = w
	}
	c.watchMu.Lock()
	c.bodyDone = req.Body == http.NoBody
	c.cancel = cancel
	c.watch = watchNone
	c.reqStart = time.Now()
	if !c.timerArmed {
		c.timerArmed = true
		c.watchTimer.Reset(c.srv.watchAfter())
	}
	c.watchMu.Unlock()

	defer func() {
		c.stopWatch()
		cancel()
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				c.srv.logger().Error("handler panicked", "method", req.Method, "uri", req.RequestURI,
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
			if w.hijacked {
				next = afterHijack
			} else {
				next = afterClose
			}
		}
	}()
	c.srv.Handler.ServeHTTP(w, req)
	c.stopWatch()
	if w.hijacked {
		return afterHijack
	}
	if !w.finish() || c.clientGone.Load() {
		return afterClose
	}
	if b, ok := req.Body.(*body); ok && !b.drain() {
		return afterClose
	}
	if w.closeAfter || c.srv.inShutdown.Load() {
		return afterClose
	}
	return afterNext
}

// reqCtx is a request's context: it is canceled when the client goes
// away or the handler returns, and hands its cancel to Cancel.
type reqCtx struct {
	context.Context
	cancel context.CancelFunc
}

type cancelKey struct{}

func (r *reqCtx) Value(key any) any {
	if key == (cancelKey{}) {
		return r.cancel
	}
	return r.Context.Value(key)
}

// Cancel returns the function that cancels the context of the h1 request
// whose context is ctx, or one derived from it, or nil for any other
// context. A handler that must be able to stop its request's work early
// (drover's proxy does when request_timeout passes) uses it instead of a
// context of its own, which would cost a context per request.
func Cancel(ctx context.Context) context.CancelFunc {
	f, _ := ctx.Value(cancelKey{}).(context.CancelFunc)
	return f
}

// watchTimeout runs when the watch timer fires. The timer is not stopped
// and re-armed for every request, which would cost two runtime timer
// updates each: once armed, it fires WatchAfter later, starts the watch
// if the request then being served has run for WatchAfter, waits for the
// rest of that time if it has not, and stays unarmed if no request is
// being served (the next one arms it).
func (c *conn) watchTimeout() {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	if c.watch != watchNone {
		c.timerArmed = false // between requests, or watched already
		return
	}
	if wait := c.srv.watchAfter() - time.Since(c.reqStart); wait > 0 {
		c.watchTimer.Reset(wait)
		return
	}
	c.timerArmed = false
	c.watch = watchWanted
	if c.bodyDone {
		c.runWatchLocked()
	}
}

// bodyEOF is called when the request body has been read to its end:
// a watch asked for earlier can start now that nobody else reads.
func (c *conn) bodyEOF() {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	c.bodyDone = true
	if c.watch == watchWanted {
		c.runWatchLocked()
	}
}

func (c *conn) runWatchLocked() {
	c.watch = watchRunning
	c.watchDone = make(chan struct{})
	c.liftDeadline()
	if c.cr.hasByte || c.br.Buffered() > 0 {
		// The client already sent its next request: it is there.
		close(c.watchDone)
		return
	}
	go c.watchConn(c.watchDone, c.cancel)
}

// watchConn reads the connection while the handler runs. A byte is the
// start of the client's next request and is kept for it; an error other
// than stopWatch's deadline means the client is gone.
func (c *conn) watchConn(done chan struct{}, cancel context.CancelFunc) {
	defer close(done)
	n, err := c.rwc.Read(c.cr.byteBuf[:])
	if n == 1 {
		c.cr.hasByte = true
		if c.srv.testHookWatchRead != nil {
			c.srv.testHookWatchRead()
		}
		return
	}
	var ne net.Error
	if c.aborting.Load() && errors.As(err, &ne) && ne.Timeout() {
		return
	}
	c.clientGone.Store(true)
	cancel()
}

// stopWatch ends the watch of the current request, if any, and waits for
// its goroutine, so that serve can read the connection again.
func (c *conn) stopWatch() {
	c.watchMu.Lock()
	running := c.watch == watchRunning
	c.watch = watchOff
	done := c.watchDone
	c.watchMu.Unlock()
	if !running {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	c.aborting.Store(true)
	_ = c.rwc.SetReadDeadline(aLongTimeAgo)
	<-done
	c.aborting.Store(false)
	_ = c.rwc.SetReadDeadline(time.Time{})
}

var aLongTimeAgo = time.Unix(1, 0)
