package http1

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// scriptConn is a net.Conn whose peer sends a fixed byte string and then
// closes, and swallows whatever is written to it.
type scriptConn struct {
	r      *bytes.Reader
	closed atomic.Bool // Write runs on the body writer goroutine
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}

func (c *scriptConn) Write(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	return len(p), nil
}

func (c *scriptConn) Close() error                     { c.closed.Store(true); return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "l", Net: "unix"} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Name: "r", Net: "unix"} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzResponse feeds arbitrary upstream bytes to RoundTrip and reads the
// response to its end, twice on the same Transport (so that a connection
// kept alive is reused on leftover bytes). Nothing may panic or hang.
func FuzzResponse(f *testing.F) {
	seeds := []string{
		okResponse,
		okResponse + okResponse,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n5\r\nhello\r\n0\r\nX: y\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nraw bytes",
		"HTTP/1.0 200 OK\r\n\r\nuntil eof",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
		"garbage",
		"",
	}
	for i, s := range seeds {
		f.Add([]byte(s), byte(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, mode byte) {
		tr := &Transport{
			MaxResponseHeaderBytes: 64 << 10,
			Dial: func(context.Context) (net.Conn, error) {
				return &scriptConn{r: bytes.NewReader(data)}, nil
			},
		}
		defer tr.CloseIdleConnections()
		for i := 0; i < 2; i++ {
			var req *http.Request
			switch (mode + byte(i)) % 4 {
			case 0:
				req, _ = http.NewRequest("GET", "http://x/", nil)
			case 1:
				req, _ = http.NewRequest("HEAD", "http://x/", nil)
			case 2:
				req, _ = http.NewRequest("POST", "http://x/", strings.NewReader("body"))
			case 3:
				req, _ = http.NewRequest("POST", "http://x/", io.NopCloser(strings.NewReader("chunked body")))
				req.ContentLength = -1
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				continue
			}
			if resp.StatusCode == 101 {
				if _, ok := resp.Body.(io.ReadWriteCloser); !ok {
					t.Fatalf("101 body %T", resp.Body)
				}
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
	})
}
