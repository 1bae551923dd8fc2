package evloop

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/pool"
)

// Exchange is one request a loop serves, as Hooks and Server.Log see it.
// Its strings are views of the loop's buffers: they are valid only during
// the call they are given to, except RemoteAddr's.
type Exchange struct {
	// Token is the Hooks' own, from Begin to End.
	Token any

	c      *conn
	t      *Target
	inst   *pool.Instance
	up     *upconn
	start  time.Time
	reqLen int // the request's bytes in the client buffer

	req  []byte // the request for the instance (in out)
	sent int
	ubuf []byte // the instance's response as read
	un   int
	out  []byte // what the loop builds: the request, then the client's bytes
	pend []byte // bytes for the client not yet written

	phase         int
	remain        int64 // of a Content-Length body
	chunks        chunkScanner
	status        int   // the answer's status; 0 until there is one
	bytes         int64 // body bytes passed to the client
	wrote         bool  // some of the answer is with the client, or pending
	bodyDone      bool  // the answer is complete once pend is written
	reusable      bool  // the upstream connection can serve another request
	freshTried    bool  // a reused upstream connection failed; a new one was tried
	retried       bool  // the retry rule was used
	informational int   // 1xx heads skipped

	waitID     uint64             // of the current wait for a slot
	cancelWait context.CancelFunc // set while waiting
	waitStart  time.Time
	waited     time.Duration // in the pool's queue
	begun      bool          // Hooks.Begin was called and End not yet
}

// Exchange phases.
const (
	xConnect = iota // the upstream connection is being made
	xSend           // the request is being written
	xHead           // the response head is awaited
	xBody           // the response body is being passed on
	xAnswer         // drover's own answer is being written
)

var errUpstreamClosed = errors.New("instance closed the connection")

// startExchange serves the request at the start of c's buffer: on an
// instance with a free slot now, or after waiting in the pool's queue.
func startExchange(c *conn, t *Target, path []byte) {
	l := c.l
	c.x = &c.xs
	x := c.x
	*x = Exchange{c: c, t: t, start: l.now, reqLen: c.head.headLen + int(c.head.bodyLen)}
	x.out = l.getBuf(&l.outBufs, outSize)
	x.req = c.head.appendUpstream(x.out[:0], c.in[:c.n], path, c.ip)
	if x.inst = t.Pool.TryAcquire(); x.inst != nil {
		x.begin() // after the slot: the registry shows the pid
		x.use(x.inst)
		return
	}
	x.begin()
	x.wait()
}

// use starts the exchange on inst, whose slot it holds.
func (x *Exchange) use(inst *pool.Instance) {
	x.inst = inst
	x.un, x.freshTried = 0, false
	if x.t.Timeout > 0 {
		x.c.setDeadline(x.t.Timeout) // from the slot on, as on the h1 path
	}
	if x.c.rdhup && x.c.hangup() {
		return // the client's FIN came with the request or before, long enough ago
	}
	x.connect(false)
}

// wait queues the exchange for a slot. The pool's queue is FIFO and
// blocking, so a goroutine of the loop's waits in it and posts the
// outcome to the loop (see loop.delivered); the loop cancels the wait if
// the client goes first.
func (x *Exchange) wait() {
	l := x.c.l
	if x.c.rdhup && x.c.hangup() {
		return
	}
	l.waitSeq++
	x.waitID = l.waitSeq
	ctx, cancel := context.WithCancel(context.Background())
	x.cancelWait = cancel
	x.waitStart = l.now
	p, id := x.t.Pool, x.waitID
	l.waiters.Add(1)
	go func() {
		defer l.waiters.Done()
		inst, err := p.Acquire(ctx)
		l.post(waitResult{x: x, id: id, inst: inst, err: err})
	}()
}

// waitResult is what a wait for a slot came to.
type waitResult struct {
	x    *Exchange
	id   uint64
	inst *pool.Instance
	err  error
}

// delivered continues the exchange whose wait ended with r; a wait its
// exchange gave up on (the client went away) hands the slot back.
func (l *loop) delivered(r waitResult) {
	x := r.x
	if x.waitID != r.id || x.cancelWait == nil || x.c.x != x {
		if r.inst != nil {
			r.x.t.Pool.Release(r.inst)
		}
		return
	}
	x.cancelWait()
	x.cancelWait = nil
	x.waited += l.now.Sub(x.waitStart)
	if r.err == nil {
		// The registry shows the instance from now on.
		x.end()
		x.begin()
		x.use(r.inst)
		return
	}
	switch {
	case errors.Is(r.err, pool.ErrQueueFull):
		x.answer(http.StatusServiceUnavailable, "queue-full", 1)
	case errors.Is(r.err, pool.ErrWaitTimeout):
		x.answer(http.StatusServiceUnavailable, "wait-timeout", 1)
	case errors.Is(r.err, pool.ErrStopped) && x.t.ResetOnStop:
		// on_stopped = "reset": an RST, so a TCP balancer fails over.
		_ = unix.SetsockoptLinger(x.c.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		x.status = 499
		x.c.gone()
	case errors.Is(r.err, pool.ErrStopped):
		x.answer(http.StatusServiceUnavailable, "pool-stopped", 0)
	default:
		l.s.logger().Warn("bad gateway", "pool", x.t.Pool.Name(), "err", r.err)
		x.answer(http.StatusBadGateway, "bad-gateway", 0)
	}
}

func (x *Exchange) begin() {
	if x.t.Hooks != nil {
		x.begun = true
		x.t.Hooks.Begin(x)
	}
}

// end reports the exchange to the Hooks and the log.
func (x *Exchange) end() {
	if x.begun {
		x.begun = false
		x.t.Hooks.End(x)
	}
	if x.status != 0 && x.c.l.s.Log != nil {
		x.c.l.s.Log(x)
	}
}

// connect gets a connection to the instance, a kept-alive one unless
// fresh, and sends the request on it.
func (x *Exchange) connect(fresh bool) {
	u, err := x.c.l.upconn(x.inst, fresh, !x.idempotent())
	if err != nil {
		var local errLocal
		x.upFailed(err, !errors.As(err, &local))
		return
	}
	x.up, u.x = u, x
	x.sent = 0
	if u.connecting {
		x.phase = xConnect
		return
	}
	x.phase = xSend
	x.send()
}

// upEvent continues the exchange when its upstream connection is ready.
func (x *Exchange) upEvent() {
	u := x.up
	switch x.phase {
	case xConnect:
		if !u.writable && !u.readable {
			return
		}
		errno, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && errno != 0 {
			err = unix.Errno(errno)
		}
		if err != nil {
			x.upFailed(fmt.Errorf("connect: %w", err), true)
			return
		}
		u.connecting = false
		x.phase = xSend
		x.send()
	case xSend:
		x.send()
	case xHead, xBody:
		if len(x.pend) == 0 {
			x.readUp()
		}
	}
}

// send writes the request to the instance.
func (x *Exchange) send() {
	u := x.up
	for x.sent < len(x.req) {
		if !u.writable {
			return
		}
		m, err := unix.Write(u.fd, x.req[x.sent:])
		switch {
		case err == unix.EAGAIN:
			u.writable = false
		case err == unix.EINTR:
		case err != nil:
			x.upFailed(fmt.Errorf("write request: %w", err), false)
			return
		default:
			x.sent += m
		}
	}
	x.phase = xHead
	if x.ubuf == nil {
		x.ubuf = x.c.l.getBuf(&x.c.l.upBufs, upSize)
	}
	x.un = 0
	x.readUp()
}

// readUp reads the instance's response and passes it on, until the
// kernel has nothing more or the client cannot take more yet.
func (x *Exchange) readUp() {
	u, c := x.up, x.c
	for u.readable {
		if x.un == len(x.ubuf) {
			x.upFailed(errLimit("head larger than "+strconv.Itoa(upSize)+" bytes"), false)
			return
		}
		m, err := unix.Read(u.fd, x.ubuf[x.un:])
		switch {
		case err == unix.EAGAIN:
			u.readable = false
			return
		case err == unix.EINTR:
			continue
		case err != nil || m == 0:
			u.readable = false
			if err == nil {
				err = errUpstreamClosed
			}
			x.upEOF(err)
			return
		}
		if x.un+m < len(x.ubuf) && !u.rdhup {
			u.readable = false // a short read drained the socket (see conn.serve)
		}
		x.un += m
		if x.phase == xHead {
			if !x.gotHead() {
				if x.phase == xHead && c.x == x && x.up == u {
					continue // more of the head to come
				}
				return
			}
		} else {
			x.relay(x.ubuf[:x.un], false)
		}
		if !x.flushed() {
			return
		}
	}
}

// gotHead parses the response head and, once it is all there, starts
// the client's answer. false: wait for more (or the exchange failed).
func (x *Exchange) gotHead() bool {
	c := x.c
	r := &c.resp
	for {
		more, err := parseResponse(x.ubuf[:x.un], string(c.in[:c.head.methodEnd]) == "HEAD", r)
		if err != nil {
			x.upFailed(err, false)
			return false
		}
		if more {
			return false
		}
		if r.status >= 200 {
			break
		}
		if r.status == http.StatusSwitchingProtocols {
			x.upFailed(errResponse("101 Switching Protocols to a request without Upgrade"), false)
			return false
		}
		// 100 Continue, 103 Early Hints: not passed on.
		if x.informational++; x.informational > 8 {
			x.upFailed(errResponse("more than 8 informational responses"), false)
			return false
		}
		copy(x.ubuf, x.ubuf[r.headLen:x.un])
		x.un -= r.headLen
	}
	x.status = r.status
	x.reusable = r.keep
	x.phase = xBody
	x.remain = r.length
	x.chunks = chunkScanner{}
	closeAfter := c.closeAfter || c.l.s.state.Load() != running
	x.out = r.appendClient(x.out[:0], x.ubuf, closeAfter, c.l.date.get(c.l.now))
	x.wrote = true
	x.relay(x.ubuf[r.headLen:x.un], true)
	return true
}

// relay frames a piece of the body for the client into pend: appended to
// out after the head when more is set, else (when it can be) as it is.
func (x *Exchange) relay(p []byte, more bool) {
	r := &x.c.resp
	x.un = 0
	emit := func(b []byte) {
		if more {
			x.out = append(x.out, b...)
			x.pend = x.out
		} else {
			x.pend = b
		}
	}
	switch r.framing {
	case frameNone:
		if len(p) > 0 {
			x.reusable = false
		}
		x.bodyDone = true
		emit(nil)
	case frameLength:
		n := int64(len(p))
		if n > x.remain {
			n = x.remain
			x.reusable = false
		}
		x.remain -= n
		x.bytes += n
		x.bodyDone = x.remain == 0
		emit(p[:n])
	case frameChunked:
		n, done, err := x.chunks.scan(p)
		if err != nil {
			x.broken(err)
			return
		}
		if n < len(p) {
			x.reusable = false
		}
		x.bytes += int64(n)
		x.bodyDone = done
		emit(p[:n])
	case frameClose:
		if !more {
			x.out = x.out[:0]
		}
		if len(p) > 0 {
			x.out = strconv.AppendInt(x.out, int64(len(p)), 16)
			x.out = append(x.out, "\r\n"...)
			x.out = append(x.out, p...)
			x.out = append(x.out, "\r\n"...)
			x.bytes += int64(len(p))
		}
		x.pend = x.out
	}
	if x.bodyDone && x.c.l.s.state.Load() != running {
		x.c.closeAfter = true
	}
}

// upEOF is the end of the instance's side: the end of a body that runs
// until the close, or a failure.
func (x *Exchange) upEOF(err error) {
	if x.phase == xHead {
		x.upFailed(fmt.Errorf("read response: %w", err), false)
		return
	}
	if x.c.resp.framing != frameClose || err != errUpstreamClosed {
		x.broken(err) // a reset is not the end of the body
		return
	}
	x.up.close()
	x.up = nil
	x.out = append(x.out[:0], "0\r\n\r\n"...)
	x.pend = x.out
	x.bodyDone = true
	x.flushed()
}

// flushed writes pend to the client and reports whether it all went and
// the exchange goes on; a complete answer finishes it.
func (x *Exchange) flushed() bool {
	c := x.c
	if c.fd < 0 || c.x != x {
		return false // the exchange ended on the way here
	}
	if len(x.pend) > 0 {
		n, ok := c.write(x.pend)
		if !ok {
			c.gone()
			return false
		}
		x.pend = x.pend[n:]
		if len(x.pend) > 0 {
			if x.bodyDone && x.inst != nil {
				x.letGo()
			}
			return false // EPOLLOUT continues
		}
	}
	if x.bodyDone {
		x.finish()
		return false
	}
	return true
}

// letGo gives back the instance's slot and connection once it has sent
// all of its answer, while a slow client still takes the rest: its slot
// is not the client's to hold, nor is request_timeout.
func (x *Exchange) letGo() {
	c := x.c
	if u := x.up; u != nil {
		x.up = nil
		// Not a connection the instance is closing, or that holds
		// bytes nobody asked for.
		if x.reusable && !u.rdhup && !u.readable && c.l.s.state.Load() == running {
			u.park()
		} else {
			u.close()
		}
	}
	if x.inst != nil {
		x.t.Pool.Release(x.inst)
		x.inst = nil
	}
	c.setDeadline(answerTimeout)
}

// flush continues after the client became writable.
func (x *Exchange) flush() {
	if x.flushed() && x.up != nil {
		x.readUp()
	}
}

// finish ends a complete exchange and lets the connection go on.
func (x *Exchange) finish() {
	c := x.c
	if x.inst != nil || x.up != nil {
		x.letGo()
	}
	x.end()
	x.release()
	c.done(x.reqLen)
}

// release gives the exchange's buffers back.
func (x *Exchange) release() {
	l := x.c.l
	l.putBuf(&l.upBufs, x.ubuf)
	l.putBuf(&l.outBufs, x.out)
	x.ubuf, x.out, x.req, x.pend = nil, nil, nil, nil
}

// clientGone abandons the exchange: the client hung up, or the loop is
// closing. The connection is closed by the caller.
func (x *Exchange) clientGone() {
	c := x.c
	if x.cancelWait != nil {
		x.cancelWait() // the waiting goroutine's slot, if any, comes back to delivered
		x.cancelWait = nil
	}
	if x.up != nil {
		x.up.close()
		x.up = nil
	}
	if x.inst != nil {
		x.t.Pool.Release(x.inst)
		x.inst = nil
	}
	if !x.wrote && x.status == 0 {
		x.status = 499 // what nginx logs for a client that went away
	}
	x.end()
	x.release()
	c.x = nil
}

// broken ends an exchange whose response was cut short after the client
// got part of it: only closing tells the client.
func (x *Exchange) broken(err error) {
	c := x.c
	c.l.s.logger().Warn("response cut short", "pool", x.t.Pool.Name(), "pid", x.inst.Pid(), "err", err)
	c.gone()
}

// timeout acts on request_timeout: the instance is killed with its
// process group, and the client answered 504 if it has nothing yet.
func (x *Exchange) timeout() {
	if x.inst == nil {
		x.c.gone()
		return
	}
	x.t.Pool.Fail(x.inst, events.TimeoutKill, "request ran past request_timeout "+x.t.Timeout.String())
	if x.up != nil {
		x.up.close()
		x.up = nil
	}
	x.t.Pool.Release(x.inst)
	x.inst = nil
	if x.wrote {
		x.c.gone()
		return
	}
	x.answer(http.StatusGatewayTimeout, "request-timeout", 0)
}

// upFailed handles an instance that broke the exchange before the client
// got anything: once more on a new connection if a kept-alive one had
// been closed under it; then the retry rule (once on another instance
// when nothing was sent, or for an idempotent request without a body);
// else 502.
func (x *Exchange) upFailed(err error, dial bool) {
	c := x.c
	reused := false
	if u := x.up; u != nil {
		reused = u.reused
		u.close()
		x.up = nil
	}
	nothingRead := x.phase != xBody && x.un == 0
	idempotent := x.idempotent()
	if reused && !x.freshTried && nothingRead && (idempotent || x.sent == 0) {
		x.freshTried = true
		x.connect(true)
		return
	}
	p := x.t.Pool
	var limit errLimit
	var local errLocal
	if errors.As(err, &limit) || errors.As(err, &local) {
		// The instance did nothing wrong: the loop cannot pass its
		// answer on, or could not reach it for a reason of its own.
		p.Release(x.inst)
		x.inst = nil
		c.l.s.logger().Warn("bad gateway", "pool", p.Name(), "err", err)
		x.answer(http.StatusBadGateway, "bad-gateway", 0)
		return
	}
	p.Fail(x.inst, events.Crash, "bad gateway: "+err.Error())
	p.Release(x.inst)
	x.inst = nil
	if !x.retried && (dial || idempotent && c.head.bodyLen == 0) {
		x.retried = true
		x.end() // status 0: not finished
		c.deadline = time.Time{}
		if x.inst = p.TryAcquire(); x.inst != nil {
			x.begin()
			x.use(x.inst) // each attempt has its own request_timeout
			return
		}
		x.begin()
		x.wait()
		return
	}
	c.l.s.logger().Warn("bad gateway", "pool", p.Name(), "err", err)
	x.answer(http.StatusBadGateway, "bad-gateway", 0)
}

func (x *Exchange) idempotent() bool {
	switch string(x.c.in[:x.c.head.methodEnd]) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// answerTimeout bounds the writing of drover's own answers.
const answerTimeout = 30 * time.Second

// answer sends one of drover's own small answers (as gateway.answer).
func (x *Exchange) answer(status int, reason string, retryAfter int) {
	c := x.c
	body := strconv.Itoa(status) + " " + http.StatusText(status) + ": " + reason + "\n"
	b := x.out[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\nDrover-Error: "...)
	b = append(b, reason...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nDate: "...)
	b = append(b, c.l.date.get(c.l.now)...)
	if retryAfter > 0 {
		b = append(b, "\r\nRetry-After: "...)
		b = strconv.AppendInt(b, int64(retryAfter), 10)
	}
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	if c.closeAfter || c.l.s.state.Load() != running {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	x.out, x.pend = b, b
	x.status, x.bytes = status, int64(len(body))
	x.phase, x.wrote, x.bodyDone = xAnswer, true, true
	// A client that does not read its answer does not keep the
	// connection (nor Shutdown) waiting for ever.
	c.setDeadline(answerTimeout)
	x.flushed()
}

// Method returns the request's method.
func (x *Exchange) Method() string { return unsafeString(x.c.in[:x.c.head.methodEnd]) }

// RequestURI returns the request target as the client sent it.
func (x *Exchange) RequestURI() string {
	return unsafeString(x.c.in[x.c.head.target:x.c.head.targetEnd])
}

// Referer returns the Referer header's value, or "".
func (x *Exchange) Referer() string { return x.headerValue(x.c.head.ref) }

// UserAgent returns the User-Agent header's value, or "".
func (x *Exchange) UserAgent() string { return x.headerValue(x.c.head.ua) }

func (x *Exchange) headerValue(i int) string {
	if i < 0 {
		return ""
	}
	l := &x.c.head.lines[i]
	return unsafeString(x.c.in[l.val:l.valEnd])
}

// RemoteAddr returns the client's "ip:port". It may be kept.
func (x *Exchange) RemoteAddr() string { return x.c.remote }

// Start returns when the exchange began.
func (x *Exchange) Start() time.Time { return x.start }

// Now returns the loop's clock: the time of the event being handled.
func (x *Exchange) Now() time.Time { return x.c.l.now }

// Status returns the answer's status: 0 for an exchange abandoned for a
// retry or the h1 path, 499 for a client that went away first.
func (x *Exchange) Status() int { return x.status }

// Waited returns how long the exchange waited in the pool's queue.
func (x *Exchange) Waited() time.Duration { return x.waited }

// BodyBytes returns how many body bytes the client was sent.
func (x *Exchange) BodyBytes() int64 { return x.bytes }

// Pid returns the pid of the instance serving the exchange (0 after it
// let go of it).
func (x *Exchange) Pid() int {
	if x.inst == nil {
		return 0
	}
	return x.inst.Pid()
}

// upconn is a loop's connection to an instance.
type upconn struct {
	l          *loop
	fd         int
	id         int32
	inst       *pool.Instance
	ic         *instConns
	x          *Exchange // nil while idle
	connecting bool
	readable   bool
	writable   bool
	rdhup      bool // EPOLLRDHUP came: read on until the end of the stream
	reused     bool
	idleSince  time.Time
}

func (u *upconn) event(ev uint32) {
	if u.x == nil {
		// Idle: the instance closed it or sent what nobody asked for.
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			u.l.dropIdle(u)
		}
		return
	}
	if ev&unix.EPOLLOUT != 0 {
		u.writable = true
	}
	if ev&unix.EPOLLRDHUP != 0 {
		u.rdhup = true
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		u.readable = true
		if u.connecting {
			u.writable = true // a failed connect: SO_ERROR says why
		}
	}
	u.x.upEvent()
}

// Addresser is what the loops need of an instance's endpoint: where it
// listens. backend's http kind implements it.
type Addresser interface {
	Addr() (network, address string)
}

// upconn returns a connection to inst: the most recently used idle one
// unless fresh, else a new one (which may still be connecting). probe is
// for a request that cannot be retried: a kept-alive connection is first
// checked for a close the loop has not heard of yet (one recv syscall).
func (l *loop) upconn(inst *pool.Instance, fresh, probe bool) (*upconn, error) {
	ic := l.insts[inst]
	if ic == nil {
		a, ok := inst.Endpoint().(Addresser)
		if !ok {
			return nil, errLocal{errors.New("instance has no address")}
		}
		sa, err := sockaddr(a.Addr())
		if err != nil {
			return nil, errLocal{err}
		}
		ic = &instConns{sa: sa}
		l.insts[inst] = ic
	}
	keep := l.s.upstreamIdle()
	for !fresh && len(ic.idle) > 0 {
		n := len(ic.idle)
		u := ic.idle[n-1]
		ic.idle[n-1] = nil
		ic.idle = ic.idle[:n-1]
		if l.now.Sub(u.idleSince) >= keep || probe && !alive(u.fd) {
			u.closeFD()
			ic.open--
			continue
		}
		u.reused, u.writable = true, true
		return u, nil
	}
	family := unix.AF_INET
	switch ic.sa.(type) {
	case *unix.SockaddrInet6:
		family = unix.AF_INET6
	case *unix.SockaddrUnix:
		family = unix.AF_UNIX
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, errLocal{fmt.Errorf("dial: socket: %w", err)}
	}
	u := &upconn{l: l, fd: fd, inst: inst, ic: ic}
	switch err := unix.Connect(fd, ic.sa); err {
	case nil:
		u.writable = true
	case unix.EINPROGRESS:
		u.connecting = true
	case unix.EAGAIN:
		// A unix socket whose listen backlog is full: the instance is
		// busy, not broken.
		unix.Close(fd)
		return nil, errLocal{errors.New("dial: the instance's listen backlog is full")}
	default:
		unix.Close(fd)
		return nil, fmt.Errorf("dial: %w", err)
	}
	if family != unix.AF_UNIX {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	if u.id = l.register(fd, u); u.id == 0 {
		unix.Close(fd)
		return nil, errLocal{errors.New("dial: epoll_ctl failed")}
	}
	ic.open++
	return u, nil
}

// errLocal is a failure to reach an instance that is not the instance's
// doing (out of descriptors, a full listen backlog): 502 without taking
// the instance out.
type errLocal struct{ err error }

func (e errLocal) Error() string { return "front end: " + e.err.Error() }
func (e errLocal) Unwrap() error { return e.err }

// alive reports whether an idle connection has neither data nor an end
// of stream waiting.
func alive(fd int) bool {
	var b [1]byte
	_, _, err := unix.Recvfrom(fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return err == unix.EAGAIN
}

func sockaddr(network, address string) (unix.Sockaddr, error) {
	if network == "unix" {
		return &unix.SockaddrUnix{Name: address}, nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("instance address %q: %w", address, err)
	}
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}, nil
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}, nil
}

// park keeps the connection for the next request to its instance.
func (u *upconn) park() {
	u.x = nil
	u.idleSince = u.l.now
	u.ic.idle = append(u.ic.idle, u)
	u.l.deadline(u.idleSince.Add(u.l.s.upstreamIdle()))
}

// close closes a connection in use.
func (u *upconn) close() {
	u.x = nil
	u.closeFD()
	u.ic.open--
	if u.ic.open == 0 {
		delete(u.l.insts, u.inst)
	}
}

// dropIdle closes an idle connection the instance has closed.
func (l *loop) dropIdle(u *upconn) {
	ic := u.ic
	for i, v := range ic.idle {
		if v == u {
			n := len(ic.idle) - 1
			copy(ic.idle[i:], ic.idle[i+1:])
			ic.idle[n] = nil
			ic.idle = ic.idle[:n]
			break
		}
	}
	u.close()
}

func (u *upconn) closeFD() {
	if u.fd < 0 {
		return
	}
	u.l.unregister(u.fd, u.id)
	unix.Close(u.fd)
	u.fd = -1
}
