package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// FuzzReadRequest feeds arbitrary bytes to the head parser and the body
// reader: no panic, no hang, and every request accepted holds what
// handlers rely on.
func FuzzReadRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /p?q=1 HTTP/1.0\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://h:1/abs HTTP/1.1\r\nHost: other\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nhost: a\r\ncontent-type: x\r\nX-a-B: 1\r\nX-A-b: 2\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &conn{srv: &Server{MaxHeaderBytes: 8 << 10}, rwc: discardConn{}}
		c.cr.c = c
		c.br = bufio.NewReaderSize(bytes.NewReader(data), bufSize)
		c.bw = bufio.NewWriter(io.Discard)
		r, err := c.readRequest(true)
		if err != nil {
			var he *headError
			if errors.As(err, &he) && (he.code < 400 || he.code > 599) {
				t.Fatalf("answer code %d", he.code)
			}
			return
		}
		if !httpguts.ValidHeaderFieldName(r.Method) || r.URL == nil || !httpguts.ValidHostHeader(r.Host) {
			t.Fatalf("accepted %q: method %q host %q url %v", data, r.Method, r.Host, r.URL)
		}
		if _, ok := r.Header["Host"]; ok {
			t.Fatal("Host left in the header map")
		}
		for k, vv := range r.Header {
			if !httpguts.ValidHeaderFieldName(k) {
				t.Fatalf("header name %q", k)
			}
			for _, v := range vv {
				if strings.ContainsAny(v, "\r\n\x00") {
					t.Fatalf("header %s value %q", k, v)
				}
			}
		}
		if r.ContentLength > 0 || r.ContentLength == -1 {
			if r.Body == http.NoBody {
				t.Fatal("a body is declared but Body is NoBody")
			}
			n, _ := io.Copy(io.Discard, r.Body)
			if r.ContentLength > 0 && n > r.ContentLength {
				t.Fatalf("read %d body bytes of %d", n, r.ContentLength)
			}
		}
	})
}

// discardConn is a net.Conn that the fuzzed body reader can set
// deadlines on.
type discardConn struct{}

func (discardConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) LocalAddr() net.Addr              { return nil }
func (discardConn) RemoteAddr() net.Addr             { return nil }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
