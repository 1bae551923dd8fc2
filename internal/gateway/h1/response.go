package h1

import (
	"bufio"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// response is the http.ResponseWriter of one request. Only the handler's
// goroutine (and serve, after the handler returned) uses it.
type response struct {
	c      *conn
	req    *http.Request
	header http.Header

	status        int  // the final status, once WriteHeader was called
	committed     bool // the head is in c.bw; written under c.wmu
	chunked       bool
	noBody        bool  // HEAD, 1xx, 204, 304: the body is not sent
	contentLength int64 // declared by the handler; -1: none
	written       int64
	closeAfter    bool
	hijacked      bool
	err           error // a write error; the connection is done
}

// holdBack is how much of a response without Content-Length is held back
// in the hope that the handler finishes and a Content-Length can be sent.
const holdBack = 4 << 10

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.hijacked || w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	w.status = code
	// The framing is decided here, from the header as it is now (as
	// net/http does): commit writes Content-Length and
	// Transfer-Encoding itself, whatever the map says by then.
	if cl := w.header["Content-Length"]; len(cl) == 1 && digits(cl[0]) {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil {
			w.contentLength = n
		}
	}
	w.noBody = w.req.Method == http.MethodHead || code == http.StatusNoContent ||
		code == http.StatusNotModified || code == http.StatusSwitchingProtocols
	if w.contentLength >= 0 || w.noBody {
		w.commit(false)
	}
}

// writeInformational sends a 1xx answer (103 Early Hints) with the
// header as it is now.
func (w *response) writeInformational(code int) {
	if w.err != nil || w.req.ProtoMinor == 0 {
		return // HTTP/1.0 clients get no 1xx (RFC 9110 section 15.2)
	}
	c := w.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.bw.WriteString(statusLine(w.req.ProtoMinor, code))
	writeHeaderLines(c.bw, w.header, nil)
	c.bw.WriteString("\r\n")
	w.err = c.bw.Flush()
}

func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil // an empty chunk would end a chunked body
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	c := w.c
	if !w.committed {
		if len(c.pend)+len(p) <= holdBack {
			c.pend = append(c.pend, p...)
			w.written += int64(len(p))
			return len(p), nil
		}
		w.commit(false)
	}
	w.written += int64(len(p))
	if w.chunked {
		c.bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
		c.bw.WriteString("\r\n")
		c.bw.Write(p)
		_, w.err = c.bw.WriteString("\r\n")
	} else {
		_, w.err = c.bw.Write(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// commit writes the head into c.bw, then whatever was held back. final
// says the handler is done, so a held-back body's length is known.
func (w *response) commit(final bool) {
	if w.committed {
		return
	}
	c, h, r := w.c, w.header, w.req
	// See body.readLocked: once committed, no 100 Continue goes out, and
	// a client never told to send its body cannot stay.
	c.wmu.Lock()
	w.committed = true
	if b, ok := r.Body.(*body); ok && b.sendContinue.Load() {
		w.closeAfter = true
	}
	c.wmu.Unlock()
	trailers := declaredTrailers(h)
	delete(h, "Content-Length")
	delete(h, "Transfer-Encoding")

	if w.contentLength < 0 && !w.noBody {
		switch {
		case final && trailers == nil:
			w.contentLength = int64(len(c.pend))
		case r.ProtoMinor >= 1:
			w.chunked = true
		default:
			w.closeAfter = true // HTTP/1.0: the close ends the body
		}
	}
	if r.Close || httpguts.HeaderValuesContainsToken(h["Connection"], "close") || c.srv.inShutdown.Load() {
		w.closeAfter = true
	}

	bw := c.bw
	bw.WriteString(statusLine(r.ProtoMinor, w.status))
	writeHeaderLines(bw, h, trailers)
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(httpDate())
		bw.WriteString("\r\n")
	}
	switch {
	case w.chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case w.contentLength >= 0 && w.status != http.StatusNoContent && w.status != http.StatusSwitchingProtocols:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(w.contentLength, 10))
		bw.WriteString("\r\n")
	}
	switch {
	case w.closeAfter && !httpguts.HeaderValuesContainsToken(h["Connection"], "close"):
		bw.WriteString("Connection: close\r\n")
	case !w.closeAfter && r.ProtoMinor == 0 && !httpguts.HeaderValuesContainsToken(h["Connection"], "keep-alive"):
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
	if len(c.pend) > 0 {
		p := c.pend
		c.pend = c.pend[:0]
		if w.chunked {
			bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
			bw.WriteString("\r\n")
			bw.Write(p)
			bw.WriteString("\r\n")
		} else {
			bw.Write(p)
		}
	}
	if cap(c.pend) > holdBack {
		c.pend = nil
	}
}

// finish completes the response after the handler returned, and reports
// whether the connection can serve another request.
func (w *response) finish() bool {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.commit(true)
	bw := w.c.bw
	if w.chunked && w.err == nil {
		bw.WriteString("0\r\n")
		writeTrailer(bw, w.header)
		bw.WriteString("\r\n")
	}
	if err := bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
	if w.err != nil {
		return false
	}
	if !w.noBody && w.contentLength >= 0 && w.written != w.contentLength {
		return false // a short body: only closing tells the client
	}
	return !w.closeAfter
}

// Flush sends what is buffered; a response without Content-Length is
// chunked from here on.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError is Flush for http.ResponseController.
func (w *response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	w.commit(false)
	w.err = w.c.bw.Flush()
	return w.err
}

// Hijack hands the connection to the handler; h1 forgets it.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.status != 0 {
		w.commit(false) // a head the handler wrote goes out first, as with net/http
	}
	if w.committed && w.err == nil {
		if err := w.c.bw.Flush(); err != nil {
			return nil, nil, err
		}
	}
	c := w.c
	c.stopWatch()
	c.liftDeadline()
	w.hijacked = true
	c.srv.forget(c)
	return c.rwc, bufio.NewReadWriter(c.br, c.bw), nil
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error  { return w.c.handlerReadDeadline(t) }
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }

// EnableFullDuplex serves http.ResponseController: h1 always lets a
// handler read the request body while it writes the response.
func (w *response) EnableFullDuplex() error { return nil }

// declaredTrailers returns the trailer names the handler announced, in
// the Trailer header or as http.TrailerPrefix keys.
func declaredTrailers(h http.Header) []string {
	var names []string
	for _, v := range h["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = strings.Trim(k, " \t"); httpguts.ValidHeaderFieldName(k) {
				names = append(names, canonical(k))
			}
		}
	}
	for k := range h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && httpguts.ValidHeaderFieldName(name) {
			names = append(names, name)
		}
	}
	return names
}

// writeHeaderLines writes h, except the trailer fields that are only
// declared now and sent at the end. Values are written with CR and LF
// made spaces, so that a value cannot start a header line of its own.
func writeHeaderLines(bw *bufio.Writer, h http.Header, trailers []string) {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		if trailers != nil && slices.Contains(trailers, k) && k != "Trailer" {
			continue
		}
		writeField(bw, k, vv)
	}
}

// writeTrailer writes the declared trailers that have values.
func writeTrailer(bw *bufio.Writer, h http.Header) {
	for _, k := range declaredTrailers(h) {
		vv := h[k]
		if p := h[http.TrailerPrefix+k]; len(p) > 0 {
			vv = p
		}
		switch k {
		case "Transfer-Encoding", "Content-Length", "Trailer", "":
			continue
		}
		writeField(bw, k, vv)
	}
}

// writeField writes one "Name: value" line per value, with CR and LF in
// a value made spaces.
func writeField(bw *bufio.Writer, k string, vv []string) {
	for _, v := range vv {
		bw.WriteString(k)
		bw.WriteString(": ")
		if strings.ContainsAny(v, "\r\n") {
			v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
		}
		bw.WriteString(strings.Trim(v, " \t"))
		bw.WriteString("\r\n")
	}
}

var statusLines [600]atomic.Pointer[string]

// statusLine returns "HTTP/1.x code reason\r\n"; the lines of codes below
// 600 are made once.
func statusLine(minor, code int) string {
	if minor == 0 {
		return "HTTP/1.0 " + statusText(code)
	}
	if code < len(statusLines) {
		if p := statusLines[code].Load(); p != nil {
			return *p
		}
		s := "HTTP/1.1 " + statusText(code)
		statusLines[code].Store(&s)
		return s
	}
	return "HTTP/1.1 " + statusText(code)
}

func statusText(code int) string {
	t := http.StatusText(code)
	if t == "" {
		t = "status code " + strconv.Itoa(code)
	}
	return strconv.Itoa(code) + " " + t + "\r\n"
}

// httpDate is the Date header's value, made once a second.
func httpDate() []byte {
	now := time.Now()
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.b
	}
	d := &date{sec: sec, b: now.UTC().AppendFormat(nil, http.TimeFormat)}
	dateCache.Store(d)
	return d.b
}

type date struct {
	sec int64
	b   []byte
}

var dateCache atomic.Pointer[date]
