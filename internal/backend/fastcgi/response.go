package fastcgi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
)

// maxStderrLine bounds a buffered FCGI_STDERR line; a longer one is passed
// on in pieces.
const maxStderrLine = 16 << 10

var errHeaderTooLarge = fmt.Errorf("header larger than %d bytes", headerLimit)

type recordHeader struct {
	typ     byte
	id      uint16
	length  int
	padding int
}

// readRecordHeader reads and checks one record header. got reports whether
// any byte of it arrived.
func readRecordHeader(br *bufio.Reader) (h recordHeader, got bool, err error) {
	b, err := br.Peek(headerLen)
	got = len(b) > 0
	if err != nil {
		if got {
			err = eofIsUnexpected(err)
		}
		return h, got, err
	}
	if b[0] != version {
		return h, got, fmt.Errorf("record version %d: %w", b[0], errProtocol)
	}
	h = recordHeader{
		typ:     b[1],
		id:      binary.BigEndian.Uint16(b[2:]),
		length:  int(binary.BigEndian.Uint16(b[4:])),
		padding: int(b[6]),
	}
	br.Discard(headerLen)
	return h, got, nil
}

func eofIsUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// stream reads the records of the current request from a connection and
// presents its FCGI_STDOUT content as an io.Reader, passing FCGI_STDERR
// on as it goes. Read returns io.EOF at FCGI_END_REQUEST, and never waits
// for more than one record: what arrived is returned.
type stream struct {
	br     *bufio.Reader
	stderr func(string)
	stdout int  // unread content bytes of the current FCGI_STDOUT record
	pad    int  // padding still to skip after the current record
	limit  int  // bytes Read may still return; -1 = no limit
	got    bool // some byte of the response arrived
	err    error
	line   []byte // incomplete FCGI_STDERR line
}

func (s *stream) reset(br *bufio.Reader, stderr func(string)) {
	*s = stream{br: br, stderr: stderr, limit: -1, line: s.line[:0]}
}

func (s *stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for s.stdout == 0 {
		if s.err != nil {
			return 0, s.err
		}
		if err := s.next(); err != nil {
			s.err = err
			s.flushStderr()
		}
	}
	if s.limit == 0 {
		s.err = errHeaderTooLarge
		return 0, s.err
	}
	n := min(len(p), s.stdout)
	if s.limit > 0 {
		n = min(n, s.limit)
	}
	n, err := s.br.Read(p[:n])
	s.stdout -= n
	if s.limit > 0 {
		s.limit -= n
	}
	if err != nil {
		s.err = eofIsUnexpected(err)
		s.stdout = 0
		if n == 0 {
			return 0, s.err
		}
	}
	return n, nil
}

// ready returns how many bytes have arrived, or 0 when Read would wait:
// at a record boundary the next record must be here whole (for
// FCGI_STDOUT, its header and a byte of content).
func (s *stream) ready() int {
	if s.err != nil {
		return 1 // Read answers at once
	}
	n := s.br.Buffered()
	if s.stdout > 0 {
		return n
	}
	need := s.pad + headerLen
	if n < need {
		return 0
	}
	b, _ := s.br.Peek(need) // buffered: does not wait
	h := b[s.pad:]
	length, padding := int(binary.BigEndian.Uint16(h[4:])), int(h[6])
	if h[1] == typeStdout && length > 0 {
		need++
	} else {
		need += length + padding
	}
	if n < need {
		return 0
	}
	return n
}

// next reads the next record header and what goes with it, up to the
// content of an FCGI_STDOUT record, which Read hands out.
func (s *stream) next() error {
	if s.pad > 0 {
		if _, err := s.br.Discard(s.pad); err != nil {
			return eofIsUnexpected(err)
		}
		s.pad = 0
	}
	h, got, err := readRecordHeader(s.br)
	s.got = s.got || got
	if err != nil {
		// The application closed the connection before
		// FCGI_END_REQUEST: the response is incomplete.
		return eofIsUnexpected(err)
	}
	if h.id != requestID {
		if h.id == 0 && (h.typ == typeGetValuesResult || h.typ == typeUnknownType) {
			return s.skip(h.length + h.padding)
		}
		return fmt.Errorf("record type %d for request %d: %w", h.typ, h.id, errProtocol)
	}
	switch h.typ {
	case typeStdout:
		s.stdout, s.pad = h.length, h.padding
		return nil
	case typeStderr:
		if err := s.readStderr(h.length); err != nil {
			return err
		}
		return s.skip(h.padding)
	case typeEndRequest:
		if h.length < 8 {
			return fmt.Errorf("FCGI_END_REQUEST of %d bytes: %w", h.length, errProtocol)
		}
		b, err := s.br.Peek(8)
		if err != nil {
			return eofIsUnexpected(err)
		}
		status := b[4]
		if err := s.skip(h.length + h.padding); err != nil {
			return err
		}
		if status != statusRequestComplete {
			return protocolStatusError(status)
		}
		return io.EOF
	default:
		return fmt.Errorf("unexpected record type %d: %w", h.typ, errProtocol)
	}
}

func (s *stream) skip(n int) error {
	_, err := s.br.Discard(n)
	return eofIsUnexpected(err)
}

// readStderr passes n bytes of FCGI_STDERR content to the Stderr callback
// straight from the connection's buffer.
func (s *stream) readStderr(n int) error {
	for n > 0 {
		if s.br.Buffered() == 0 {
			if _, err := s.br.Peek(1); err != nil {
				return eofIsUnexpected(err)
			}
		}
		k := min(n, s.br.Buffered())
		if s.stderr != nil {
			b, _ := s.br.Peek(k)
			s.writeStderr(b)
		}
		s.br.Discard(k)
		n -= k
	}
	return nil
}

func (s *stream) writeStderr(b []byte) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			s.line = append(s.line, b...)
			for len(s.line) >= maxStderrLine {
				s.emit(s.line[:maxStderrLine])
				s.line = s.line[:copy(s.line, s.line[maxStderrLine:])]
			}
			return
		}
		s.line = append(s.line, b[:i]...)
		s.emit(s.line)
		s.line = s.line[:0]
		b = b[i+1:]
	}
}

// flushStderr passes on a last line that did not end in a newline.
func (s *stream) flushStderr() {
	if len(s.line) > 0 && s.stderr != nil {
		s.emit(s.line)
	}
	s.line = s.line[:0]
}

func (s *stream) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) > 0 {
		s.stderr(string(line))
	}
}

// ReadCGIHeader parses a CGI response header (RFC 3875 section 6) from r,
// as Transport does with a FastCGI application's output: header lines
// ended by \r\n or \n up to an empty line; Status ("404" or "404 Not
// Found") gives the code and status line, a Location without Status is a
// 302 redirect, and the default is 200. What follows the empty line is
// left in r: the body. A malformed line, or the end of r before the
// empty line, is an error. Nothing here bounds the header's size: a
// caller that reads untrusted output bounds it with the reader under r,
// as Transport does (1 MiB). Errors about the header's content wrap
// ErrMalformedCGIHeader.
func ReadCGIHeader(r *bufio.Reader) (code int, status string, h http.Header, err error) {
	return readHeader(r, ErrMalformedCGIHeader)
}

// ErrMalformedCGIHeader marks a CGI response header that ReadCGIHeader
// cannot parse.
var ErrMalformedCGIHeader = errors.New("malformed CGI response header")

// readHeader parses a CGI response header (RFC 3875 section 6): header
// lines ended by \r\n or \n up to an empty line; Status gives the code,
// Location without Status means a redirect. A malformed line is an error
// that wraps bad.
func readHeader(r *bufio.Reader, bad error) (code int, status string, h http.Header, err error) {
	h = make(http.Header)
	var buf []byte
	for {
		var line []byte
		line, buf, err = readLine(r, buf)
		if err != nil {
			if err == io.EOF {
				err = errors.New("application ended the request before the end of the header")
			}
			return 0, "", nil, err
		}
		if len(line) == 0 {
			break
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 || !validName(line[:i]) {
			return 0, "", nil, fmt.Errorf("header line %q: %w", truncate(line), bad)
		}
		value := strings.TrimSpace(string(line[i+1:]))
		if strings.ContainsAny(value, "\x00\r") {
			return 0, "", nil, fmt.Errorf("header line %q: %w", truncate(line), bad)
		}
		name := textproto.CanonicalMIMEHeaderKey(string(line[:i]))
		if name == "Status" {
			var ok bool
			if code, status, ok = parseStatus(value); !ok {
				return 0, "", nil, fmt.Errorf("status %q: %w", truncate(line), bad)
			}
			continue
		}
		h[name] = append(h[name], value)
	}
	if code == 0 {
		if h.Get("Location") != "" {
			code, status = http.StatusFound, "302 Found"
		} else {
			code, status = http.StatusOK, "200 OK"
		}
	}
	return code, status, h, nil
}

// readLine returns the next line without its line end. It is a slice of
// r's buffer or of buf (grown as needed), valid until the next call.
func readLine(r *bufio.Reader, buf []byte) (line, newBuf []byte, err error) {
	buf = buf[:0]
	for {
		frag, err := r.ReadSlice('\n')
		switch err {
		case nil:
			if len(buf) > 0 {
				buf = append(buf, frag...)
				frag = buf
			}
			frag = frag[:len(frag)-1]
			return bytes.TrimSuffix(frag, []byte("\r")), buf, nil
		case bufio.ErrBufferFull:
			buf = append(buf, frag...)
		default:
			if err == io.EOF && (len(buf) > 0 || len(frag) > 0) {
				err = errors.New("application ended the request in the middle of a header line")
			}
			return nil, buf, err
		}
	}
}

// parseStatus parses "404" or "404 Not Found".
func parseStatus(v string) (code int, status string, ok bool) {
	if len(v) < 3 || (len(v) > 3 && v[3] != ' ' && v[3] != '\t') {
		return 0, "", false
	}
	for i := range 3 {
		if v[i] < '0' || v[i] > '9' {
			return 0, "", false
		}
		code = code*10 + int(v[i]-'0')
	}
	if code < 100 {
		return 0, "", false
	}
	reason := strings.TrimSpace(v[3:])
	if reason == "" {
		reason = http.StatusText(code)
	}
	status = v[:3]
	if reason != "" {
		status += " " + reason
	}
	return code, status, true
}

func parseContentLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	for i := range len(v) {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// validName reports whether b is an RFC 9110 token.
func validName(b []byte) bool {
	for _, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return len(b) > 0
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// responseBody is the Body of a Response. Reading it to io.EOF hands the
// connection back for reuse; closing it before that closes the connection.
type responseBody struct {
	t    *Transport
	c    *conn
	w    *bodyWriter // nil without a request body
	ctx  context.Context
	stop func() bool // detaches the context from the connection

	mu    sync.Mutex
	state int
	err   error // why the body failed
}

const (
	bodyOpen   = iota
	bodyDone   // read to the end; the connection is no longer ours
	bodyFailed // the connection broke; err says why
	bodyClosed
)

var errBodyClosed = errors.New("fastcgi: read on closed response body")

func (b *responseBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	state, err := b.state, b.err
	b.mu.Unlock()
	switch state {
	case bodyDone:
		return 0, io.EOF
	case bodyFailed:
		return 0, err
	case bodyClosed:
		return 0, errBodyClosed
	}
	n, err := b.c.hr.Read(p)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		b.release()
		return n, io.EOF
	}
	if werr := b.w.failure(); werr != nil {
		err = werr // the request body broke the connection
	} else {
		if b.ctx.Err() != nil {
			err = b.ctx.Err()
		}
		err = fmt.Errorf("fastcgi: read response body: %w", err)
	}
	b.mu.Lock()
	if b.state == bodyClosed {
		err = errBodyClosed
	} else {
		b.state, b.err = bodyFailed, err
	}
	b.mu.Unlock()
	b.stop()
	b.c.nc.Close()
	return n, err
}

// Buffered reports how many bytes of the response (records included)
// have arrived and not been read: when it is not 0, Read will not wait.
// A proxy flushes its client only when Buffered is 0, so that a response
// that arrived in one piece leaves in one piece. Call it from the
// goroutine that reads.
func (b *responseBody) Buffered() int {
	b.mu.Lock()
	open := b.state == bodyOpen
	b.mu.Unlock()
	if !open {
		return 0
	}
	if n := b.c.hr.Buffered(); n > 0 {
		return n
	}
	return b.c.s.ready()
}

// release runs at FCGI_END_REQUEST: the connection is kept if nothing
// else may still arrive on it or be owed to it.
func (b *responseBody) release() {
	b.mu.Lock()
	if b.state != bodyOpen {
		b.mu.Unlock()
		return
	}
	b.state = bodyDone
	b.mu.Unlock()
	reuse := b.stop() // false: cancellation closed the connection
	if !b.w.finish(b.c.nc) {
		reuse = false
	}
	if b.c.br.Buffered() > 0 || b.t.MaxIdleConns < 0 {
		reuse = false
	}
	if reuse {
		b.t.putIdle(b.c)
	} else {
		b.c.nc.Close()
	}
}

// Close closes the connection unless the body was read to its end: what
// is left of the response would otherwise be read by the next request.
func (b *responseBody) Close() error {
	b.mu.Lock()
	state := b.state
	if state != bodyDone {
		b.state = bodyClosed
	}
	b.mu.Unlock()
	if state == bodyOpen {
		b.stop()
		b.c.nc.Close()
	}
	return nil
}
