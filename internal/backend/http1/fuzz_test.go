package http1

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"reflect"
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

// FuzzReadHead checks the lean parser against http.ReadResponse: for
// every input readHead accepts, the Response, the body bytes, the trailers
// and what is left on the connection afterwards must be the same; for
// every input it declines, it must have consumed nothing.
func FuzzReadHead(f *testing.F) {
	for _, s := range []string{
		okResponse,
		"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 3\r\n\r\nabcdef",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n3\r\nabc\r\n0\r\nX-T: v\r\n\r\nrest",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.0 200\r\n\r\nall of it",
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: Close, x\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n1234567",
		"HTTP/1.1 200 OK\r\nA:  b \t\r\nB:\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
		"HTTP/1.1 999 \r\n\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(compareParsers)
}

// compareParsers is FuzzReadHead's check.
func compareParsers(t *testing.T, data []byte, head bool) {
	t.Helper()
	if leanAccepts(t, data, head) {
		leanAccepted.Add(1)
	}
}

var leanAccepted atomic.Int64

func leanAccepts(t *testing.T, data []byte, head bool) bool {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	if head {
		req.Method = "HEAD"
	}
	br1 := bufio.NewReaderSize(bytes.NewReader(data), 512)
	resp1, err1 := http.ReadResponse(br1, req)

	br2 := bufio.NewReaderSize(bytes.NewReader(data), 512)
	resp2, kind, n, ok := readHead(br2, req)
	if !ok {
		// Nothing consumed: the fallback sees what std saw.
		r, err := http.ReadResponse(br2, req)
		if (err == nil) != (err1 == nil) || err == nil && r.StatusCode != resp1.StatusCode {
			t.Fatalf("fallback differs: %v / %v", err, err1)
		}
		return false
	}
	if err1 != nil {
		t.Fatalf("readHead accepted what ReadResponse rejects (%v): %q", err1, data)
	}
	if resp1.Status != resp2.Status || resp1.StatusCode != resp2.StatusCode ||
		resp1.Proto != resp2.Proto || resp1.ProtoMajor != resp2.ProtoMajor || resp1.ProtoMinor != resp2.ProtoMinor ||
		resp1.ContentLength != resp2.ContentLength || resp1.Close != resp2.Close ||
		!reflect.DeepEqual(resp1.TransferEncoding, resp2.TransferEncoding) ||
		!reflect.DeepEqual(resp1.Header, resp2.Header) || resp1.Trailer != nil {
		t.Fatalf("responses differ for %q:\nstd  %+v\nlean %+v", data, resp1, resp2)
	}
	if (resp1.Body == http.NoBody) != (kind == bodyNone) {
		t.Fatalf("body presence differs for %q: std %T, lean kind %d", data, resp1.Body, kind)
	}
	b1, e1 := io.ReadAll(resp1.Body)
	br := &bodyReader{kind: kind, br: br2, n: n, resp: resp2}
	b2, e2 := io.ReadAll(br)
	if !bytes.Equal(b1, b2) || (e1 == nil) != (e2 == nil) {
		t.Fatalf("bodies differ for %q:\nstd  %q %v\nlean %q %v", data, b1, e1, b2, e2)
	}
	if e1 != nil {
		return true
	}
	if !reflect.DeepEqual(resp1.Trailer, resp2.Trailer) {
		t.Fatalf("trailers differ for %q: %v / %v", data, resp1.Trailer, resp2.Trailer)
	}
	rest1, _ := io.ReadAll(br1)
	rest2, _ := io.ReadAll(br2)
	if !bytes.Equal(rest1, rest2) {
		t.Fatalf("framing differs for %q: left %q / %q", data, rest1, rest2)
	}
	return true
}

// TestReadHeadCombinations runs compareParsers over combinations of the
// header fields that decide framing and keep-alive.
func TestReadHeadCombinations(t *testing.T) {
	before := leanAccepted.Load()
	total := 0
	for _, status := range []string{"100 Continue", "101 Switching", "200 OK", "204 No Content", "304 Not Modified", "404", "099 x"} {
		for _, proto := range []string{"HTTP/1.0", "HTTP/1.1"} {
			for _, cl := range []string{"", "0", "5", "05", "5 ", "x", "5\r\nContent-Length: 5", "5\r\nContent-Length: 6"} {
				for _, te := range []string{"", "chunked", "Chunked", "gzip, chunked"} {
					for _, conn := range []string{"", "close", "keep-alive", "Keep-Alive, Upgrade", "x, CLOSE"} {
						for _, body := range []string{"hello, then more", "5\r\nhello\r\n0\r\n\r\nmore", "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\nmore", "5\r\nhel"} {
							h := proto + " " + status + "\r\nDate: x\r\ncontent-type: text/plain\r\n"
							if cl != "" {
								h += "Content-Length: " + cl + "\r\n"
							}
							if te != "" {
								h += "Transfer-Encoding: " + te + "\r\n"
							}
							if conn != "" {
								h += "Connection: " + conn + "\r\n"
							}
							data := []byte(h + "\r\n" + body)
							for _, head := range []bool{false, true} {
								compareParsers(t, data, head)
								total++
							}
						}
					}
				}
			}
		}
	}
	accepted := leanAccepted.Load() - before
	t.Logf("readHead accepted %d of %d", accepted, total)
	if accepted < int64(total/10) {
		t.Errorf("readHead accepted only %d of %d", accepted, total)
	}
}
