package h1

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"
)

// body is a request body: Content-Length bytes, or a chunked body and
// its trailer, read from the connection's bufio.Reader. The handler may
// read and close it from any goroutine.
type body struct {
	c    *conn
	resp *response // for the 100 Continue decision

	// sendContinue: Expect: 100-continue, not answered yet. Atomic: the
	// response reads it from the handler's goroutine while another may
	// be reading the body.
	sendContinue atomic.Bool

	mu      sync.Mutex // guards the fields below
	remain  int64      // Content-Length bytes left
	chunked bool
	cr      io.Reader // the chunked decoder, made at the first read
	trailer http.Header
	eof     bool
	err     error // a read error, sticky
	closed  bool
}

// errBodyClosed is what Read returns after Close, as net/http's does.
var errBodyClosed = errors.New("http: invalid Read on closed Body")

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBodyClosed
	}
	return b.readLocked(p)
}

func (b *body) readLocked(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	c := b.c
	c.liftDeadline()
	if b.sendContinue.Load() {
		// The response may be starting on another goroutine. The
		// decision is taken under wmu, as commit's is: either the 100
		// goes out before the head, or the head went out first and
		// commit saw that no 100 was sent (and closes the connection
		// after the response).
		c.wmu.Lock()
		var err error
		if b.sendContinue.Load() && (b.resp == nil || !b.resp.committed) {
			b.sendContinue.Store(false)
			_, _ = c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			err = c.bw.Flush()
		}
		c.wmu.Unlock()
		if err != nil {
			b.err = err
			return 0, err
		}
	}
	var n int
	var err error
	if b.chunked {
		if b.cr == nil {
			b.cr = httputil.NewChunkedReader(c.br)
		}
		n, err = b.cr.Read(p)
		if err == io.EOF {
			err = b.readTrailer()
		} else if err != nil {
			err = badBody(err)
		}
	} else {
		if int64(len(p)) > b.remain {
			p = p[:b.remain]
		}
		n, err = c.br.Read(p)
		b.remain -= int64(n)
		if b.remain == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	if err == io.EOF {
		b.eof = true
		c.bodyEOF()
	} else if err != nil {
		b.err = err
	}
	return n, err
}

func badBody(err error) error {
	if err == io.ErrUnexpectedEOF {
		return err
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) {
		return err
	}
	return errors.New("h1: malformed chunked request body: " + err.Error())
}

// declareTrailer prepares r.Trailer from the Trailer header, as net/http
// does: the keys are there from the start, the values once the body has
// been read.
func (b *body) declareTrailer(r *http.Request) error {
	vv := r.Header["Trailer"]
	if len(vv) == 0 {
		return nil
	}
	t := http.Header{}
	for _, v := range vv {
		for _, k := range strings.Split(v, ",") {
			k = canonical(strings.Trim(k, " \t"))
			switch k {
			case "":
				continue
			case "Transfer-Encoding", "Trailer", "Content-Length", "Host":
				return badRequest("forbidden trailer " + k)
			}
			t[k] = nil
		}
	}
	r.Trailer = t
	b.trailer = t
	return nil
}

// readTrailer reads the trailer section after the last chunk into the
// request's Trailer map, and returns io.EOF when it ended well.
func (b *body) readTrailer() error {
	c := b.c
	limit := c.srv.maxHeaderBytes()
	for size := 0; ; {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return badBody(err)
		}
		if size += len(line); size > limit {
			return errors.New("h1: request trailer too large")
		}
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" {
			return io.EOF
		}
		name, value, ok := strings.Cut(s, ":")
		if !ok || !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(strings.Trim(value, " \t")) {
			return errors.New("h1: malformed request trailer")
		}
		key := canonical(name)
		switch key {
		case "Transfer-Encoding", "Trailer", "Content-Length", "Host":
			continue
		}
		if b.trailer != nil {
			b.trailer[key] = append(b.trailer[key], strings.Trim(value, " \t"))
		}
	}
}

func (b *body) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return nil
}

// abandon makes the body unreadable for good, once its connection is
// closed and its buffers about to go back to the pools: a handler's
// goroutine that still reads it (a backend writer that outlived the
// response) gets an error instead of another connection's bytes. The
// lock waits for a read in progress, which the closed connection ends.
func (b *body) abandon() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.eof && b.err == nil {
		b.err = net.ErrClosed
	}
	b.sendContinue.Store(false)
}

// maxDrain is how much of an unread body h1 reads and discards to keep
// the connection, like net/http's 256 KiB.
const maxDrain = 256 << 10

// drain reads what the handler left of the body, so that the next
// request can be read, and reports whether the connection can stay. A
// body the client was still waiting to send (Expect: 100-continue not
// answered) is not read: the connection closes instead.
func (b *body) drain() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.eof {
		return true
	}
	if b.err != nil || b.sendContinue.Load() || !b.chunked && b.remain > maxDrain {
		return false
	}
	buf := make([]byte, 4096)
	for n := 0; n < maxDrain; {
		m, err := b.readLocked(buf)
		n += m
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
	return false
}
