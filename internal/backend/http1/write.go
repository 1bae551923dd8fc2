package http1

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

var headPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func putHead(hb *[]byte, b []byte) {
	if cap(b) > 64<<10 {
		return
	}
	*hb = b[:0]
	headPool.Put(hb)
}

var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, bodyBufSize); return &b }}

// appendHead appends the request line and header block of req to b. It
// follows Request.Write: Host from req.Host or req.URL.Host, the headers as
// given (except Host, Content-Length, Transfer-Encoding and Trailer, which
// come from the request's fields, and an empty User-Agent, which means
// none), Content-Length for a body of known length, chunked encoding for
// one of unknown length or with trailers, "Content-Length: 0" for
// bodyless methods other than GET and HEAD, and Connection: close when
// req.Close is set. Unlike Request.Write it adds no User-Agent, does not
// sort headers, and rejects invalid header names and values.
func appendHead(b []byte, req *http.Request, hasBody bool) (head []byte, chunked bool, err error) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !httpguts.ValidHeaderFieldName(method) {
		return b, false, errors.New("http1: invalid method " + strconv.Quote(method))
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c == 0x7f {
			return b, false, errors.New("http1: invalid Host " + strconv.Quote(host))
		}
	}
	b = append(b, method...)
	b = append(b, ' ')
	mark := len(b)
	b = appendRequestURI(b, req.URL, method, host)
	for _, c := range b[mark:] {
		if c <= ' ' || c == 0x7f {
			return b, false, errors.New("http1: invalid character in request URI " + strconv.Quote(string(b[mark:])))
		}
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\n"...)

	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		if !httpguts.ValidHeaderFieldValue(ua[0]) {
			return b, false, errors.New("http1: invalid User-Agent value")
		}
		b = append(b, "User-Agent: "...)
		b = append(b, ua[0]...)
		b = append(b, "\r\n"...)
	}
	if b, err = appendHeaderLines(b, req.Header, true); err != nil {
		return b, false, err
	}

	if hasBody {
		chunked = req.ContentLength <= 0 || len(req.Trailer) > 0 ||
			len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"
		if chunked {
			b = append(b, "Transfer-Encoding: chunked\r\n"...)
			if len(req.Trailer) > 0 {
				b = append(b, "Trailer: "...)
				first := true
				for k := range req.Trailer {
					if !httpguts.ValidHeaderFieldName(k) {
						return b, false, errors.New("http1: invalid trailer name " + strconv.Quote(k))
					}
					if !first {
						b = append(b, ", "...)
					}
					first = false
					b = append(b, k...)
				}
				b = append(b, "\r\n"...)
			}
		} else {
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, req.ContentLength, 10)
			b = append(b, "\r\n"...)
		}
	} else {
		if req.ContentLength > 0 {
			return b, false, errors.New("http1: Request.ContentLength=" +
				strconv.FormatInt(req.ContentLength, 10) + " with nil Body")
		}
		if method != http.MethodGet && method != http.MethodHead {
			b = append(b, "Content-Length: 0\r\n"...)
		}
	}
	if req.Close && !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close") {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	return b, chunked, nil
}

// appendRequestURI appends what url.URL.RequestURI returns, without
// building an intermediate string.
func appendRequestURI(b []byte, u *url.URL, method, host string) []byte {
	if method == http.MethodConnect && u.Path == "" {
		if u.Opaque != "" {
			return append(b, u.Opaque...)
		}
		return append(b, host...)
	}
	if u.Opaque != "" {
		if len(u.Opaque) >= 2 && u.Opaque[0] == '/' && u.Opaque[1] == '/' {
			b = append(b, u.Scheme...)
			b = append(b, ':')
		}
		b = append(b, u.Opaque...)
	} else if p := u.EscapedPath(); p != "" {
		b = append(b, p...)
	} else {
		b = append(b, '/')
	}
	if u.ForceQuery || u.RawQuery != "" {
		b = append(b, '?')
		b = append(b, u.RawQuery...)
	}
	return b
}

// appendHeaderLines appends "Key: value\r\n" for each value of h. With
// request set it skips the headers a request's fields control.
func appendHeaderLines(b []byte, h http.Header, request bool) ([]byte, error) {
	for k, vs := range h {
		if request {
			switch k {
			case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
				continue
			}
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return b, errors.New("http1: invalid header name " + strconv.Quote(k))
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return b, errors.New("http1: invalid value for header " + k)
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	return b, nil
}

// bodyReadError is a failure of the request body itself, not of the
// connection.
type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "http1: read request body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }

// bodyWriter streams a request body on its own goroutine. The fields
// above done are set before the goroutine starts and then read only by
// it; finished and err belong to the exchange's owner.
type bodyWriter struct {
	nc      net.Conn
	bp      *[]byte // pooled copy buffer; its start holds the head
	n0      int     // head bytes at the start of *bp
	bigHead []byte  // the head, when it did not fit
	body    io.ReadCloser
	cl      int64
	chunked bool
	trailer http.Header

	done     chan error
	finished bool
	err      error
}

// startWriter starts streaming req's head and body to the connection.
func (c *conn) startWriter(head []byte, req *http.Request, chunked bool) *bodyWriter {
	w := &bodyWriter{
		nc:      c.nc,
		bp:      bodyBufPool.Get().(*[]byte),
		body:    req.Body,
		cl:      req.ContentLength,
		chunked: chunked,
		trailer: req.Trailer,
		done:    make(chan error, 1),
	}
	if buf := *w.bp; len(head) <= len(buf)/2 {
		w.n0 = copy(buf, head)
	} else {
		w.bigHead = append([]byte(nil), head...)
	}
	go w.run()
	return w
}

func (w *bodyWriter) run() {
	err := w.write()
	w.body.Close()
	bodyBufPool.Put(w.bp)
	w.bp, w.body, w.bigHead = nil, nil, nil
	w.done <- err
	var be *bodyReadError
	if errors.As(err, &be) {
		// The upstream waits for body bytes that will never come: make
		// the response read fail too.
		w.nc.Close()
	}
}

func (w *bodyWriter) write() error {
	buf := *w.bp
	if w.bigHead != nil {
		if _, err := w.nc.Write(w.bigHead); err != nil {
			return err
		}
	}
	if !w.chunked {
		// Known length: the head goes out with the first piece of the
		// body.
		n0 := w.n0
		rem := w.cl
		for rem > 0 {
			lim := len(buf)
			if int64(lim-n0) > rem {
				lim = n0 + int(rem)
			}
			n, rerr := w.body.Read(buf[n0:lim])
			if n < 0 || n > lim-n0 {
				return &bodyReadError{errors.New("invalid Read result")}
			}
			rem -= int64(n)
			if n0+n > 0 {
				if _, err := w.nc.Write(buf[:n0+n]); err != nil {
					return err
				}
				n0 = 0
			}
			if rerr == io.EOF {
				if rem > 0 {
					return &bodyReadError{errShortBody}
				}
				break
			}
			if rerr != nil {
				return &bodyReadError{rerr}
			}
		}
		return nil
	}

	// Unknown length: like net/http, send the head at once (the body may
	// be slow to come and the upstream may answer on the head alone),
	// then one write per chunk with its size line and CRLF around it.
	if w.n0 > 0 {
		if _, err := w.nc.Write(buf[:w.n0]); err != nil {
			return err
		}
	}
	const pre = 18     // room for the hex size and CRLF
	const post = 2 + 5 // CRLF after the data, "0\r\n\r\n" when last
	for {
		n, rerr := w.body.Read(buf[pre : len(buf)-post])
		if n < 0 || n > len(buf)-post-pre {
			return &bodyReadError{errors.New("invalid Read result")}
		}
		start, end := pre, pre
		if n > 0 {
			var hx [16]byte
			h := strconv.AppendUint(hx[:0], uint64(n), 16)
			start = pre - 2 - len(h)
			copy(buf[start:], h)
			buf[pre-2], buf[pre-1] = '\r', '\n'
			end = pre + n
			buf[end], buf[end+1] = '\r', '\n'
			end += 2
		}
		if rerr == io.EOF && len(w.trailer) == 0 {
			end += copy(buf[end:], "0\r\n\r\n")
		}
		if end > start {
			if _, err := w.nc.Write(buf[start:end]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return &bodyReadError{rerr}
		}
	}
	if len(w.trailer) > 0 {
		// Trailer values are read now: the body's reader may set them
		// until EOF.
		t := append(buf[:0], "0\r\n"...)
		t, err := appendHeaderLines(t, w.trailer, false)
		if err != nil {
			return &bodyReadError{err}
		}
		t = append(t, "\r\n"...)
		if _, err := w.nc.Write(t); err != nil {
			return err
		}
	}
	return nil
}

// poll reports, without blocking, whether the writer finished and how.
func (w *bodyWriter) poll() (bool, error) {
	if !w.finished {
		select {
		case w.err = <-w.done:
			w.finished = true
		default:
		}
	}
	return w.finished, w.err
}

// wait is poll that waits up to d.
func (w *bodyWriter) wait(d time.Duration) (bool, error) {
	if done, err := w.poll(); done {
		return done, err
	}
	t := time.NewTimer(d)
	select {
	case w.err = <-w.done:
		w.finished = true
	case <-t.C:
	}
	t.Stop()
	return w.finished, w.err
}
