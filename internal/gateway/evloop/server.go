// Package evloop serves the common HTTP/1.1 exchange of drover's front end
// on epoll event loops, much as nginx's workers do, and hands every other
// connection to the h1 server.
//
// A goroutine per connection costs a park and a wake-up on every read
// that finds nothing yet, and a scheduler pass for each of them; for a
// proxy whose instances answer in a few hundred microseconds that is most
// of its time. A loop instead owns many connections on one locked OS
// thread: it waits in epoll_wait, reads what is ready, and writes it on.
//
// The loops serve one shape of exchange, which is nearly all of the
// traffic of a pool of HTTP workers: an HTTP/1.1 request whose head and
// body (Content-Length, at most one buffer) have arrived, routed to a
// pool of kind "http". For those the loop reserves a slot
// (pool.TryAcquire, or, when none is free, a wait in the pool's FIFO
// queue on a goroutine that posts the outcome back), writes the request, with its
// hop-by-hop headers removed and X-Forwarded-* set, on a keep-alive
// connection to the instance that the loop owns, and passes the response
// back as it comes, holding the slot until the last byte. request_timeout
// kills the instance and answers 504; a client that hangs up frees the
// slot; an instance that breaks the exchange is taken out of the pool and
// the request answered 502 or, by the retry rule, tried again.
//
// Everything else leaves the loop, with the bytes already read, through
// Server.Handoff to the h1 server, where it stays for the rest of the
// connection's life: other protocol versions and h2c, Upgrade, Expect,
// chunked or large bodies, a head larger than a buffer, anything
// malformed (h1 answers it), static routes and drover's own endpoints.
//
// Ownership: each connection, upstream connection and buffer belongs to
// one loop and is touched only by its goroutine, so none has a lock. The
// Server's state is atomic, and loops learn of changes through an
// eventfd.
package evloop

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/drover-pool/drover/internal/pool"
)

// Target is a route's destination that the loops serve themselves: a pool
// whose instances speak HTTP.
type Target struct {
	Pool *pool.Pool
	// Timeout is the pool's request_timeout; zero: none.
	Timeout time.Duration
	// Hooks, when set, are told about each exchange.
	Hooks Hooks
	// ResetOnStop answers a request for a stopped pool with a TCP reset
	// rather than 503 (on_stopped = "reset").
	ResetOnStop bool
}

// Hooks follow the exchanges of a Target (the gateway keeps its registry
// of requests in flight and its metrics with them). They run on the loop:
// they must be quick and must not block.
type Hooks interface {
	// Begin is called when an exchange has its slot, before the request
	// is sent.
	Begin(x *Exchange)
	// End is called once for each Begin. Status 0 means the exchange was
	// abandoned and its request retried or handed to the h1 server,
	// which will report it.
	End(x *Exchange)
}

// Server serves HTTP/1.1 on one listening socket with event loops. Its
// fields must be set before Serve.
type Server struct {
	// Route finds the target of a request (host as in the Host header,
	// path as in the request target) and the path prefix to strip ("" for
	// none). nil: the connection is handed over. Route must not keep host
	// or path.
	Route func(host, path string) (t *Target, strip string)
	// Handoff takes over a connection the loops do not serve. It must not
	// block.
	Handoff func(net.Conn)
	// Log, when set, is called for every finished exchange (the access
	// log). It runs on the loop.
	Log func(x *Exchange)
	// HeaderTimeout bounds the arrival of a request once its first byte
	// is in; IdleTimeout the wait for the next request. Zero: no limit.
	HeaderTimeout time.Duration
	IdleTimeout   time.Duration
	// UpstreamIdle is how long an unused connection to an instance is
	// kept. Zero: 4s, below the keep-alive timeouts of common servers.
	UpstreamIdle time.Duration
	// Loops is the number of event loops. Zero: one per two CPUs
	// (GOMAXPROCS), at least one.
	Loops  int
	Logger *slog.Logger

	state atomic.Int32 // running, draining, closing

	mu      sync.Mutex // guards loops, served and lfd until Serve started
	served  bool
	loops   []*loop
	done    chan struct{} // closed when every loop has ended
	lfd     int
	lfdRefs sync.WaitGroup // loops that still watch lfd
}

// Server states.
const (
	running  int32 = iota
	draining       // no new connections; finish the requests begun
	closing        // close everything now
)

// ErrServerClosed is what Serve returns after Shutdown or Close: net/http's.
var ErrServerClosed = http.ErrServerClosed

// Serve takes over l and serves it until Shutdown or Close. l itself is
// closed at once; its socket lives on in the loops.
func (s *Server) Serve(l *net.TCPListener) error {
	lfd, err := dupListener(l)
	l.Close()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.served || s.state.Load() != running {
		s.mu.Unlock()
		unix.Close(lfd)
		return ErrServerClosed
	}
	s.served = true
	s.lfd = lfd
	s.done = make(chan struct{})
	n := s.Loops
	if n <= 0 {
		// One loop for two CPUs: the front end shares the machine with
		// the workers it proxies to, and a loop passes on some 40,000
		// small exchanges a second with half a CPU. On 2 CPUs one loop
		// answered 3-6% more than two in bench/proxy.sh's setting.
		n = max(runtime.GOMAXPROCS(0)/2, 1)
	}
	var wg sync.WaitGroup
	for range n {
		lp, err := newLoop(s, lfd)
		if err != nil {
			s.state.Store(closing)
			for _, lp := range s.loops {
				lp.wakeUp()
			}
			s.mu.Unlock()
			wg.Wait()
			s.lfdRefs.Wait()
			unix.Close(lfd)
			s.endLoops()
			return err
		}
		s.loops = append(s.loops, lp)
		s.lfdRefs.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			lp.run()
		}()
	}
	s.mu.Unlock()
	lfdClosed := make(chan struct{})
	go func() {
		// The listening socket is closed as soon as no loop can accept
		// on it any more (while draining, before the loops end), and
		// not before, so that its number is not reused under a loop.
		s.lfdRefs.Wait()
		unix.Close(lfd)
		close(lfdClosed)
	}()
	wg.Wait()
	<-lfdClosed
	s.endLoops()
	return ErrServerClosed
}

// endLoops closes the loops' eventfds, now that they have all ended, and
// tells Shutdown and Close.
func (s *Server) endLoops() {
	s.mu.Lock()
	for _, lp := range s.loops {
		unix.Close(lp.wake)
	}
	s.loops = nil
	close(s.done)
	s.mu.Unlock()
}

// dupListener returns a descriptor of l's socket of the loops' own.
func dupListener(l *net.TCPListener) (int, error) {
	rc, err := l.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("evloop: listener: %w", err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("evloop: listener: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("evloop: dup listener: %w", derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("evloop: listener: %w", err)
	}
	return fd, nil
}

// Shutdown stops accepting, closes idle connections, and waits for the
// others to finish the request they are serving (they close after it).
// When ctx ends first, the rest are closed and ctx's error returned.
// Connections already handed over are the h1 server's to shut down.
func (s *Server) Shutdown(ctx context.Context) error {
	s.state.CompareAndSwap(running, draining)
	done := s.wake()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close stops accepting and closes every connection now; requests in
// flight are abandoned and their slots released.
func (s *Server) Close() error {
	s.state.Store(closing)
	if done := s.wake(); done != nil {
		<-done
	}
	return nil
}

// wake tells every loop to look at the state, and returns the channel
// that closes when they have all ended (nil if Serve never ran).
func (s *Server) wake() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.served {
		return nil
	}
	for _, lp := range s.loops {
		lp.wakeUp()
	}
	return s.done
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) upstreamIdle() time.Duration {
	if s.UpstreamIdle > 0 {
		return s.UpstreamIdle
	}
	return 4 * time.Second
}
