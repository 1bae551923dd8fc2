package h1

import (
	"bufio"
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

	// deadline is set while the head's read deadline is still on the
	// connection: the first body read or watch clears it.
	deadline bool

	watchTimer *time.Timer
	watchMu    sync.Mutex // guards the fields below
	watch      watchState
	reqSeq     uint64
	bodyDone   bool // the current request's body is read to its end
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
		d := c.srv.ReadHeaderTimeout
		if !first {
			d = c.srv.IdleTimeout
		}
		c.setReadDeadline(d)
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		if !first {
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
	if d > 0 {
		_ = c.rwc.SetReadDeadline(time.Now().Add(d))
		c.deadline = true
	} else if c.deadline {
		_ = c.rwc.SetReadDeadline(time.Time{})
		c.deadline = false
	}
}

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
	if c.deadline {
		_ = c.rwc.SetReadDeadline(time.Time{})
	}
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
	c.reqSeq++
	c.bodyDone = req.Body == http.NoBody
	c.cancel = cancel
	c.watch = watchNone
	c.watchMu.Unlock()
	c.watchTimer.Reset(c.srv.watchAfter())

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

// watchTimeout runs when a request has been served for WatchAfter.
func (c *conn) watchTimeout() {
	c.watchMu.Lock()
	seq := c.reqSeq
	c.watchMu.Unlock()
	c.startWatch(seq)
}

// startWatch starts watching the connection for request seq if it is
// still the current one.
func (c *conn) startWatch(seq uint64) {
	c.watchMu.Lock()
	defer c.watchMu.Unlock()
	if seq != c.reqSeq {
		return
	}
	if c.watch != watchNone {
		return
	}
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
	if c.deadline {
		_ = c.rwc.SetReadDeadline(time.Time{})
		c.deadline = false
	}
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
	c.watchTimer.Stop()
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
