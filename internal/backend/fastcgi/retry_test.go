package fastcgi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRetryStaleConnection: a kept connection that turns out closed when
// reused. Each fake connection answers one request and then reads EOF, as
// a connection does whose application went away; it cannot be peeked at,
// so only the retry logic can save the request.
func TestRetryStaleConnection(t *testing.T) {
	ok := cat(stdout("Status: 200\r\n\r\nok"), endRequest(0, 0))
	for _, tc := range []struct {
		name     string
		method   string
		body     io.Reader
		writeErr error // the stale connection's writes fail with it
		retried  bool
	}{
		{name: "GET", method: "GET", retried: true},
		{name: "PUT replayable", method: "PUT", body: strings.NewReader("put body"), retried: true},
		{name: "POST", method: "POST", body: strings.NewReader("post body"), retried: false},
		{name: "POST not yet written", method: "POST", body: strings.NewReader("post body"), writeErr: syscall.EPIPE, retried: true},
		{name: "PUT without GetBody", method: "PUT", body: io.NopCloser(strings.NewReader("x")), retried: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var conns []*fakeConn
			tr := &Transport{Dial: func(ctx context.Context) (net.Conn, error) {
				c := newFakeConn(ok)
				c.awaitRequest = true
				conns = append(conns, c)
				return c, nil
			}}
			if _, body := do(t, tr, newRequest(t, "GET", "http://h/", nil)); body != "ok" {
				t.Fatal(body)
			}
			conns[0].writeErr = tc.writeErr
			req := newRequest(t, tc.method, "http://h/", tc.body)
			if tc.name == "PUT without GetBody" {
				req.ContentLength = 1
			}
			resp, err := tr.RoundTrip(req)
			if !tc.retried {
				if err == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("RoundTrip: %v, want an unexpected EOF", err)
				}
				if len(conns) != 1 {
					t.Fatalf("%d dials", len(conns))
				}
				return
			}
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			resp.Body.Close()
			if len(conns) != 2 {
				t.Fatalf("%d dials, want 2", len(conns))
			}
			if tc.body == nil {
				return
			}
			conns[1].mu.Lock()
			written := bytes.Clone(conns[1].written.Bytes())
			conns[1].mu.Unlock()
			r, err := readRawRequest(bufio.NewReader(bytes.NewReader(written)))
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.ToLower(tc.method) + " body"; string(r.stdin) != want {
				t.Errorf("body on the new connection %q, want %q", r.stdin, want)
			}
		})
	}
}

func TestPingAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		err  string
	}{
		{"result", rec(typeGetValuesResult, 0, "\x0f\x01FCGI_MPXS_CONNS0", 1), ""},
		{"unknown type", rec(typeUnknownType, 0, "\x09\x00\x00\x00\x00\x00\x00\x00", 0), ""},
		{"other management record first", cat(rec(42, 0, "", 0), rec(typeGetValuesResult, 0, "", 0)), ""},
		{"closed", nil, "fastcgi: ping: read answer: unexpected EOF"},
		{"truncated", rec(typeGetValuesResult, 0, "abc", 0)[:9], "unexpected EOF"},
		{"request record", stdout("x"), "malformed FastCGI stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, _ := cannedTransport(tc.data)
			err := tr.Ping(context.Background())
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("Ping: %v, want %q", err, tc.err)
			}
		})
	}
}

// TestPingTimeout: an application that never reads makes Ping fail when
// its context ends, not hang.
func TestPingTimeout(t *testing.T) {
	var peers []net.Conn
	t.Cleanup(func() {
		for _, c := range peers {
			c.Close()
		}
	})
	tr := &Transport{Dial: func(ctx context.Context) (net.Conn, error) {
		c, peer := net.Pipe() // unbuffered: the write blocks
		peers = append(peers, peer)
		return c, nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := tr.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping: %v, want a deadline error", err)
	}
}
