package server_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/drover-pool/drover/internal/drovertest"
)

// BenchmarkProxyHello is one client on one kept-alive connection asking
// drover for the sample app's hello, one request after the other. Its
// allocs/op are drover's (and this client's two) per proxied request: the
// figure to watch when changing the request path. Throughput under
// concurrency is bench/proxy.sh's business.
func BenchmarkProxyHello(b *testing.B) {
	d := drovertest.Start(b, header+`
[pool.app]
command = ["{{.App}}"]
start = "always"
min_instances = 1
max_instances = 1
instance_concurrency = 64
`)
	// Warm up on a connection of its own: a request that finds no free
	// slot (the instance still starting) is handed to the h1 path with
	// its connection, and the connection measured must be the loop's.
	if code, _, _ := drovertest.Get(b, "http://"+d.Vars.Listen+"/hello"); code != 200 {
		b.Fatalf("warm-up: status %d", code)
	}
	c, err := net.Dial("tcp", d.Vars.Listen)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /hello HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, 512)
	do := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, resp.Body, buf); err != nil || resp.StatusCode != 200 {
			b.Fatalf("status %d, %v", resp.StatusCode, err)
		}
	}
	do() // the connection to the instance is made
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		do()
	}
}
