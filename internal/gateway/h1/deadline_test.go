package h1

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A kept-alive connection's next head must arrive within
// ReadHeaderTimeout of its first byte, even when the client opens it with
// the empty lines RFC 9112 lets a server skip: "\r\n\r\n" in the buffer
// is not a whole head.
func TestSlowHeadAfterBlankLines(t *testing.T) {
	for _, idle := range []time.Duration{0, 3 * time.Second} {
		t.Run(fmt.Sprintf("idle=%v", idle), func(t *testing.T) {
			addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "ok")
			}), func(s *Server) {
				s.ReadHeaderTimeout = 200 * time.Millisecond
				s.IdleTimeout = idle
			})
			c, br := dialGets(t, addr, "/", 1)
			start := time.Now()
			// Two empty lines, then a head that stalls.
			io.WriteString(c, "\r\n\r\nGET / HT")
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("stalled head after empty lines: %v after %v, want EOF at about 200ms", err, time.Since(start))
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("stalled head closed after %v, want about 200ms", d)
			}
		})
	}
}

// A handler may set a read deadline (http.ResponseController) while
// another of its goroutines reads the body, which lifts h1's deadline:
// the race detector sees to it that the two are ordered.
func TestHandlerSetReadDeadlineWhileBodyRead(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read := make(chan struct{})
		go func() {
			defer close(read)
			_, _ = io.ReadAll(r.Body)
		}()
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Minute))
		<-read
		io.WriteString(w, "ok")
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
}

// A read deadline the handler sets before reading the body holds for
// the body: the first body read lifts h1's deadline, not the handler's.
func TestHandlerReadDeadlineHoldsForBody(t *testing.T) {
	got := make(chan time.Duration, 1)
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, _ = io.ReadAll(r.Body)
		got <- time.Since(start)
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
	select {
	case d := <-got:
		if d > time.Second {
			t.Errorf("body read returned after %v, want about 200ms", d)
		}
	case <-time.After(2 * time.Second):
		c.Close()
		t.Errorf("handler's 200ms read deadline did not end a stalled body read in 2s")
		<-got
	}
	c.Close()
}
