package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// The lean response head parser.
//
// readHead handles the common, well-formed response head that is already
// entirely in the connection's read buffer, with fewer allocations than
// http.ReadResponse: the Response, its Header map, one string holding the
// whole head (status, keys and values are substrings of it) and one
// []string backing the header values. Whenever the head is anything else
// (not buffered yet after the buffer filled up, bare LF line ends, control
// characters, folded lines, invalid names, Pragma or Trailer headers,
// repeated or invalid Content-Length, a Transfer-Encoding other than a
// lone "chunked" or with a Content-Length, HTTP/1.0 with
// Transfer-Encoding, …) it consumes nothing and reports !ok, and
// http.ReadResponse parses the head instead, with its own rules and
// errors. What readHead accepts it must turn into exactly the Response
// http.ReadResponse would; FuzzReadHead checks that.

// bodyKind says how a response body is delimited.
type bodyKind uint8

const (
	bodyNone    bodyKind = iota // no body (HEAD, 1xx, 204, 304, Content-Length: 0)
	bodyLength                  // Content-Length bytes
	bodyChunked                 // chunked, then trailers
	bodyEOF                     // until the connection closes
	bodyStd                     // the Body http.ReadResponse made
)

// readHead parses a response head at the start of br's buffer; see above.
// It may block reading until the head is complete.
func readHead(br *bufio.Reader, req *http.Request) (resp *http.Response, kind bodyKind, length int64, ok bool) {
	if br.Buffered() == 0 {
		if _, err := br.Peek(1); err != nil {
			return nil, 0, 0, false
		}
	}
	// Find the end of the head, checking every byte on the way.
	end, lines, scanned := -1, 0, 0
	var buf []byte
	for end < 0 {
		buf, _ = br.Peek(br.Buffered())
		for i := scanned; i < len(buf); i++ {
			c := buf[i]
			if c >= 0x20 && c != 0x7f || c == '\t' {
				if i > 0 && buf[i-1] == '\r' {
					return nil, 0, 0, false // bare CR
				}
				continue
			}
			switch c {
			case '\r':
				if i > 0 && buf[i-1] == '\r' {
					return nil, 0, 0, false
				}
			case '\n':
				if i == 0 || buf[i-1] != '\r' {
					return nil, 0, 0, false // bare LF
				}
				lines++
				if i >= 3 && buf[i-2] == '\n' {
					end = i + 1
				}
			default:
				return nil, 0, 0, false
			}
			if end >= 0 {
				break
			}
		}
		if end >= 0 {
			break
		}
		scanned = len(buf)
		if len(buf) >= br.Size() {
			return nil, 0, 0, false
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return nil, 0, 0, false
		}
	}
	s := string(buf[:end])

	// Status line: exactly "HTTP/1.x DDD" and optionally " reason".
	line, rest, _ := strings.Cut(s, "\r\n")
	if len(line) < 12 || line[:7] != "HTTP/1." || line[7] != '0' && line[7] != '1' || line[8] != ' ' ||
		len(line) > 12 && line[12] != ' ' {
		return nil, 0, 0, false
	}
	code := 0
	for _, c := range []byte(line[9:12]) {
		if c < '0' || c > '9' {
			return nil, 0, 0, false
		}
		code = code*10 + int(c-'0')
	}
	minor := int(line[7] - '0')
	status := line[9:]

	// Header lines; lines-2 of them (the status line and the empty line
	// are not).
	n := lines - 2
	h := make(http.Header, n)
	strs := make([]string, n+1) // one more for TransferEncoding
	for {
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			break
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			return nil, 0, 0, false
		}
		key := line[:colon]
		if !httpguts.ValidHeaderFieldName(key) {
			return nil, 0, 0, false
		}
		key = canonicalKey(key)
		v := line[colon+1:]
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		if vv, dup := h[key]; dup {
			h[key] = append(vv, v)
		} else {
			vv, strs = strs[:1:1], strs[1:]
			vv[0] = v
			h[key] = vv
		}
	}

	// What readTransfer does, for the cases handled here.
	if _, ok := h["Pragma"]; ok {
		return nil, 0, 0, false
	}
	if _, ok := h["Trailer"]; ok {
		return nil, 0, 0, false
	}
	chunked := false
	if te, ok := h["Transfer-Encoding"]; ok {
		if _, both := h["Content-Length"]; both || minor == 0 || len(te) != 1 || te[0] != "chunked" {
			return nil, 0, 0, false
		}
		delete(h, "Transfer-Encoding")
		chunked = true
	}
	cl := int64(-1)
	if v, ok := h["Content-Length"]; ok {
		if len(v) != 1 || len(v[0]) == 0 || len(v[0]) > 18 {
			return nil, 0, 0, false
		}
		cl = 0
		for _, c := range []byte(v[0]) {
			if c < '0' || c > '9' {
				return nil, 0, 0, false
			}
			cl = cl*10 + int64(c-'0')
		}
	}
	isHead := req.Method == http.MethodHead
	bodyAllowed := (code < 100 || code > 199) && code != 204 && code != 304
	realLength := cl
	if isHead || !bodyAllowed {
		realLength = 0
	} else if chunked {
		realLength = -1
	}
	var closing bool
	conn := h["Connection"]
	if minor == 0 {
		closing = httpguts.HeaderValuesContainsToken(conn, "close") || !httpguts.HeaderValuesContainsToken(conn, "keep-alive")
	} else if httpguts.HeaderValuesContainsToken(conn, "close") {
		delete(h, "Connection")
		closing = true
	}
	if realLength == -1 && !chunked && bodyAllowed {
		closing = true
	}

	resp = &http.Response{
		Status:        status,
		StatusCode:    code,
		Proto:         s[:8],
		ProtoMajor:    1,
		ProtoMinor:    minor,
		Header:        h,
		ContentLength: realLength,
		Close:         closing,
		Request:       req,
		Body:          http.NoBody,
	}
	if isHead {
		resp.ContentLength = cl
	}
	if chunked {
		strs[0] = "chunked"
		resp.TransferEncoding = strs[:1:1]
	}
	switch {
	case chunked && (isHead || !bodyAllowed):
		kind = bodyNone
	case chunked:
		kind = bodyChunked
	case realLength == 0:
		kind = bodyNone
	case realLength > 0:
		kind = bodyLength
	case closing:
		kind = bodyEOF
	default:
		kind = bodyNone
	}
	br.Discard(end)
	return resp, kind, realLength, true
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey for a valid token,
// without allocating for the common header names.
func canonicalKey(k string) string {
	upper := true
	canonical := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			canonical = false
			break
		}
		upper = c == '-'
	}
	if canonical {
		return k
	}
	var a [64]byte
	if len(k) > len(a) {
		return textproto.CanonicalMIMEHeaderKey(k)
	}
	b := a[:len(k)]
	upper = true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		} else if !upper && 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
		upper = c == '-'
	}
	if v, ok := commonKeys[string(b)]; ok {
		return v
	}
	return string(b)
}

var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{
		"Accept-Ranges", "Access-Control-Allow-Origin", "Age", "Cache-Control",
		"Connection", "Content-Disposition", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Range", "Content-Security-Policy", "Content-Type",
		"Date", "Etag", "Expires", "Keep-Alive", "Last-Modified", "Link", "Location",
		"Referrer-Policy", "Retry-After", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Transfer-Encoding", "Vary", "Via",
		"Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options",
		"X-Powered-By", "X-Request-Id", "X-Xss-Protection",
	} {
		m[k] = k
	}
	return m
}()

var (
	errTrailerEOF  = errors.New("http1: unexpected EOF reading trailer")
	errLongTrailer = errors.New("http1: suspiciously long trailer after chunked body")
)

// bodyReader reads a response body of the kind readHead found, from the
// connection's buffer.
type bodyReader struct {
	kind bodyKind
	br   *bufio.Reader
	n    int64     // bodyLength: bytes left
	cr   io.Reader // bodyChunked: the chunk decoder
	resp *http.Response
	std  io.Reader // bodyStd
}

func (r *bodyReader) Read(p []byte) (int, error) {
	switch r.kind {
	case bodyStd:
		return r.std.Read(p)
	case bodyNone:
		return 0, io.EOF
	case bodyLength:
		if r.n <= 0 {
			return 0, io.EOF
		}
		if int64(len(p)) > r.n {
			p = p[:r.n]
		}
		n, err := r.br.Read(p)
		r.n -= int64(n)
		if r.n == 0 {
			// The end: say so now, so that the connection is
			// released without another call.
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	case bodyChunked:
		if r.cr == nil {
			r.cr = httputil.NewChunkedReader(r.br)
		}
		n, err := r.cr.Read(p)
		if err == io.EOF {
			if terr := r.readTrailer(); terr != nil {
				r.kind = bodyStd
				r.std = failReader{terr}
				return n, terr
			}
			r.kind = bodyNone
		}
		return n, err
	default: // bodyEOF
		return r.br.Read(p)
	}
}

// readTrailer reads what follows the last chunk, as net/http does.
func (r *bodyReader) readTrailer() error {
	buf, err := r.br.Peek(2)
	if len(buf) == 2 && buf[0] == '\r' && buf[1] == '\n' {
		r.br.Discard(2)
		return nil
	}
	if len(buf) < 2 {
		return errTrailerEOF
	}
	if err != nil {
		return err
	}
	if !seeUpcomingDoubleCRLF(r.br) {
		return errLongTrailer
	}
	hdr, err := textproto.NewReader(r.br).ReadMIMEHeader()
	if err != nil {
		if err == io.EOF {
			return errTrailerEOF
		}
		return err
	}
	if r.resp.Trailer == nil {
		r.resp.Trailer = http.Header(hdr)
		return nil
	}
	for k, vv := range hdr {
		r.resp.Trailer[k] = vv
	}
	return nil
}

func seeUpcomingDoubleCRLF(r *bufio.Reader) bool {
	for peekSize := 4; ; peekSize++ {
		// This loop stops when Peek returns an error, which it does
		// when r's buffer has been filled.
		buf, err := r.Peek(peekSize)
		if bytes.HasSuffix(buf, []byte("\r\n\r\n")) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

type failReader struct{ err error }

func (r failReader) Read([]byte) (int, error) { return 0, r.err }
