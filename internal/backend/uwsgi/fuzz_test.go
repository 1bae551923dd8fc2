package uwsgi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzVars encodes requests built from arbitrary method, path, query,
// header and Param strings, and checks that the packet decodes strictly
// back to the same values (or that the encoder refused it as too large).
func FuzzVars(f *testing.F) {
	f.Add("GET", "/a b/é", "x=1", "X-Test", "v", "P", "q")
	f.Add("POST", "/", "", "Cookie", "a=1", "HTTP_X", "")
	f.Add("", "", "", "", "", "", "")
	f.Add("PUT", strings.Repeat("/p", 20000), "q", "X-Long", strings.Repeat("v", 30000), "K", "V")
	f.Fuzz(func(t *testing.T, method, path, query, hname, hval, pk, pv string) {
		req := &http.Request{
			Method: method,
			URL:    &url.URL{Path: path, RawQuery: query},
			Header: http.Header{},
			Host:   "h",
		}
		if hname != "" {
			req.Header[hname] = []string{hval, hval}
		}
		tr := &Transport{}
		if pk != "" {
			tr.Params = map[string]string{pk: pv}
		}
		for _, mode := range []bodyMode{bodyNone, bodyLength, bodyShimChunked, bodyHTTPChunked} {
			b, err := tr.appendPacket([]byte("prefix"), req, 7, mode)
			if err != nil {
				if !errors.Is(err, ErrVarsTooLarge) {
					t.Fatalf("unexpected error %v", err)
				}
				if string(b) != "prefix" {
					t.Fatalf("failed append changed the buffer: %q", b[:min(len(b), 20)])
				}
				continue
			}
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatal("prefix lost")
			}
			m1, m2, vars, rest, err := parsePacket(b[len("prefix"):])
			if err != nil || m1 != 0 || m2 != 0 || len(rest) != 0 {
				t.Fatalf("decode: %v (mod %d %d, %d bytes left)", err, m1, m2, len(rest))
			}
			got := map[string]string{}
			for _, p := range vars {
				if _, dup := got[p.k]; dup {
					t.Fatalf("var %q twice", p.k)
				}
				got[p.k] = p.v
			}
			if pk != "" {
				if got[pk] != pv {
					t.Fatalf("Param %q = %q, want %q", pk, got[pk], pv)
				}
			} else if got["PATH_INFO"] != path || got["QUERY_STRING"] != query {
				t.Fatalf("PATH_INFO %q QUERY_STRING %q", got["PATH_INFO"], got["QUERY_STRING"])
			}
			// The shim's compact form carries the same vars, or the packet
			// keeps the usual form when a var holds a NUL.
			ctr := &Transport{Params: tr.Params, CompactVars: true}
			cb, err := ctr.appendPacket(nil, req, 7, mode)
			if err != nil {
				t.Fatalf("compact packet: %v (the usual one was fine)", err)
			}
			if cb[3] != modifier2Compact {
				if !bytes.Equal(cb, b[len("prefix"):]) {
					t.Fatal("a packet not compacted differs from the usual one")
				}
				continue
			}
			parts := bytes.Split(cb[headerSize:], []byte{0})
			if len(parts)%2 != 1 || len(parts[len(parts)-1]) != 0 {
				t.Fatalf("compact vars end badly: %d parts", len(parts))
			}
			compact := map[string]string{}
			for i := 0; i+1 < len(parts); i += 2 {
				compact[string(parts[i])] = string(parts[i+1])
			}
			if fmt.Sprint(compact) != fmt.Sprint(got) {
				t.Fatalf("compact vars %v, usual ones %v", compact, got)
			}
		}
	})
}

// scriptConn is a net.Conn whose peer sends fixed bytes and swallows
// whatever is written, standing in for an instance that answers anything.
type scriptConn struct {
	r      *bytes.Reader
	mu     sync.Mutex
	closed bool
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}

func (c *scriptConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *scriptConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *scriptConn) LocalAddr() net.Addr              { return &net.UnixAddr{Net: "unix"} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Net: "unix"} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzResponse feeds arbitrary instance bytes to RoundTrip and Ping, in
// both connection modes, with and without a request body: nothing may
// panic, every error must say "uwsgi:", and the Transport's connection
// accounting must come out even.
func FuzzResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), uint8(0))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"), uint8(1))
	f.Add([]byte("HTTP/1.0 404 Not Found\r\n\r\nbody until eof"), uint8(2))
	f.Add([]byte("HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"), uint8(3))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"), uint8(5))
	f.Add([]byte{modPing, 0, 0, 1}, uint8(7))
	f.Add([]byte{modPing, 3, 0, 0, 'a', 'b'}, uint8(6))
	f.Add([]byte("garbage"), uint8(4))
	f.Fuzz(func(t *testing.T, answer []byte, flags uint8) {
		var conns []*scriptConn
		tr := &Transport{
			KeepAlive: flags&1 != 0,
			MaxConns:  1,
			Dial: func(context.Context) (net.Conn, error) {
				c := &scriptConn{r: bytes.NewReader(answer)}
				conns = append(conns, c)
				return c, nil
			},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if flags&6 == 6 {
			err := tr.Ping(ctx)
			if err != nil && !strings.HasPrefix(err.Error(), "uwsgi: ") {
				t.Fatalf("Ping error %q", err)
			}
		} else {
			var body io.Reader
			switch flags & 6 {
			case 2:
				body = strings.NewReader("request body")
			case 4:
				body = unknownLength{strings.NewReader("streamed body")}
			}
			method := "GET"
			if flags&8 != 0 {
				method = "HEAD"
			}
			req, _ := http.NewRequestWithContext(ctx, method, "http://x/p?q", body)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				if !strings.HasPrefix(err.Error(), "uwsgi: ") {
					t.Fatalf("RoundTrip error %q", err)
				}
			} else {
				_, err = io.ReadAll(resp.Body)
				if err != nil && !strings.HasPrefix(err.Error(), "uwsgi: ") {
					t.Fatalf("body error %q", err)
				}
				resp.Body.Close()
			}
		}
		// The writer goroutine may still be finishing: wait for the
		// accounting to settle (it must, since the connection is closed or
		// idle), then check it.
		deadline := time.Now().Add(5 * time.Second)
		for {
			tr.mu.Lock()
			open, idle := tr.open, len(tr.idle)
			tr.mu.Unlock()
			if !tr.KeepAlive || open == idle {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("open %d, idle %d: a connection leaked", open, idle)
			}
			time.Sleep(time.Millisecond)
		}
		tr.CloseIdleConnections()
		if tr.open != 0 {
			t.Fatalf("open = %d after CloseIdleConnections", tr.open)
		}
	})
}
