package evloop

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drover-pool/drover/internal/pool"
)

// Buffer sizes: a client's request (head and body) must fit in inSize to
// be served by a loop; an instance's response head in upSize.
const (
	inSize  = 8 << 10
	upSize  = 32 << 10
	outSize = upSize + 64 // a read of upSize bytes, framed as a chunk
)

// Reserved event ids; connections count up from firstID.
const (
	idListener int32 = 1
	idWake     int32 = 2
	firstID    int32 = 3
)

// eventMask is what every connection is registered for, once: edge
// triggered, so a loop reads and writes until the kernel says EAGAIN (or
// a read comes back short) and is told again only of new readiness.
const eventMask = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// loop is one event loop. Everything in it is owned by its goroutine.
type loop struct {
	s    *Server
	ep   int
	wake int // an eventfd: the Server's state changed
	lfd  int // -1 once the loop no longer accepts

	// The registered descriptors by event id. Ids are never reused, so an
	// event still queued for a descriptor closed earlier in the same
	// batch finds nothing.
	owners map[int32]owner
	nextID int32
	conns  map[*conn]struct{}
	insts  map[*pool.Instance]*instConns

	now          time.Time
	nextSweep    time.Time // no deadline falls before this
	acceptResume time.Time // when accepting paused after an error: when it resumes
	date         dateCache
	events       []unix.EpollEvent

	inBufs, upBufs, outBufs [][]byte // free buffers

	// Waits for a slot: each has a goroutine (counted in waiters) that
	// posts its outcome to mailbox and wakes the loop.
	waitSeq uint64
	waiters sync.WaitGroup
	mailMu  sync.Mutex
	mailbox []waitResult
}

// post hands the outcome of a wait to the loop. Any goroutine.
func (l *loop) post(r waitResult) {
	l.mailMu.Lock()
	l.mailbox = append(l.mailbox, r)
	l.mailMu.Unlock()
	l.wakeUp()
}

// readMail delivers the outcomes of waits.
func (l *loop) readMail() {
	l.mailMu.Lock()
	mail := l.mailbox
	l.mailbox = nil
	l.mailMu.Unlock()
	for _, r := range mail {
		l.delivered(r)
	}
}

// owner is a connection's side of the loop: a client or an upstream.
type owner interface {
	event(ev uint32)
}

// instConns are a loop's connections to one instance.
type instConns struct {
	sa   unix.Sockaddr
	idle []*upconn // most recently used last
	open int       // idle or in use
}

func newLoop(s *Server, lfd int) (*loop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("evloop: epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("evloop: eventfd: %w", err)
	}
	l := &loop{s: s, ep: ep, wake: wake, lfd: lfd, owners: map[int32]owner{}, nextID: firstID,
		conns: map[*conn]struct{}{}, insts: map[*pool.Instance]*instConns{}, events: make([]unix.EpollEvent, 128)}
	// EPOLLEXCLUSIVE: a new connection wakes one loop, not all of them.
	err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: idListener})
	if err == nil {
		err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: idWake})
	}
	if err != nil {
		unix.Close(ep)
		unix.Close(wake)
		return nil, fmt.Errorf("evloop: epoll_ctl: %w", err)
	}
	return l, nil
}

// wakeUp makes the loop look at the Server's state. Any goroutine.
func (l *loop) wakeUp() {
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], 1)
	_, _ = unix.Write(l.wake, b[:])
}

// run is the loop's goroutine. It returns when the Server is closing, or
// draining and the loop has no connections left.
func (l *loop) run() {
	// The loop blocks its thread in epoll_wait; locking keeps other
	// goroutines from being scheduled onto a thread that is about to.
	runtime.LockOSThread()
	defer l.end()
	l.now = time.Now()
	l.nextSweep = l.now.Add(time.Hour)
	for {
		if st := l.s.state.Load(); st != running {
			if l.stopping(st) {
				return
			}
		}
		n, err := unix.EpollWait(l.ep, l.events, l.waitMillis())
		l.now = time.Now()
		if err != nil && err != unix.EINTR {
			l.s.logger().Error("event loop stopped", "err", err)
			return
		}
		for i := range max(n, 0) {
			ev := &l.events[i]
			switch ev.Fd {
			case idListener:
				l.accept()
			case idWake:
				var b [8]byte
				_, _ = unix.Read(l.wake, b[:])
				l.readMail()
			default:
				if o := l.owners[ev.Fd]; o != nil {
					o.event(ev.Events)
				}
			}
		}
		if !l.now.Before(l.nextSweep) {
			l.sweep()
		}
	}
}

// waitMillis is epoll_wait's timeout: until the next deadline.
func (l *loop) waitMillis() int {
	d := l.nextSweep.Sub(l.now)
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// stopping acts on a draining or closing Server and reports whether the
// loop is done.
func (l *loop) stopping(st int32) bool {
	if l.lfd >= 0 {
		_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.lfd, nil)
		l.lfd = -1
		l.s.lfdRefs.Done()
	}
	for c := range l.conns {
		if st == closing {
			c.close()
			continue
		}
		c.closeAfter = true
		if c.x == nil && c.n == 0 {
			c.close() // idle: nothing to finish
		}
	}
	return len(l.conns) == 0
}

// end releases what the loop still holds.
func (l *loop) end() {
	if l.lfd >= 0 {
		l.lfd = -1
		l.s.lfdRefs.Done()
	}
	for c := range l.conns {
		c.close() // cancels waits
	}
	// The waiting goroutines end promptly once canceled; a slot one got
	// meanwhile goes back.
	l.waiters.Wait()
	l.readMail()
	for _, ic := range l.insts {
		for _, u := range ic.idle {
			u.closeFD()
		}
	}
	l.insts = nil
	unix.Close(l.ep)
	// The eventfd is the Server's to close, once no one can wake the
	// loop any more.
}

// accept takes the connections waiting on the listener.
func (l *loop) accept() {
	for range 64 {
		fd, sa, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			switch err {
			case unix.EAGAIN, unix.EINTR, unix.ECONNABORTED:
			default:
				// Out of descriptors, most likely. The listener
				// would wake the loop again at once: stop
				// watching it for a moment (sweep resumes).
				l.s.logger().Warn("accept failed; pausing", "err", err, "delay", acceptPause)
				_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, l.lfd, nil)
				l.acceptResume = l.now.Add(acceptPause)
				l.deadline(l.acceptResume)
			}
			return
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &conn{l: l, fd: fd}
		c.remote, c.ip = addrStrings(sa)
		c.id = l.register(fd, c)
		if c.id == 0 {
			unix.Close(fd)
			continue
		}
		l.conns[c] = struct{}{}
		c.setDeadline(l.s.HeaderTimeout) // for the first request, as h1
	}
}

// register adds fd to the loop's epoll under a new id; 0 on failure.
func (l *loop) register(fd int, o owner) int32 {
	id := l.nextID
	if l.nextID++; l.nextID <= 0 {
		l.nextID = firstID // after 2^31 connections; the old ones are long gone
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: eventMask, Fd: id}); err != nil {
		l.s.logger().Warn("epoll_ctl failed", "err", err)
		return 0
	}
	l.owners[id] = o
	return id
}

// unregister takes fd out of the loop (before it is closed or handed on).
func (l *loop) unregister(fd int, id int32) {
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, fd, nil)
	delete(l.owners, id)
}

// deadline notes a deadline, so that epoll_wait returns for it.
func (l *loop) deadline(t time.Time) {
	if t.Before(l.nextSweep) {
		l.nextSweep = t
	}
}

// acceptPause is how long a loop stops accepting after accept failed.
const acceptPause = 100 * time.Millisecond

// sweep acts on the deadlines that have passed and finds the next one.
func (l *loop) sweep() {
	next := l.now.Add(time.Hour)
	if !l.acceptResume.IsZero() {
		if l.now.Before(l.acceptResume) {
			next = l.acceptResume
		} else {
			l.acceptResume = time.Time{}
			if l.lfd >= 0 {
				_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, l.lfd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: idListener})
			}
		}
	}
	for c := range l.conns {
		if c.deadline.IsZero() {
			continue
		}
		if !l.now.Before(c.deadline) {
			c.expire()
			if c.fd < 0 || c.deadline.IsZero() {
				continue
			}
		}
		if c.deadline.Before(next) {
			next = c.deadline
		}
	}
	keep := l.s.upstreamIdle()
	for inst, ic := range l.insts {
		k := 0
		for _, u := range ic.idle {
			if l.now.Sub(u.idleSince) >= keep {
				u.closeFD()
				ic.open--
				continue
			}
			if t := u.idleSince.Add(keep); t.Before(next) {
				next = t
			}
			ic.idle[k] = u
			k++
		}
		clear(ic.idle[k:])
		ic.idle = ic.idle[:k]
		if ic.open == 0 {
			delete(l.insts, inst)
		}
	}
	// At most a hundred sweeps a second, however close the deadlines.
	if floor := l.now.Add(10 * time.Millisecond); next.Before(floor) {
		next = floor
	}
	l.nextSweep = next
}

// Buffers, from the loop's free lists.
func (l *loop) getBuf(free *[][]byte, size int) []byte {
	if n := len(*free); n > 0 {
		b := (*free)[n-1]
		(*free)[n-1] = nil
		*free = (*free)[:n-1]
		return b
	}
	return make([]byte, size)
}

func (l *loop) putBuf(free *[][]byte, b []byte) {
	if b != nil && len(*free) < 64 {
		*free = append(*free, b[:cap(b)])
	}
}

// addrStrings returns a peer's "ip:port" and its ip.
func addrStrings(sa unix.Sockaddr) (string, string) {
	var ap netip.AddrPort
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		ap = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		ap = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	default:
		return "", ""
	}
	return ap.String(), ap.Addr().String()
}
