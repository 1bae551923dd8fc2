package cgi

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzParseResponse plays arbitrary bytes as a script's standard output.
// Nothing may panic, a body longer than the input is a bug, and a body is
// never longer than a Content-Length that was kept.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("Content-Type: text/plain\r\n\r\nhello"), false)
	f.Add([]byte("Status: 404 Not Found\nLocation: /x\n\nbody"), false)
	f.Add([]byte("Location: /elsewhere\n\n"), false)
	f.Add([]byte("Content-Length: 5\n\nhello world"), false)
	f.Add([]byte("Content-Length: 50\n\nhello"), true)
	f.Add([]byte("Content-Length: +5\nContent-Length: 5\n\nhello"), false)
	f.Add([]byte("Status: 100\n\n"), false)
	f.Add([]byte("Status: 204\n\nignored"), false)
	f.Add([]byte("not a header\n\n"), false)
	f.Add([]byte("A: b"), false)
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		p, err := parseResponse(bytes.NewReader(data), method)
		if err != nil {
			return
		}
		if p.code < 200 || p.code > 999 {
			t.Fatalf("status %d", p.code)
		}
		b, err := io.ReadAll(p.body)
		if len(b) > len(data) {
			t.Fatalf("body of %d bytes from %d bytes of input", len(b), len(data))
		}
		if p.contentLength >= 0 && int64(len(b)) > p.contentLength {
			t.Fatalf("body of %d bytes, Content-Length %d", len(b), p.contentLength)
		}
		if p.contentLength >= 0 && err == nil && !p.body.discard && int64(len(b)) != p.contentLength {
			t.Fatalf("body of %d bytes, Content-Length %d, no error", len(b), p.contentLength)
		}
		if p.body.discard && len(b) != 0 {
			t.Fatalf("body of %d bytes for a response without one", len(b))
		}
		if v := p.header.Values("Content-Length"); len(v) > 1 {
			t.Fatalf("Content-Length %q kept", v)
		}
	})
}
