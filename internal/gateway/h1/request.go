package h1

import (
	"bufio"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// headError is a request h1 refuses: it is answered with code and msg,
// and the connection closes.
type headError struct {
	code int
	msg  string
}

func (e *headError) Error() string { return strconv.Itoa(e.code) + " " + e.msg }

func badRequest(msg string) error { return &headError{http.StatusBadRequest, msg} }

// readHead reads a request head into c.head: the lines up to and with
// the empty line that ends it. Empty lines before the request line are
// skipped (RFC 9112 section 2.2).
func (c *conn) readHead() error {
	limit := c.srv.maxHeaderBytes()
	if cap(c.head) > 8<<10 {
		c.head = nil // a huge head does not stay with the connection
	}
	c.head = c.head[:0]
	midLine := false // the last piece read ended inside a line
	for {
		line, err := c.br.ReadSlice('\n')
		if len(c.head)+len(line) > limit {
			if bytesIndex(c.head, '\n') < 0 {
				return &headError{http.StatusRequestURITooLong, "request line too long"}
			}
			return &headError{http.StatusRequestHeaderFieldsTooLarge, "request header too large"}
		}
		if err == bufio.ErrBufferFull {
			c.head = append(c.head, line...)
			midLine = true
			continue
		}
		if err != nil {
			return err // EOF or timeout mid-head: nobody to answer
		}
		// Only a whole line can be the empty one: the end of a long
		// line read in pieces may be just its CRLF.
		empty := !midLine && (len(line) == 1 || len(line) == 2 && line[0] == '\r')
		midLine = false
		if empty && len(c.head) == 0 {
			continue // an empty line before the request line
		}
		c.head = append(c.head, line...)
		if empty {
			return nil
		}
	}
}

func bytesIndex(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// errPreface is readRequest's answer to the HTTP/2 preface on a
// connection's first request.
var errPreface = &headError{http.StatusHTTPVersionNotSupported, "HTTP/2 preface"}

// readRequest reads and checks one request head. The request has no
// context yet: serveRequest gives it one, in the one copy it makes.
func (c *conn) readRequest(first bool) (r http.Request, err error) {
	if err := c.readHead(); err != nil {
		return r, err
	}
	s := string(c.head) // every string of the request is a piece of this one
	line, rest, _ := strings.Cut(s, "\n")
	line = strings.TrimSuffix(line, "\r")

	method, line, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || method == "" || target == "" {
		return r, badRequest("malformed request line")
	}
	if !httpguts.ValidHeaderFieldName(method) {
		return r, badRequest("invalid method")
	}
	var major, minor int
	switch proto {
	case "HTTP/1.1":
		major, minor = 1, 1
	case "HTTP/1.0":
		major, minor = 1, 0
	case "HTTP/2.0":
		if first && method == "PRI" && target == "*" {
			return r, errPreface
		}
		return r, &headError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	default:
		var ok bool
		if major, minor, ok = http.ParseHTTPVersion(proto); !ok {
			return r, badRequest("malformed protocol version")
		}
		if major != 1 {
			return r, &headError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
		}
	}

	h, err := parseHeader(rest)
	if err != nil {
		return r, err
	}
	r = http.Request{
		Method:     method,
		Proto:      proto,
		ProtoMajor: major,
		ProtoMinor: minor,
		Header:     h,
		RequestURI: target,
		RemoteAddr: c.remoteAddr,
		Body:       http.NoBody,
	}

	switch {
	case method == http.MethodConnect:
		return r, &headError{http.StatusMethodNotAllowed, "CONNECT is not served"}
	case target == "*":
		if method != http.MethodOptions {
			return r, badRequest("request target * is only for OPTIONS")
		}
		r.URL = &url.URL{Path: "*"}
	default:
		u, err := url.ParseRequestURI(target)
		if err != nil || (u.Scheme == "" && target[0] != '/') {
			return r, badRequest("malformed request target")
		}
		r.URL = u
	}

	hosts := h["Host"]
	delete(h, "Host")
	switch {
	case len(hosts) > 1:
		return r, badRequest("more than one Host header")
	case len(hosts) == 1:
		r.Host = hosts[0]
	case major == 1 && minor >= 1:
		return r, badRequest("missing Host header")
	}
	if r.URL.Host != "" {
		r.Host = r.URL.Host // absolute form wins (RFC 9112 section 3.2.2)
	}
	if !httpguts.ValidHostHeader(r.Host) {
		return r, badRequest("malformed Host header")
	}

	r.Close = shouldClose(major, minor, h)
	if err := c.setBody(&r); err != nil {
		return r, err
	}
	return r, nil
}

// parseHeader parses header lines (each ending in \n, the last one empty).
func parseHeader(s string) (http.Header, error) {
	n := strings.Count(s, "\n") - 1
	if n <= 0 {
		return http.Header{}, nil
	}
	h := make(http.Header, n)
	vals := make([]string, n) // one backing array for the one-value slices
	i := 0
	for {
		line, rest, _ := strings.Cut(s, "\n")
		s = rest
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			return h, nil
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, badRequest("obsolete header line folding")
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			return nil, badRequest("malformed header line")
		}
		value = strings.Trim(value, " \t")
		if !httpguts.ValidHeaderFieldValue(value) {
			return nil, badRequest("invalid character in header " + strconv.Quote(name))
		}
		key := canonical(name)
		if vv, dup := h[key]; dup {
			h[key] = append(vv, value)
			continue
		}
		if i < len(vals) {
			vals[i] = value
			h[key] = vals[i : i+1 : i+1]
			i++
		} else {
			h[key] = []string{value}
		}
	}
}

// canonical returns the canonical form of a header name without
// allocating when it already is canonical or is a common header.
func canonical(name string) string {
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			var buf [64]byte
			if len(name) <= len(buf) {
				b := buf[:len(name)]
				copy(b, name)
				canonicalBytes(b)
				if k, ok := commonHeader[string(b)]; ok {
					return k
				}
			}
			return textproto.CanonicalMIMEHeaderKey(name)
		}
		upper = c == '-'
	}
	return name
}

func canonicalBytes(b []byte) {
	upper := true
	for i, c := range b {
		switch {
		case upper && 'a' <= c && c <= 'z':
			b[i] = c - ('a' - 'A')
		case !upper && 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
}

var commonHeader = map[string]string{}

func init() {
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Encoding", "Content-Length", "Content-Type",
		"Cookie", "Dnt", "Expect", "Host", "If-Match", "If-Modified-Since", "If-None-Match",
		"If-Range", "If-Unmodified-Since", "Keep-Alive", "Origin", "Pragma", "Priority",
		"Range", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile", "Sec-Ch-Ua-Platform",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User",
		"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions",
		"Sec-Websocket-Protocol", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Upgrade-Insecure-Requests", "User-Agent", "Via", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Request-Id",
		"X-Requested-With",
	} {
		commonHeader[k] = k
	}
}

// shouldClose applies RFC 9112 section 9.3: HTTP/1.1 keeps the
// connection unless told to close; HTTP/1.0 closes unless asked to keep.
func shouldClose(major, minor int, h http.Header) bool {
	if major == 1 && minor == 0 {
		return !httpguts.HeaderValuesContainsToken(h["Connection"], "keep-alive")
	}
	return httpguts.HeaderValuesContainsToken(h["Connection"], "close")
}

// setBody sets r's body from its framing headers (RFC 9112 section 6).
func (c *conn) setBody(r *http.Request) error {
	h := r.Header
	te, cl := h["Transfer-Encoding"], h["Content-Length"]
	if len(te) > 0 {
		if len(cl) > 0 {
			// Both framings: a request smuggling attempt, or a broken
			// client. Either way no safe reading exists.
			return badRequest("both Transfer-Encoding and Content-Length")
		}
		if r.ProtoMajor == 1 && r.ProtoMinor == 0 {
			return badRequest("Transfer-Encoding in an HTTP/1.0 request")
		}
		if len(te) != 1 || !strings.EqualFold(strings.Trim(te[0], " \t"), "chunked") {
			return &headError{http.StatusNotImplemented, "unsupported Transfer-Encoding"}
		}
		delete(h, "Transfer-Encoding")
		r.TransferEncoding = []string{"chunked"}
		r.ContentLength = -1
		b := &body{c: c, chunked: true}
		if err := b.declareTrailer(r); err != nil {
			return err
		}
		r.Body = b
	} else if len(cl) > 0 {
		n, err := strconv.ParseInt(cl[0], 10, 64)
		if err != nil || !digits(cl[0]) {
			return badRequest("malformed Content-Length")
		}
		for _, v := range cl[1:] {
			if v != cl[0] {
				return badRequest("conflicting Content-Length headers")
			}
		}
		r.ContentLength = n
		if n > 0 {
			r.Body = &body{c: c, remain: n}
		}
	}
	if r.Body != http.NoBody {
		if ex := h["Expect"]; len(ex) > 0 {
			if len(ex) != 1 || !strings.EqualFold(ex[0], "100-continue") {
				return &headError{http.StatusExpectationFailed, "unsupported Expect"}
			}
			if r.ProtoMinor >= 1 {
				r.Body.(*body).sendContinue.Store(true)
			}
		}
	}
	return nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
