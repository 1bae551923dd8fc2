// Package h1 serves cleartext HTTP/1.x connections to an http.Handler.
//
// drover's front end is a proxy: per request it reads a head, hands the
// request to a pool and copies the instance's answer back. net/http's
// server does as much work again for things a proxy does not need, and
// on a small machine that work is most of drover's cost per request: a
// goroutine per request that watches the connection for a hang-up, a
// second response buffer, sorted header writes and several allocations
// per header. h1 keeps the http.Handler model (handlers, Flusher,
// Hijacker and http.ResponseController work as with net/http) and does
// less:
//
//   - One goroutine per connection reads a head, runs the handler and
//     finishes the response before it reads the next head, so pipelined
//     requests are answered in order.
//   - The head is copied into one string and the header map is built
//     from substrings of it.
//   - The request's context is canceled when the client goes away, but
//     the connection is only watched for that once the handler has been
//     running for Server.WatchAfter (10ms): a request that is answered
//     quickly never pays for watching, and one that waits in a pool's
//     queue or on a slow instance is given up soon after its client.
//   - A response without Content-Length is held back up to 4 KiB, so
//     that small answers get a Content-Length and larger ones are chunked.
//
// Connections that open with the HTTP/2 preface (h2c with prior
// knowledge) are handed, with the bytes already read, to Server.H2.
// TLS is not h1's business: drover serves TLS listeners with net/http.
package h1

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server serves HTTP/1.x on listeners. Its fields must be set before
// Serve is first called and not changed afterwards.
type Server struct {
	// Handler answers every request.
	Handler http.Handler
	// H2 takes over a connection that opened with the HTTP/2 client
	// preface. The conn replays the bytes h1 has read. nil: such
	// connections are closed.
	H2 func(net.Conn)
	// ReadHeaderTimeout bounds reading a request head once its first
	// byte has arrived; IdleTimeout bounds the wait for that first byte
	// on a kept-alive connection. Zero: no limit.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes bounds a request head (request line and header).
	// Zero: 1 MiB.
	MaxHeaderBytes int
	// WatchAfter is how long a handler runs before h1 starts watching
	// its connection for a client hang-up. Zero: 10ms.
	WatchAfter time.Duration
	// Logger receives handler panics and accept errors. nil: discarded.
	Logger *slog.Logger

	inShutdown atomic.Bool

	// Test hooks: a watch read the start of the next request; serve is
	// done with a connection (its buffers are back in the pools).
	testHookWatchRead func()
	testHookConnDone  func(*conn)

	mu        sync.Mutex // guards listeners and conns
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
}

// ErrServerClosed is what Serve returns after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) maxHeaderBytes() int {
	if s.MaxHeaderBytes > 0 {
		return s.MaxHeaderBytes
	}
	return 1 << 20
}

func (s *Server) watchAfter() time.Duration {
	if s.WatchAfter > 0 {
		return s.WatchAfter
	}
	return 10 * time.Millisecond
}

// Serve accepts connections on l until Shutdown or Close, and serves each
// on its own goroutine. It always returns a non-nil error and closes l.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()

	var backoff time.Duration
	for {
		rwc, err := l.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			if temporary(err) {
				// Out of descriptors or a connection aborted before
				// accept: wait a little rather than spin.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logger().Warn("accept failed; retrying", "listen", l.Addr().String(), "err", err, "delay", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, rwc)
		s.mu.Lock()
		if s.inShutdown.Load() {
			s.mu.Unlock()
			rwc.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go c.serve()
	}
}

// ServeConn serves one connection accepted elsewhere (the front end's
// event loops hand over those they do not serve) on its own goroutine,
// as if Serve had accepted it. After Shutdown or Close it is closed.
func (s *Server) ServeConn(rwc net.Conn) {
	c := newConn(s, rwc)
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		rwc.Close()
		return
	}
	if s.conns == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	go c.serve()
}

func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM)
}

// forget removes a connection that closed, or that left h1 (hijacked or
// handed to H2).
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting, closes idle connections, and waits for the
// others to finish the request they are serving (they close after it).
// When ctx ends first, the remaining connections are closed and ctx's
// error returned. Hijacked and HTTP/2 connections are not waited for.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.closeListeners()
	wait := time.Millisecond
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		if s.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			s.closeAll()
			return ctx.Err()
		case <-t.C:
			wait = min(2*wait, 100*time.Millisecond)
			t.Reset(wait)
		}
	}
}

// Close stops accepting and closes every connection now.
func (s *Server) Close() error {
	s.inShutdown.Store(true)
	s.closeListeners()
	s.closeAll()
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		l.Close()
	}
}

// closeIdle closes the connections waiting for a request and reports
// whether none remain.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosing) {
			c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.state.Store(stateClosing)
		c.rwc.Close()
	}
}
