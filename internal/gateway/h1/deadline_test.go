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
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			io.ReadAll(resp.Body)
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

// A handler's http.ResponseController.SetReadDeadline races with the
// watch, which lifts h1's deadline (and writes conn.idleArmed) from the
// watch timer's goroutine. Run with -race.
func TestHandlerSetReadDeadlineRacesWatch(t *testing.T) {
	addr, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond) // the watch starts at 10ms
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Minute))
		io.WriteString(w, "ok")
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
		t.Fatal(err)
	}
}

// A read deadline the handler sets before reading the body holds for
// the body (pre-existing: the first body read lifts "h1's" deadline,
// which is the handler's by then).
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
