package evloop

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	cases := []struct {
		raw  string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", headOK},
		{"GET /a?b=%20 HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n", headOK},
		{"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", headOK},
		{"GET / HTTP/1.1\r\nHost: a\r\n", headMore},
		{"GET / HTTP/1.", headMore},
		{"GE", headMore},
		{"GET / HTTP/1.0\r\n\r\n", headHandoff},
		{"get / HTTP/1.1\r\nHost: a\r\n\r\n", headHandoff},
		{"GET %2F HTTP/1.1\r\nHost: a\r\n\r\n", headHandoff},
		{"GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n", headHandoff},
		{"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\nHost: a\n\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", headHandoff},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", headHandoff},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", headHandoff},
		{"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", headHandoff},
		// Connection must not strip what frames the request or what
		// drover vouches for.
		{"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 1\r\n\r\nx", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For\r\n\r\n", headHandoff},
		{"GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Other\r\n\r\n", headOK},
	}
	for _, tc := range cases {
		var h reqHead
		if got := parseRequest([]byte(tc.raw), &h); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.raw, got, tc.want)
		}
	}
}

func TestAppendUpstream(t *testing.T) {
	raw := "POST /app/x?q=1 HTTP/1.1\r\nhost: h.example\r\nConnection: close, X-Drop\r\nX-Drop: 1\r\n" +
		"Keep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n" +
		"X-Forwarded-Proto: https\r\nContent-Length: 2\r\nUser-Agent: t\r\n\r\nhi"
	var h reqHead
	if st := parseRequest([]byte(raw), &h); st != headOK {
		t.Fatalf("parse: %d", st)
	}
	if !h.closeAfter || h.bodyLen != 2 || h.ua < 0 {
		t.Fatalf("facts: close %v body %d ua %d", h.closeAfter, h.bodyLen, h.ua)
	}
	got := string(h.appendUpstream(nil, []byte(raw), []byte("/x"), "9.9.9.9"))
	want := "POST /x?q=1 HTTP/1.1\r\nhost: h.example\r\nContent-Length: 2\r\nUser-Agent: t\r\nTe: trailers\r\n" +
		"X-Forwarded-For: 1.2.3.4, 5.6.7.8, 9.9.9.9\r\nX-Forwarded-Host: h.example\r\nX-Forwarded-Proto: http\r\n\r\nhi"
	if got != want {
		t.Fatalf("upstream request\n got %q\nwant %q", got, want)
	}

	// A bodyless POST says so; a GET's zero Content-Length is dropped.
	for raw, want := range map[string]string{
		"POST / HTTP/1.1\r\nHost: a\r\n\r\n":                     "Content-Length: 0\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n": "",
	} {
		var h reqHead
		parseRequest([]byte(raw), &h)
		out := string(h.appendUpstream(nil, []byte(raw), nil, "1.1.1.1"))
		if has := strings.Contains(out, "Content-Length"); has != (want != "") {
			t.Errorf("%q became %q", raw, out)
		}
	}
}

func TestParseResponse(t *testing.T) {
	cases := []struct {
		raw     string
		head    bool
		framing int
		keep    bool
		err     bool
		more    bool
	}{
		{raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", framing: frameLength, keep: true},
		{raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", framing: frameChunked, keep: true},
		{raw: "HTTP/1.1 200 OK\r\nX: y\r\n\r\n", framing: frameClose},
		{raw: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", framing: frameLength},
		{raw: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", framing: frameLength, keep: true},
		{raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", framing: frameLength},
		{raw: "HTTP/1.1 204 No Content\r\n\r\n", framing: frameNone, keep: true},
		{raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", head: true, framing: frameNone, keep: true},
		{raw: "HTTP/1.1 200 OK\nContent-Length: 5\n\n", framing: frameLength, keep: true},
		{raw: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", framing: frameLength, keep: true},
		{raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", more: true},
		{raw: "HTTP/1.1 2", more: true},
		{raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", err: true},
		{raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", err: true},
		{raw: "NOT HTTP\r\n\r\n", err: true},
		{raw: "HTTP/1.1 2x0 OK\r\n\r\n", err: true},
		{raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close, keep-alive\r\n\r\n", framing: frameLength},
		{raw: "HTTP/1.1 200 OK\r\nX: a\rSet-Cookie: b\r\n\r\n", err: true},
		{raw: "HTTP/1.1 200 O\rK\r\n\r\n", err: true},
		{raw: "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 1\r\n\r\n", err: true},
	}
	for _, tc := range cases {
		var h respHead
		more, err := parseResponse([]byte(tc.raw), tc.head, &h)
		if (err != nil) != tc.err || more != tc.more {
			t.Errorf("%q: more %v err %v", tc.raw, more, err)
			continue
		}
		if tc.err || tc.more {
			continue
		}
		if h.framing != tc.framing || h.keep != tc.keep {
			t.Errorf("%q: framing %d keep %v, want %d %v", tc.raw, h.framing, h.keep, tc.framing, tc.keep)
		}
	}

	raw := []byte("HTTP/1.1 200 Fine\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 1\r\nTrailer: X-T\r\n" +
		"Transfer-Encoding: chunked\r\nContent-Length: 9\r\nX-App: a\r\n\r\n")
	var h respHead
	if _, err := parseResponse(raw, false, &h); err != nil {
		t.Fatal(err)
	}
	got := string(h.appendClient(nil, raw, true, []byte("DATE")))
	want := "HTTP/1.1 200 Fine\r\nTrailer: X-T\r\nX-App: a\r\nDate: DATE\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
	if got != want {
		t.Fatalf("client head\n got %q\nwant %q", got, want)
	}
}

// TestChunkScanner: the end of a chunked body is found however the bytes
// are split, and what follows it is not taken.
func TestChunkScanner(t *testing.T) {
	body := "5;ext=1\r\nhello\r\n1A\r\n" + strings.Repeat("z", 26) + "\r\n0\r\nX-T: 1\r\n\r\n"
	stream := body + "NEXT"
	for split := 1; split < len(stream); split++ {
		var s chunkScanner
		taken, done := 0, false
		for _, part := range []string{stream[:split], stream[split:]} {
			if done {
				break
			}
			n, d, err := s.scan([]byte(part))
			if err != nil {
				t.Fatalf("split %d: %v", split, err)
			}
			taken += n
			done = d
		}
		if !done || taken != len(body) {
			t.Fatalf("split %d: done %v, took %d of %d", split, done, taken, len(body))
		}
	}
	for _, bad := range []string{"x\r\n", "5\r\nhelloXX", "\r\n", "fffffffffffffffff\r\n"} {
		var s chunkScanner
		if _, _, err := s.scan([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestKindOf(t *testing.T) {
	for name, want := range map[string]uint8{
		"host": hHost, "Content-Length": hContentLength, "connection": hConnection, "Keep-Alive": hHop,
		"Proxy-Connection": hHop, "Proxy-Authorization": hHop, "Proxy-Authenticate": hHop, "Trailer": hHop,
		"te": hTE, "Transfer-Encoding": hTransferEncoding, "Upgrade": hUpgrade, "Expect": hExpect,
		"X-Forwarded-For": hXFF, "x-forwarded-host": hXFHost, "X-Forwarded-Proto": hXFProto,
		"User-Agent": hUserAgent, "Referer": hReferer, "Date": hDate, "X-Other": hOther,
	} {
		if got := kindOf([]byte(name)); got != want {
			t.Errorf("%s: kind %d, want %d", name, got, want)
		}
	}
}

// FuzzParseRequestAgrees: whatever head the loops accept, net/http's
// parser accepts too and reads the same way (method, target, Host, body
// length), so that the loop and the instance cannot disagree on where a
// request ends.
func FuzzParseRequestAgrees(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /p?q HTTP/1.1\r\nHost: a:1\r\nContent-Length: 3\r\n\r\nabc",
		"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close, X-Y\r\nX-Y: 1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
		"PUT /x HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 0\r\nTE: trailers\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h reqHead
		if parseRequest(b, &h) != headOK || int64(len(b)-h.headLen) < h.bodyLen {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			t.Fatalf("the loop accepts %q, net/http refuses it: %v", b, err)
		}
		hl := h.lines[h.host]
		switch {
		case req.Method != string(b[:h.methodEnd]):
			t.Fatalf("%q: method %q vs %q", b, req.Method, b[:h.methodEnd])
		case req.RequestURI != string(b[h.target:h.targetEnd]):
			t.Fatalf("%q: target %q vs %q", b, req.RequestURI, b[h.target:h.targetEnd])
		case req.Host != string(b[hl.val:hl.valEnd]):
			t.Fatalf("%q: host %q vs %q", b, req.Host, b[hl.val:hl.valEnd])
		case req.ContentLength != h.bodyLen || len(req.TransferEncoding) > 0:
			t.Fatalf("%q: length %d %v vs %d", b, req.ContentLength, req.TransferEncoding, h.bodyLen)
		case req.Close != h.closeAfter:
			t.Fatalf("%q: close %v vs %v", b, req.Close, h.closeAfter)
		}
		// What goes upstream parses to the same request again.
		up := h.appendUpstream(nil, b, nil, "192.0.2.1")
		req2, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(up)))
		if err != nil {
			t.Fatalf("upstream request %q does not parse: %v", up, err)
		}
		if req2.ContentLength != h.bodyLen && !(h.bodyLen == 0 && req2.ContentLength <= 0) {
			t.Fatalf("upstream request %q: length %d, want %d", up, req2.ContentLength, h.bodyLen)
		}
		if req2.Host != req.Host || req2.RequestURI != req.RequestURI {
			t.Fatalf("upstream request %q: host %q uri %q", up, req2.Host, req2.RequestURI)
		}
	})
}

// FuzzParseResponseAgrees: whatever response the loops pass on, net/http
// reads alike (status, framing), and for a chunked body it ends where the
// chunk scanner says it does, so that a kept-alive connection to an
// instance never carries the tail of one answer into the next.
func FuzzParseResponseAgrees(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nNEXT",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n1;e=1\r\nh\r\n0\r\nX: 1\r\n\r\n",
		"HTTP/1.1 404 Not Found\nContent-Length: 0\n\n",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h respHead
		more, err := parseResponse(b, false, &h)
		if more || err != nil || h.status < 200 {
			return
		}
		br := bufio.NewReaderSize(bytes.NewReader(b), len(b)+16)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("the loop passes %q on, net/http refuses it: %v", b, err)
		}
		if resp.StatusCode != h.status {
			t.Fatalf("%q: status %d vs %d", b, resp.StatusCode, h.status)
		}
		switch h.framing {
		case frameLength:
			if resp.ContentLength != h.length || len(resp.TransferEncoding) > 0 {
				t.Fatalf("%q: length %d %v vs %d", b, resp.ContentLength, resp.TransferEncoding, h.length)
			}
		case frameChunked:
			if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
				t.Fatalf("%q: transfer encoding %v, want chunked", b, resp.TransferEncoding)
			}
			var s chunkScanner
			n, done, serr := s.scan(b[h.headLen:])
			_, rerr := io.ReadAll(resp.Body)
			if serr != nil || !done {
				return // the loop cuts the exchange short: nothing is reused
			}
			if rerr != nil {
				t.Fatalf("%q: the scanner finds a whole body, net/http: %v", b, rerr)
			}
			if used := len(b) - br.Buffered(); used != h.headLen+n {
				t.Fatalf("%q: the body ends at %d for net/http, at %d for the scanner", b, used, h.headLen+n)
			}
		case frameClose:
			if resp.ContentLength != -1 || len(resp.TransferEncoding) > 0 {
				t.Fatalf("%q: close-framed for the loop, not for net/http (%d %v)", b, resp.ContentLength, resp.TransferEncoding)
			}
		}
	})
}
