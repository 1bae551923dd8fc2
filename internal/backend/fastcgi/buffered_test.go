package fastcgi

import (
	"io"
	"testing"
)

// TestBufferedSaysWhenReadWaits: Buffered is not 0 while the rest of a
// response that arrived whole can be read without waiting, and is 0 when
// the next record has not arrived in full, so a proxy that flushes on 0
// never holds output back while the application is still working.
func TestBufferedSaysWhenReadWaits(t *testing.T) {
	gate := make(chan struct{})
	a := rawApp(t, func(req *rawRequest, w io.Writer) {
		head := stdout("Content-Type: text/plain\r\n\r\n")
		if req.params["REQUEST_URI"] == "/whole" {
			w.Write(cat(head, stdout("part1"), stdout("part2"), endRequest(0, 0)))
			return
		}
		// The second record's header comes in two pieces, the second
		// only when the test has looked.
		rest := cat(stdout("part2"), endRequest(0, 0))
		w.Write(cat(head, stdout("part1"), rest[:3]))
		<-gate
		w.Write(rest[3:])
	})
	tr := a.transport()
	defer tr.CloseIdleConnections()

	for _, tc := range []struct {
		uri          string
		wantBuffered bool
	}{{"/whole", true}, {"/split", false}} {
		resp, err := tr.RoundTrip(newRequest(t, "GET", "http://app"+tc.uri, nil))
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "part1" {
			t.Fatalf("%s: first read %q %v", tc.uri, buf, err)
		}
		got := resp.Body.(interface{ Buffered() int }).Buffered()
		if (got > 0) != tc.wantBuffered {
			t.Errorf("%s: Buffered() = %d after the first record, want >0: %v", tc.uri, got, tc.wantBuffered)
		}
		if !tc.wantBuffered {
			close(gate)
		}
		rest, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(rest) != "part2" {
			t.Errorf("%s: rest %q %v", tc.uri, rest, err)
		}
		if n := resp.Body.(interface{ Buffered() int }).Buffered(); n != 0 {
			t.Errorf("%s: Buffered() = %d after the end", tc.uri, n)
		}
	}
}
