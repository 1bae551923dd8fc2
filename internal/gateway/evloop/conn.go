package evloop

import (
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// conn is one client connection served by a loop.
type conn struct {
	l      *loop
	fd     int // -1 once closed or handed over
	id     int32
	remote string // "ip:port"
	ip     string

	in []byte // the bytes read and not yet served; nil while there are none
	n  int    // in[:n] holds them

	readable   bool // the kernel may have bytes for us (edge triggered)
	writable   bool
	rdhup      bool // EPOLLRDHUP came: read on until the end of the stream
	peerClosed bool // a read found the end of the stream: no more requests
	closeAfter bool // close once the current request is answered
	served     bool // a request was answered: the idle timeout applies
	headStart  time.Time
	deadline   time.Time // idle, head or request timeout; zero: none

	x    *Exchange // the request being served: nil or &xs
	xs   Exchange
	head reqHead  // its parsed head (large, so kept with the connection)
	resp respHead // its response's head
}

func (c *conn) event(ev uint32) {
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		c.gone()
		return
	}
	if ev&unix.EPOLLOUT != 0 {
		c.writable = true
		if c.x != nil && len(c.x.pend) > 0 {
			c.x.flush()
			if c.fd < 0 {
				return
			}
		}
	}
	if ev&unix.EPOLLIN != 0 {
		c.readable = true
	}
	if ev&unix.EPOLLRDHUP != 0 {
		c.rdhup, c.readable = true, true
		// (Edge triggered, EPOLLRDHUP comes again with every later
		// edge: an answer being written is not cut for it.)
		if c.x != nil && c.x.phase != xAnswer && c.x.inst != nil && c.hangup() {
			return
		}
		if c.x != nil && c.x.cancelWait != nil && c.hangup() {
			return
		}
	}
	if c.x == nil {
		c.serve()
	}
}

// hangupGrace is how long a request whose client has sent its FIN (shut
// down its side, or closed) is still served: as h1's WatchAfter, so a
// client that half-closes after its request (printf ... | nc -N) gets a
// quick answer, and one that hung up frees its slot within moments.
var hangupGrace = 10 * time.Millisecond // a variable for tests

// hangup acts on the client's FIN while a request is out: it abandons the
// exchange once the grace is over (reporting true), or sets the deadline
// at which it will be.
func (c *conn) hangup() bool {
	end := c.x.start.Add(hangupGrace)
	if !c.l.now.Before(end) {
		c.gone()
		return true
	}
	if c.deadline.IsZero() || end.Before(c.deadline) {
		c.deadline = end
		c.l.deadline(end)
	}
	return false
}

// gone is the client's hang-up or a socket error.
func (c *conn) gone() {
	if c.x != nil {
		c.x.clientGone()
	}
	c.close()
}

// serve reads what the client sent and serves the requests it holds, until
// a request goes upstream or nothing complete is left.
func (c *conn) serve() {
	for c.fd >= 0 && c.x == nil {
		if c.readable && !c.peerClosed {
			if c.in == nil {
				c.in = c.l.getBuf(&c.l.inBufs, inSize)
			}
			if c.n == len(c.in) {
				c.handoff() // a head or body larger than the buffer
				return
			}
			m, err := unix.Read(c.fd, c.in[c.n:])
			switch {
			case err == unix.EAGAIN:
				c.readable = false
			case err == unix.EINTR:
				continue
			case err != nil || m == 0:
				c.readable, c.peerClosed = false, true
			default:
				if c.n == 0 {
					c.headStart = c.l.now
				}
				c.n += m
				if c.n < len(c.in) && !c.rdhup {
					// A short read drained the socket. (Not so
					// after EPOLLRDHUP: the end of the stream
					// may be waiting behind the data, and no
					// further edge would tell of it.)
					c.readable = false
				}
			}
		}
		if c.n == 0 {
			if c.peerClosed || c.closeAfter {
				c.close()
				return
			}
			c.l.putBuf(&c.l.inBufs, c.in)
			c.in = nil
			if c.served {
				// (Before the first request, accept's header
				// timeout stands.)
				c.setDeadline(c.l.s.IdleTimeout)
			}
			return
		}
		switch c.next() {
		case headMore:
			if c.readable && !c.peerClosed {
				continue
			}
			if c.peerClosed {
				c.close() // a partial request and nobody to answer
				return
			}
			if c.n == len(c.in) {
				c.handoff()
				return
			}
			c.setDeadlineFrom(c.headStart, c.l.s.HeaderTimeout)
			return
		case headHandoff:
			c.handoff()
			return
		}
		// headOK: an exchange started (or was answered at once); it
		// calls serve again when it is done.
		return
	}
}

// next parses the request at the start of the buffer and starts serving
// it: headOK when it did.
func (c *conn) next() int {
	b := c.in[:c.n]
	h := &c.head
	if st := parseRequest(b, h); st != headOK {
		return st
	}
	if int64(len(c.in)-h.headLen) < h.bodyLen {
		return headHandoff
	}
	if int64(c.n-h.headLen) < h.bodyLen {
		return headMore
	}
	path := unsafeString(b[h.target:h.pathEnd])
	if path == "/healthz" || path == "/readyz" {
		return headHandoff
	}
	hl := &h.lines[h.host]
	t, strip := c.l.s.Route(unsafeString(b[hl.val:hl.valEnd]), path)
	if t == nil {
		return headHandoff
	}
	var newPath []byte
	if strip = strings.TrimSuffix(strip, "/"); strip != "" {
		newPath = b[h.target+len(strip) : h.pathEnd]
		if len(newPath) == 0 || newPath[0] != '/' {
			newPath = append([]byte{'/'}, newPath...)
		}
	}
	if h.closeAfter {
		c.closeAfter = true
	}
	c.deadline = time.Time{}
	startExchange(c, t, newPath)
	return headOK
}

// done is called by the exchange when the response has been written:
// the request's bytes are dropped and the next one, if any, served.
func (c *conn) done(reqLen int) {
	c.x = nil
	c.served = true
	if c.closeAfter || c.l.s.state.Load() != running {
		c.close()
		return
	}
	copy(c.in, c.in[reqLen:c.n])
	c.n -= reqLen
	c.headStart = c.l.now
	c.serve()
}

// setDeadline sets the connection's deadline d from now (none if d is 0).
func (c *conn) setDeadline(d time.Duration) { c.setDeadlineFrom(c.l.now, d) }

func (c *conn) setDeadlineFrom(t time.Time, d time.Duration) {
	if d <= 0 {
		c.deadline = time.Time{}
		return
	}
	c.deadline = t.Add(d)
	c.l.deadline(c.deadline)
}

// expire acts on a passed deadline.
func (c *conn) expire() {
	if c.x != nil {
		if c.rdhup && c.x.phase != xAnswer {
			c.gone() // the hang-up's grace is over
			return
		}
		c.x.timeout()
		return
	}
	c.close() // idle or slow head: nobody to answer (as h1)
}

// handoff passes the connection, with the bytes read from it, to the h1
// server. It leaves the loop for good.
func (c *conn) handoff() {
	l := c.l
	l.unregister(c.fd, c.id)
	delete(l.conns, c)
	replay := append([]byte(nil), c.in[:c.n]...)
	l.putBuf(&l.inBufs, c.in)
	c.in, c.n = nil, 0
	fd := c.fd
	c.fd = -1
	f := os.NewFile(uintptr(fd), "client")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		l.s.logger().Warn("hand connection over", "client", c.remote, "err", err)
		return
	}
	l.s.Handoff(&replayConn{Conn: nc, buf: replay})
}

// close closes the connection, abandoning its exchange if any.
func (c *conn) close() {
	if c.fd < 0 {
		return
	}
	if c.x != nil {
		c.x.clientGone()
	}
	l := c.l
	l.unregister(c.fd, c.id)
	delete(l.conns, c)
	unix.Close(c.fd)
	c.fd = -1
	l.putBuf(&l.inBufs, c.in)
	c.in, c.n = nil, 0
}

// write writes b to the client and returns how much went; the rest waits
// for EPOLLOUT. ok is false when the connection broke.
func (c *conn) write(b []byte) (n int, ok bool) {
	for n < len(b) {
		if !c.writable {
			return n, true
		}
		m, err := unix.Write(c.fd, b[n:])
		switch {
		case err == unix.EAGAIN:
			c.writable = false
		case err == unix.EINTR:
		case err != nil:
			return n, false
		default:
			n += m
		}
	}
	return n, true
}

// replayConn is a handed-over connection: reads return the bytes the loop
// had read first.
type replayConn struct {
	net.Conn
	buf []byte
}

func (r *replayConn) Read(p []byte) (int, error) {
	if len(r.buf) > 0 {
		n := copy(p, r.buf)
		r.buf = r.buf[n:]
		return n, nil
	}
	return r.Conn.Read(p)
}

// SetLinger lets drover's on_stopped = "reset" reset the connection.
func (r *replayConn) SetLinger(sec int) error {
	if tc, ok := r.Conn.(*net.TCPConn); ok {
		return tc.SetLinger(sec)
	}
	return nil
}

// CloseWrite half-closes the connection (h1 does before it closes).
func (r *replayConn) CloseWrite() error {
	if tc, ok := r.Conn.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return nil
}
