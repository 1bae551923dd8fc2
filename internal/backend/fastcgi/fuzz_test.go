package fastcgi

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
)

// FuzzReadResponse plays arbitrary bytes as the application's side of the
// connection, for a request without and with a body, and for Ping. Nothing
// may panic or hang, and a body longer than the input is a bug.
func FuzzReadResponse(f *testing.F) {
	f.Add(cat(stdout("Content-Type: text/plain\r\n\r\nhello"), stdout(""), endRequest(0, 0)))
	f.Add(cat(stdout("Status: 404 Not Found\nLocation: /x\n\n"), stderrRec("a\nb"), endRequest(1, 0)))
	f.Add(cat(rec(typeStdout, 1, "A: b\r\n", 3), rec(typeGetValuesResult, 0, "\x0e\x01FCGI_MPXS_CONNS0", 0), stdout("\r\nbody"), endRequest(0, 0)))
	f.Add(endRequest(0, statusOverloaded))
	f.Add(cat(stdout("A: b\r\n\r\n"), endRequest(0, 0), stdout("junk")))
	f.Add(rec(typeGetValuesResult, 0, "\x0e\x01FCGI_MPXS_CONNS0", 0))
	f.Add([]byte{1, 6, 0, 1, 0xff, 0xff, 0xff, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, withBody := range []bool{false, true} {
			tr := &Transport{
				Dial:   func(ctx context.Context) (net.Conn, error) { return newFakeConn(data), nil },
				Stderr: func(string) {},
			}
			req := newRequest(t, "GET", "http://h/", nil)
			if withBody {
				req = newRequest(t, "POST", "http://h/", strings.NewReader("body"))
			}
			resp, err := tr.RoundTrip(req)
			if err == nil {
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if n > int64(len(data)) {
					t.Fatalf("body of %d bytes from %d bytes of input", n, len(data))
				}
				if resp.StatusCode < 100 || resp.StatusCode > 999 {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			tr.CloseIdleConnections()
		}
		tr := &Transport{Dial: func(ctx context.Context) (net.Conn, error) { return newFakeConn(data), nil }}
		tr.Ping(context.Background())
	})
}
