package http1

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkRoundTrip compares Transport with net/http.Transport against
// the same net/http upstream (a hello handler) on a unix socket.
func BenchmarkRoundTrip(b *testing.B) {
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			io.Copy(io.Discard, r.Body)
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "Hello, World!")
	})
	u := newUpstream(b, "unix", hello)
	addr := u.ln.Addr().String()
	std := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", addr)
		},
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	}
	b.Cleanup(std.CloseIdleConnections)
	transports := []struct {
		name string
		rt   http.RoundTripper
	}{{"http1", u.tr}, {"nethttp", std}}

	run := func(b *testing.B, rt http.RoundTripper, post bool) {
		var body io.Reader
		for i := 0; i < 3; i++ { // warm up the connection pool
			oneRequest(b, rt, post, body)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			oneRequest(b, rt, post, body)
		}
	}
	for _, tc := range transports {
		b.Run("GET/"+tc.name, func(b *testing.B) { run(b, tc.rt, false) })
	}
	for _, tc := range transports {
		b.Run("POST/"+tc.name, func(b *testing.B) { run(b, tc.rt, true) })
	}
	for _, tc := range transports {
		b.Run("GET-parallel/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					oneRequest(b, tc.rt, false, nil)
				}
			})
		})
	}
}

func oneRequest(b *testing.B, rt http.RoundTripper, post bool, _ io.Reader) {
	var req *http.Request
	if post {
		req, _ = http.NewRequest("POST", "http://instance/post", strings.NewReader(`{"hello":"world"}`))
	} else {
		req, _ = http.NewRequest("GET", "http://instance/hello", nil)
	}
	req.Header.Set("User-Agent", "bench")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// BenchmarkRoundTripRaw isolates the client side: the upstream is a
// minimal loop answering every request head with a canned response.
func BenchmarkRoundTripRaw(b *testing.B) {
	ln := listen(b, "unix")
	const canned = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain; charset=utf-8\r\nDate: Mon, 23 Nov 2026 01:00:00 GMT\r\n\r\nHello, World!"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					// One request per read: heads are small and the
					// client waits for each answer.
					if n > 0 && bytes.HasSuffix(buf[:n], []byte("\r\n\r\n")) {
						if _, err := io.WriteString(c, canned); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	b.Cleanup(func() { ln.Close() })
	addr := ln.Addr().String()
	dial := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", addr)
	}
	h1 := &Transport{Dial: dial, MaxIdleConns: 64}
	std := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	}
	b.Cleanup(h1.CloseIdleConnections)
	b.Cleanup(std.CloseIdleConnections)
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
	}{{"http1", h1}, {"nethttp", std}} {
		b.Run(tc.name, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			oneRequest(b, tc.rt, false, nil)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				// A cancelable context, like a server request's.
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://instance/hello", nil)
				req.Header.Set("User-Agent", "bench")
				resp, err := tc.rt.RoundTrip(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
