package uwsgi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
)

// The benchmarks compare the shim with uWSGI on the same trivial
// applications, one request at a time (both single-threaded) and with
// concurrent clients (four threads, four uWSGI processes).

func BenchmarkShimHello(b *testing.B) {
	p := startShim(b, shimOptions{app: "hello:application"})
	tr, _ := shimTransport(p, 1)
	benchRoundTrips(b, tr, "GET", "http://x/", nil)
}

func BenchmarkUWSGIHello(b *testing.B) {
	p := startUWSGI(b, "hello.py")
	benchRoundTrips(b, &Transport{Dial: (&dialer{sock: p.sock}).Dial}, "GET", "http://x/", nil)
}

func BenchmarkShimStreaming(b *testing.B) {
	p := startShim(b, shimOptions{app: "hello:streaming"})
	tr, _ := shimTransport(p, 1)
	benchRoundTrips(b, tr, "GET", "http://x/", nil)
}

func BenchmarkUWSGIStreaming(b *testing.B) {
	p := startUWSGI(b, "hello.py", "--callable", "streaming")
	benchRoundTrips(b, &Transport{Dial: (&dialer{sock: p.sock}).Dial}, "GET", "http://x/", nil)
}

func BenchmarkShimEcho64K(b *testing.B) {
	p := startShim(b, shimOptions{app: "hello:echo"})
	tr, _ := shimTransport(p, 1)
	benchRoundTrips(b, tr, "POST", "http://x/", make([]byte, 64<<10))
}

func BenchmarkUWSGIEcho64K(b *testing.B) {
	p := startUWSGI(b, "hello.py", "--callable", "echo")
	benchRoundTrips(b, &Transport{Dial: (&dialer{sock: p.sock}).Dial}, "POST", "http://x/", make([]byte, 64<<10))
}

func BenchmarkShimHelloParallel(b *testing.B) {
	p := startShim(b, shimOptions{app: "hello:application", concurrency: 4})
	tr, _ := shimTransport(p, 4)
	benchParallel(b, tr)
}

func BenchmarkUWSGIHelloParallel(b *testing.B) {
	p := startUWSGI(b, "hello.py", "--processes", "4")
	benchParallel(b, &Transport{Dial: (&dialer{sock: p.sock}).Dial})
}

func benchParallel(b *testing.B, tr http.RoundTripper) {
	b.ReportAllocs()
	b.SetParallelism(2) // 2 × GOMAXPROCS clients
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			roundTrip(b, tr, "GET", "http://x/", nil)
		}
	})
}

func benchRoundTrips(b *testing.B, tr http.RoundTripper, method, url string, body []byte) {
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, tr, method, url, body)
	}
}

func roundTrip(b *testing.B, tr http.RoundTripper, method, url string, body []byte) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, url, r)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}
