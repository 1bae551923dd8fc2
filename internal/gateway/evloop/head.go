package evloop

import (
	"net/http"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

// The loops parse only what they serve themselves, and strictly: anything
// unusual (HTTP/1.0, a bare LF, obsolete line folding, a percent-escaped
// path, a body that is chunked or larger than a buffer, Upgrade, Expect)
// is left to the h1 server, which answers every case including the
// malformed ones. So a head the loops accept is one h1 would accept too.

// parse results.
const (
	headMore    = iota // the head (or its body) is not all in the buffer yet
	headOK             // a request the loop serves
	headHandoff        // a request for the h1 server
)

// maxLines bounds the header lines a loop parses; a longer head goes to h1.
const maxLines = 64

// Header kinds: the names the loops act on.
const (
	hOther uint8 = iota
	hHost
	hContentLength
	hConnection
	hHop // hop-by-hop: Keep-Alive, Proxy-Connection, Proxy-Authorization, Proxy-Authenticate, Trailer
	hTE
	hTransferEncoding
	hUpgrade
	hExpect
	hXFF
	hXFHost
	hXFProto
	hUserAgent
	hReferer
	hDate
)

// line is one header line of a head, as offsets into its buffer.
type line struct {
	name, nameEnd int // name is b[name:nameEnd]
	val, valEnd   int // the value without surrounding blanks
	kind          uint8
}

// reqHead is a parsed request head; every offset points into the buffer
// it was parsed from.
type reqHead struct {
	headLen    int // the head's bytes, with the empty line
	methodEnd  int // the method is b[:methodEnd]
	target     int // the request target is b[target:targetEnd]
	targetEnd  int
	pathEnd    int   // the path is b[target:pathEnd]
	bodyLen    int64 // Content-Length; 0 without one
	host       int   // index into lines of the Host line
	ua, ref    int   // of User-Agent and Referer; -1 when absent
	closeAfter bool  // Connection: close
	teTrailers bool  // TE names trailers
	hasCL      bool
	lines      [maxLines]line
	nlines     int
	conn       [8][2]int // the tokens Connection names, as offsets
	nconn      int
}

// parseRequest parses the request head at the start of b.
func parseRequest(b []byte, h *reqHead) int {
	// The request line: METHOD SP /target SP HTTP/1.1 CRLF.
	i := 0
	for i < len(b) && b[i] >= 'A' && b[i] <= 'Z' {
		i++
	}
	if i == len(b) {
		return headMore
	}
	if i == 0 || b[i] != ' ' {
		return headHandoff
	}
	h.methodEnd = i
	if string(b[:i]) == "CONNECT" || string(b[:i]) == "PRI" {
		return headHandoff
	}
	i++
	h.target = i
	h.pathEnd = -1
	for ; i < len(b); i++ {
		c := b[i]
		if c == ' ' {
			break
		}
		if c <= ' ' || c >= 0x7f || c == '#' {
			return headHandoff
		}
		if h.pathEnd < 0 {
			switch c {
			case '?':
				h.pathEnd = i
			case '%':
				return headHandoff // the router needs the decoded path
			}
		}
	}
	if i == len(b) {
		return headMore
	}
	if i == h.target || b[h.target] != '/' {
		return headHandoff
	}
	h.targetEnd = i
	if h.pathEnd < 0 {
		h.pathEnd = i
	}
	i++
	const version = "HTTP/1.1\r\n"
	if len(b)-i < len(version) {
		if string(b[i:]) != version[:len(b)-i] {
			return headHandoff
		}
		return headMore
	}
	if string(b[i:i+len(version)]) != version {
		return headHandoff
	}
	i += len(version)

	h.host, h.ua, h.ref = -1, -1, -1
	h.nlines, h.nconn = 0, 0
	h.bodyLen, h.hasCL, h.closeAfter, h.teTrailers = 0, false, false, false
	for {
		n, st := parseLine(b, i, h.lines[:], &h.nlines, false)
		if st != headOK {
			return st
		}
		if n == 0 { // the empty line
			i += 2
			break
		}
		l := &h.lines[h.nlines-1]
		v := b[l.val:l.valEnd]
		switch l.kind {
		case hHost:
			if h.host >= 0 || len(v) == 0 || !httpguts.ValidHostHeader(unsafeString(v)) {
				return headHandoff
			}
			h.host = h.nlines - 1
		case hContentLength:
			if h.hasCL {
				return headHandoff
			}
			cl, ok := parseLength(v)
			if !ok {
				return headHandoff
			}
			h.hasCL, h.bodyLen = true, cl
		case hTransferEncoding, hUpgrade, hExpect:
			return headHandoff
		case hConnection:
			if !h.connTokens(b, l) {
				return headHandoff
			}
		case hTE:
			h.teTrailers = h.teTrailers || hasToken(v, "trailers")
		case hUserAgent:
			h.ua = h.nlines - 1
		case hReferer:
			h.ref = h.nlines - 1
		}
		i += n
	}
	if h.host < 0 {
		return headHandoff // h1 answers 400
	}
	h.headLen = i
	return headOK
}

// parseLine parses the header line at b[i:] into lines[*n] and returns its
// length with its line end; 0 for the empty line that ends the head. Lines
// end in CRLF, or, when bareLF (an instance's response), in LF alone.
func parseLine(b []byte, i int, lines []line, n *int, bareLF bool) (int, int) {
	start := i
	if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
		return 0, headOK
	}
	if *n == len(lines) {
		return 0, headHandoff
	}
	for i < len(b) && isToken(b[i]) {
		i++
	}
	if i == len(b) {
		return 0, headMore
	}
	if i == start || b[i] != ':' {
		return 0, headHandoff // obsolete folding, a bare LF, a bad name
	}
	l := &lines[*n]
	l.name, l.nameEnd = start, i
	i++
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	l.val = i
	end := i
	for ; i < len(b); i++ {
		c := b[i]
		if c == '\n' && bareLF {
			break
		}
		if c == '\r' {
			if i+1 == len(b) {
				return 0, headMore
			}
			if b[i+1] != '\n' {
				return 0, headHandoff // a lone CR: a line break to some clients
			}
			i++
			break
		}
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, headHandoff
		}
		if c != ' ' && c != '\t' {
			end = i + 1
		}
	}
	if i == len(b) {
		return 0, headMore
	}
	l.valEnd = end
	l.kind = kindOf(b[l.name:l.nameEnd])
	*n++
	return i + 1 - start, headOK
}

// connTokens records the header names a Connection line lists.
func (h *reqHead) connTokens(b []byte, l *line) bool {
	v := b[l.val:l.valEnd]
	for s, e := range tokens(v) {
		tok := v[s:e]
		switch {
		case equalFold(tok, "close"):
			h.closeAfter = true
		case equalFold(tok, "keep-alive"):
		default:
			switch kindOf(tok) {
			case hHost, hContentLength, hXFF, hXFHost, hXFProto:
				// Dropping these would change the framing or what
				// drover vouches for: h1 sorts such a request out.
				return false
			}
			if h.nconn == len(h.conn) {
				return false
			}
			h.conn[h.nconn] = [2]int{l.val + s, l.val + e}
			h.nconn++
		}
	}
	return true
}

// named reports whether the Connection header listed the name of l.
func (h *reqHead) named(b []byte, l *line) bool {
	for _, t := range h.conn[:h.nconn] {
		if equalFoldBytes(b[l.name:l.nameEnd], b[t[0]:t[1]]) {
			return true
		}
	}
	return false
}

// appendUpstream appends the request to send to an instance: the head
// with its hop-by-hop headers removed and X-Forwarded-For, -Host and
// -Proto set (as the h1 path's forward does), then the body. path
// replaces the request target's path when a prefix was stripped.
func (h *reqHead) appendUpstream(dst, b []byte, path []byte, clientIP string) []byte {
	dst = append(dst, b[:h.methodEnd+1]...)
	if path != nil {
		dst = append(dst, path...)
		dst = append(dst, b[h.pathEnd:h.targetEnd]...)
	} else {
		dst = append(dst, b[h.target:h.targetEnd]...)
	}
	dst = append(dst, " HTTP/1.1\r\n"...)
	var xff []byte // the prior X-Forwarded-For values, joined
	method := b[:h.methodEnd]
	for k := range h.lines[:h.nlines] {
		l := &h.lines[k]
		switch l.kind {
		case hConnection, hHop, hTE, hXFHost, hXFProto:
			continue
		case hXFF:
			if len(xff) > 0 {
				xff = append(xff, ", "...)
			}
			xff = append(xff, b[l.val:l.valEnd]...)
			continue
		case hContentLength:
			if h.bodyLen == 0 && (string(method) == "GET" || string(method) == "HEAD") {
				continue
			}
		}
		if h.nconn > 0 && h.named(b, l) {
			continue
		}
		dst = append(dst, b[l.name:l.nameEnd]...)
		dst = append(dst, ": "...)
		dst = append(dst, b[l.val:l.valEnd]...)
		dst = append(dst, "\r\n"...)
	}
	if !h.hasCL && string(method) != "GET" && string(method) != "HEAD" {
		dst = append(dst, "Content-Length: 0\r\n"...)
	}
	if h.teTrailers {
		dst = append(dst, "Te: trailers\r\n"...)
	}
	dst = append(dst, "X-Forwarded-For: "...)
	if len(xff) > 0 {
		dst = append(dst, xff...)
		dst = append(dst, ", "...)
	}
	dst = append(dst, clientIP...)
	hl := &h.lines[h.host]
	dst = append(dst, "\r\nX-Forwarded-Host: "...)
	dst = append(dst, b[hl.val:hl.valEnd]...)
	dst = append(dst, "\r\nX-Forwarded-Proto: http\r\n\r\n"...)
	return append(dst, b[h.headLen:h.headLen+int(h.bodyLen)]...)
}

// Response framings.
const (
	frameNone    = iota // no body (HEAD, 1xx, 204, 304)
	frameLength         // Content-Length bytes
	frameChunked        // chunked, passed through as it is
	frameClose          // until the instance closes; re-chunked for the client
)

// respHead is a parsed response head.
type respHead struct {
	headLen  int
	status   int
	reason   int // the reason phrase is b[reason:lineEnd]
	lineEnd  int
	minor    int // HTTP/1.minor
	length   int64
	framing  int
	keep     bool // the instance keeps the connection open
	hasDate  bool
	lines    [maxRespLines]line
	nlines   int
	conn     [8][2]int
	nconn    int
	hasCLine bool
}

// maxRespLines bounds the header lines of a response the loops pass on
// (applications send more than clients do: Set-Cookie, CSP...).
const maxRespLines = 128

// errLimit is a response beyond what a loop passes on, which is not the
// instance's fault: it is answered 502 without taking the instance out.
type errLimit string

func (e errLimit) Error() string { return "response beyond the front end's limits: " + string(e) }

// errResponse is a response head the loop cannot pass on.
type errResponse string

func (e errResponse) Error() string { return "malformed response: " + string(e) }

// parseResponse parses the response head at the start of b. more says
// the head is not all there yet.
func parseResponse(b []byte, head bool, h *respHead) (more bool, err error) {
	const proto = "HTTP/1."
	if len(b) < len(proto)+6 {
		if len(b) > len(proto) {
			b = b[:len(proto)]
		}
		if string(b) != proto[:len(b)] {
			return false, errResponse("status line")
		}
		return true, nil
	}
	if string(b[:len(proto)]) != proto || b[7] < '0' || b[7] > '9' || b[8] != ' ' {
		return false, errResponse("status line")
	}
	h.minor = int(b[7] - '0')
	code := 0
	for k := 9; k < 12; k++ {
		if b[k] < '0' || b[k] > '9' {
			return false, errResponse("status code")
		}
		code = code*10 + int(b[k]-'0')
	}
	if code < 100 {
		return false, errResponse("status code")
	}
	h.status = code
	i := 12
	switch b[i] {
	case ' ':
		i++
	case '\r', '\n':
	default:
		return false, errResponse("status code")
	}
	h.reason = i
	for ; i < len(b) && b[i] != '\n'; i++ {
		if c := b[i]; c < ' ' && c != '\t' && c != '\r' || c == 0x7f || c == '\r' && i+1 < len(b) && b[i+1] != '\n' {
			return false, errResponse("status line")
		}
	}
	if i == len(b) {
		return true, nil
	}
	h.lineEnd = i
	if b[i-1] == '\r' {
		h.lineEnd--
	}
	if h.lineEnd < h.reason {
		h.lineEnd = h.reason
	}
	i++

	h.nlines, h.nconn = 0, 0
	h.length, h.hasDate, h.hasCLine = -1, false, false
	te, closeTok, keepTok := false, false, false
	for {
		if i < len(b) && b[i] == '\n' {
			i++
			break
		}
		if h.nlines == len(h.lines) {
			return false, errLimit("more than " + strconv.Itoa(maxRespLines) + " header lines")
		}
		n, st := parseLine(b, i, h.lines[:], &h.nlines, true)
		if st == headMore {
			return true, nil
		}
		if st != headOK {
			return false, errResponse("header line")
		}
		if n == 0 {
			i += 2
			break
		}
		l := &h.lines[h.nlines-1]
		v := b[l.val:l.valEnd]
		switch l.kind {
		case hContentLength:
			cl, ok := parseLength(v)
			if !ok || h.hasCLine && cl != h.length {
				return false, errResponse("Content-Length")
			}
			h.length, h.hasCLine = cl, true
		case hTransferEncoding:
			if h.minor == 0 {
				// Faulty framing (RFC 9112 section 6.1), read
				// differently by different parsers.
				return false, errResponse("Transfer-Encoding in an HTTP/1.0 response")
			}
			te = true
			if !equalFold(v, "chunked") {
				return false, errResponse("Transfer-Encoding " + strconv.Quote(string(v)))
			}
		case hConnection:
			for s, e := range tokens(v) {
				tok := v[s:e]
				switch {
				case equalFold(tok, "close"):
					closeTok = true
				case equalFold(tok, "keep-alive"):
					keepTok = true
				default:
					switch kindOf(tok) {
					case hContentLength, hTransferEncoding:
						// Dropped, they would leave the body
						// unframed.
						return false, errResponse("Connection names " + string(tok))
					}
					if h.nconn < len(h.conn) {
						h.conn[h.nconn] = [2]int{l.val + s, l.val + e}
						h.nconn++
					}
				}
			}
		case hDate:
			h.hasDate = true
		}
		i += n
	}
	h.headLen = i
	h.keep = !closeTok && (h.minor >= 1 || keepTok) // close wins, as in net/http
	switch {
	case head || code < 200 || code == 204 || code == 304:
		h.framing = frameNone
	case te:
		h.framing = frameChunked
	case h.hasCLine:
		h.framing = frameLength
	default:
		h.framing = frameClose
		h.keep = false
	}
	return false, nil
}

// appendClient appends the head to send to the client: the status line
// as HTTP/1.1, the instance's headers without the hop-by-hop ones, a Date
// when the instance sent none, the framing, and Connection: close when
// the client connection ends after this response.
func (h *respHead) appendClient(dst, b []byte, closeAfter bool, date []byte) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(h.status), 10)
	dst = append(dst, ' ')
	if h.lineEnd > h.reason {
		dst = append(dst, b[h.reason:h.lineEnd]...)
	} else if t := http.StatusText(h.status); t != "" {
		dst = append(dst, t...)
	}
	dst = append(dst, "\r\n"...)
lines:
	for k := range h.lines[:h.nlines] {
		l := &h.lines[k]
		switch l.kind {
		case hConnection, hTransferEncoding, hUpgrade, hTE:
			continue
		case hContentLength:
			if h.framing == frameChunked {
				continue // chunked wins (RFC 9112 section 6.3)
			}
		case hHop:
			if !equalFold(b[l.name:l.nameEnd], "Trailer") {
				continue
			}
		}
		for _, t := range h.conn[:h.nconn] {
			if equalFoldBytes(b[l.name:l.nameEnd], b[t[0]:t[1]]) {
				continue lines
			}
		}
		dst = append(dst, b[l.name:l.nameEnd]...)
		dst = append(dst, ": "...)
		dst = append(dst, b[l.val:l.valEnd]...)
		dst = append(dst, "\r\n"...)
	}
	if !h.hasDate {
		dst = append(dst, "Date: "...)
		dst = append(dst, date...)
		dst = append(dst, "\r\n"...)
	}
	if h.framing == frameChunked || h.framing == frameClose {
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	if closeAfter {
		dst = append(dst, "Connection: close\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// chunkScanner follows a chunked body passed through as it is, to find
// where it ends. It wants CRLF line ends throughout, as net/http's
// reader does.
type chunkScanner struct {
	state  int
	remain int64 // of the current chunk's data
	digits int
	blank  bool // the trailer line being read is empty so far
	colon  bool // and has had its colon
}

const (
	chSize      = iota // in the chunk-size digits
	chExt              // after the digits, up to CR
	chSizeLF           // the LF of the size line
	chData             // in the data
	chDataCR           // the CR after the data
	chDataLF           // the LF after the data
	chTrailer          // in a trailer line (or the final empty one)
	chTrailerLF        // the LF of a trailer line
	chDone
)

// scan consumes p and returns how much of it belongs to the body, and
// whether the body ended there.
func (s *chunkScanner) scan(p []byte) (int, bool, error) {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch s.state {
		case chSize:
			switch {
			case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F':
				if s.digits++; s.digits > 15 {
					return 0, false, errResponse("chunk size")
				}
				s.remain = s.remain<<4 | int64(unhex(c))
			case s.digits > 0 && (c == ';' || c == ' ' || c == '\t'):
				s.state = chExt
			case s.digits > 0 && c == '\r':
				s.state = chSizeLF
			default:
				return 0, false, errResponse("chunk size")
			}
		case chExt:
			switch c {
			case '\r':
				s.state = chSizeLF
			case '\n':
				return 0, false, errResponse("chunk size line")
			}
		case chSizeLF:
			if c != '\n' {
				return 0, false, errResponse("chunk size line")
			}
			s.digits = 0
			if s.remain == 0 {
				s.state, s.blank = chTrailer, true
			} else {
				s.state = chData
			}
		case chData:
			n := int64(len(p) - i)
			if n > s.remain {
				n = s.remain
			}
			i += int(n) - 1
			if s.remain -= n; s.remain == 0 {
				s.state = chDataCR
			}
		case chDataCR:
			if c != '\r' {
				return 0, false, errResponse("chunk end")
			}
			s.state = chDataLF
		case chDataLF:
			if c != '\n' {
				return 0, false, errResponse("chunk end")
			}
			s.state = chSize
		case chTrailer: // name ":" value, as a header line
			switch {
			case c == '\r':
				if !s.blank && !s.colon {
					return 0, false, errResponse("trailer line")
				}
				s.state = chTrailerLF
			case s.blank:
				if !isToken(c) {
					return 0, false, errResponse("trailer line")
				}
				s.blank = false
			case !s.colon:
				if c == ':' {
					s.colon = true
				} else if !isToken(c) {
					return 0, false, errResponse("trailer line")
				}
			case c < ' ' && c != '\t' || c == 0x7f:
				return 0, false, errResponse("trailer line")
			}
		case chTrailerLF:
			if c != '\n' {
				return 0, false, errResponse("trailer line")
			}
			if s.blank {
				s.state = chDone
				return i + 1, true, nil
			}
			s.state, s.blank, s.colon = chTrailer, true, false
		}
	}
	return len(p), false, nil
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// tokens yields the comma-separated elements of a header value, without
// the blanks around them, as offsets (as httpguts reads them: "close 0"
// is one element, and not "close").
func tokens(v []byte) func(func(int, int) bool) {
	return func(yield func(int, int) bool) {
		i := 0
		for i <= len(v) {
			s := i
			for i < len(v) && v[i] != ',' {
				i++
			}
			e := i
			i++ // past the comma
			for s < e && (v[s] == ' ' || v[s] == '\t') {
				s++
			}
			for e > s && (v[e-1] == ' ' || v[e-1] == '\t') {
				e--
			}
			if s < e && !yield(s, e) {
				return
			}
		}
	}
}

func hasToken(v []byte, tok string) bool {
	for s, e := range tokens(v) {
		if equalFold(v[s:e], tok) {
			return true
		}
	}
	return false
}

// kindOf classifies a header name.
func kindOf(name []byte) uint8 {
	switch len(name) {
	case 2:
		if equalFold(name, "TE") {
			return hTE
		}
	case 4:
		switch {
		case equalFold(name, "Host"):
			return hHost
		case equalFold(name, "Date"):
			return hDate
		}
	case 6:
		if equalFold(name, "Expect") {
			return hExpect
		}
	case 7:
		switch {
		case equalFold(name, "Upgrade"):
			return hUpgrade
		case equalFold(name, "Referer"):
			return hReferer
		case equalFold(name, "Trailer"):
			return hHop
		}
	case 10:
		switch {
		case equalFold(name, "Connection"):
			return hConnection
		case equalFold(name, "Keep-Alive"):
			return hHop
		case equalFold(name, "User-Agent"):
			return hUserAgent
		}
	case 14:
		if equalFold(name, "Content-Length") {
			return hContentLength
		}
	case 15:
		if equalFold(name, "X-Forwarded-For") {
			return hXFF
		}
	case 16:
		switch {
		case equalFold(name, "Proxy-Connection"):
			return hHop
		case equalFold(name, "X-Forwarded-Host"):
			return hXFHost
		}
	case 17:
		switch {
		case equalFold(name, "Transfer-Encoding"):
			return hTransferEncoding
		case equalFold(name, "X-Forwarded-Proto"):
			return hXFProto
		}
	case 18:
		if equalFold(name, "Proxy-Authenticate") {
			return hHop
		}
	case 19:
		if equalFold(name, "Proxy-Authorization") {
			return hHop
		}
	}
	return hOther
}

// equalFold compares ASCII case-insensitively.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != lower(s[i]) {
			return false
		}
	}
	return true
}

func equalFoldBytes(a, b []byte) bool { return equalFold(a, unsafeString(b)) }

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// parseLength parses a Content-Length value.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return
}()

func isToken(c byte) bool { return tokenTable[c] }

// unsafeString views b as a string for a call that does not keep it.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// dateCache is the Date header's value, made at most once a second per
// loop (each loop has its own; see loop.date).
type dateCache struct {
	sec int64
	b   []byte
}

func (d *dateCache) get(now time.Time) []byte {
	if s := now.Unix(); s != d.sec || d.b == nil {
		d.sec = s
		d.b = now.UTC().AppendFormat(d.b[:0], "Mon, 02 Jan 2006 15:04:05 GMT")
	}
	return d.b
}
