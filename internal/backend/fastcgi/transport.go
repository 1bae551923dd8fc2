package fastcgi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
)

// Transport is an http.RoundTripper that speaks FastCGI (responder role)
// to one application. Its exported fields must not change once it is in
// use; its methods are safe for concurrent use.
type Transport struct {
	// Dial connects to the application, typically to its unix socket.
	Dial func(ctx context.Context) (net.Conn, error)
	// Root is the document root. The longest prefix of the URL path that
	// names a regular file under Root is SCRIPT_NAME and the rest is
	// PATH_INFO (/index.php/a/b: /index.php and /a/b); a directory runs its
	// index.php. SCRIPT_FILENAME is Root plus SCRIPT_NAME.
	Root string
	// Script, when set, is the SCRIPT_FILENAME of every request: a front
	// controller, or the program for a FastCGI binary such as mapserv.
	// SCRIPT_NAME is its base name when the URL path starts with that
	// (/index.php/a), else empty; the rest of the path is PATH_INFO.
	// DOCUMENT_ROOT is Root, or Script's directory without Root.
	Script string
	// Params are extra FastCGI params; they override the computed ones.
	Params map[string]string
	// Stderr receives the application's FCGI_STDERR output, a line at a
	// time, without the line end. It is called from the goroutine that
	// reads the response and must not block. Nil discards it.
	Stderr func(line string)
	// MaxIdleConns is how many kept connections may wait idle; 0 means
	// 2. A negative value disables FCGI_KEEP_CONN: the application closes
	// each connection after its request.
	MaxIdleConns int
	// ConnInfo finds the client connection's description in a request's
	// context; nil means ConnInfoFrom. It lets a caller that keeps its own
	// context value avoid cloning every request.
	ConnInfo func(context.Context) (ConnInfo, bool)

	mu   sync.Mutex
	idle []*conn // most recently used last
}

// headerLimit bounds the response header, so that an application that
// never ends its header cannot make drover buffer without end.
const headerLimit = 1 << 20

// conn is one connection to the application with the buffers that are
// reused by each request made on it.
type conn struct {
	nc     net.Conn
	br     *bufio.Reader // records from the application
	s      stream        // the current request's record stream
	hr     *bufio.Reader // response header and body, over s
	reused bool          // it served a request before: it may have gone stale
}

func newConn(nc net.Conn) *conn {
	c := &conn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10)}
	c.hr = bufio.NewReaderSize(&c.s, 4<<10)
	return c
}

var preludePool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// RoundTrip implements http.RoundTripper. The response body streams the
// application's output as it arrives; the connection is reused once the
// body has been read to its end (io.EOF).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	closeBody := func() {
		if body != nil {
			body.Close()
		}
	}
	if t.Dial == nil {
		closeBody()
		return nil, errors.New("fastcgi: Transport.Dial is nil")
	}
	if req.URL == nil {
		closeBody()
		return nil, errors.New("fastcgi: request has no URL")
	}

	bp := preludePool.Get().(*[]byte)
	prelude, err := t.prelude(req, body == nil, (*bp)[:0])
	defer func() {
		if cap(prelude) <= 64<<10 { // a huge header is not kept
			*bp = prelude[:0]
			preludePool.Put(bp)
		}
	}()
	if err != nil {
		closeBody()
		return nil, err
	}

	ctx := req.Context()
	for retried := false; ; retried = true {
		c, err := t.getConn(ctx)
		if err != nil {
			closeBody()
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return nil, fmt.Errorf("fastcgi: dial: %w", err)
		}
		resp, sent, err := t.roundTrip(ctx, c, req, prelude, body)
		if err == nil {
			return resp, nil
		}
		// An idle connection that the application closed meanwhile
		// (php-cgi exits after PHP_FCGI_MAX_REQUESTS) fails before a
		// byte comes back, and the request is sent again on a new
		// connection: always when not even its beginning could be
		// written, for then the body is untouched, else only if it is
		// idempotent and its body can be replayed, for the application
		// may have run it and died.
		retry := !retried && c.reused && !c.s.got && ctx.Err() == nil && isConnGone(err)
		switch {
		case retry && !sent:
			continue
		case retry && replayable(req):
			if body != nil {
				if body, err = req.GetBody(); err != nil {
					return nil, fmt.Errorf("fastcgi: replay request body: %w", err)
				}
			}
			continue
		}
		if !sent {
			closeBody()
		}
		return nil, err
	}
}

// replayable reports whether req may be sent twice: it is idempotent
// (RFC 9110 section 9.2.2) and its body can be had again.
func replayable(req *http.Request) bool {
	if req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, key := req.Header["Idempotency-Key"]
	_, xkey := req.Header["X-Idempotency-Key"]
	return key || xkey
}

// prelude encodes FCGI_BEGIN_REQUEST and the params, and the end of
// FCGI_STDIN when there is no body, so that a request without a body takes
// a single write.
func (t *Transport) prelude(req *http.Request, noBody bool, b []byte) ([]byte, error) {
	params, err := t.params(req, nil)
	if err != nil {
		return b, err
	}
	b = appendBeginRequest(b, t.MaxIdleConns >= 0)
	if b, err = appendPairRecords(b, typeParams, requestID, params); err != nil {
		return b, err
	}
	if noBody {
		b = appendRecord(b, typeStdin, requestID, nil)
	}
	return b, nil
}

// roundTrip makes one attempt on c. It owns c: c is closed on error, and
// otherwise handed to the response body. sent reports whether the prelude
// was written; until then body is untouched, and after it body belongs to
// the writer, which closes it.
func (t *Transport) roundTrip(ctx context.Context, c *conn, req *http.Request, prelude []byte, body io.ReadCloser) (resp *http.Response, sent bool, err error) {
	// Cancellation closes the connection: it unblocks every read and
	// write, and the application sees its client go away.
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	c.s.reset(c.br, t.Stderr)
	c.hr.Reset(&c.s)

	fail := func(what string, err error, w *bodyWriter) error {
		stop()
		c.nc.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		} else if werr := w.failure(); werr != nil {
			// The body's own error explains why the connection
			// broke; the read error would only say "closed".
			return werr
		}
		return fmt.Errorf("fastcgi: %s: %w", what, err)
	}

	if _, err := c.nc.Write(prelude); err != nil {
		return nil, false, fail("write request", err, nil)
	}
	var w *bodyWriter
	if body != nil {
		w = startBodyWriter(c.nc, body, req.ContentLength)
	}

	c.s.limit = headerLimit
	code, reason, header, err := readHeader(c.hr, errProtocol)
	if err != nil {
		return nil, true, fail("read response header", err, w)
	}
	c.s.limit = -1

	contentLength := int64(-1)
	if cl := header.Get("Content-Length"); cl != "" {
		if n, ok := parseContentLength(cl); ok {
			contentLength = n
		}
	}
	return &http.Response{
		Status:        reason,
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          &responseBody{t: t, c: c, w: w, ctx: ctx, stop: stop},
		ContentLength: contentLength,
		Request:       req,
	}, true, nil
}

// isConnGone reports whether err means that the peer had closed the
// connection.
func isConnGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// getConn returns an idle connection that is still open, or dials.
func (t *Transport) getConn(ctx context.Context) (*conn, error) {
	if c := t.takeIdle(); c != nil {
		return c, nil
	}
	nc, err := t.Dial(ctx)
	if err != nil {
		return nil, err
	}
	return newConn(nc), nil
}

func (t *Transport) takeIdle() *conn {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			return nil
		}
		c := t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if open(c.nc) {
			c.reused = true
			return c
		}
		c.nc.Close()
	}
}

func (t *Transport) maxIdle() int {
	if t.MaxIdleConns == 0 {
		return 2
	}
	return max(t.MaxIdleConns, 0)
}

func (t *Transport) putIdle(c *conn) {
	t.mu.Lock()
	if len(t.idle) < t.maxIdle() {
		t.idle = append(t.idle, c)
		c = nil
	}
	t.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

// CloseIdleConnections closes the kept connections that no request uses.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
}

// open reports whether an idle connection can still be used: the peer has
// neither closed it nor sent anything unasked. It peeks without blocking,
// and assumes open for connections that are not sockets.
func open(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = err == syscall.EAGAIN
		return true
	})
	return err == nil && alive
}

// Ping checks that the application answers at the protocol level: it sends
// FCGI_GET_VALUES and waits for FCGI_GET_VALUES_RESULT (or FCGI_UNKNOWN_TYPE
// from an application that does not implement it, which is an answer too).
// It uses an idle connection when there is one, because a single-process
// php-cgi blocks on its kept connection and would not accept a new one.
// It closes the connection afterwards: whether an application keeps a
// connection after a management record varies (php-cgi 8.2 does, the
// specification does not say), and a ping is rare enough to dial again.
func (t *Transport) Ping(ctx context.Context) error {
	if t.Dial == nil {
		return errors.New("fastcgi: Transport.Dial is nil")
	}
	for retried := false; ; retried = true {
		c, err := t.getConn(ctx)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return fmt.Errorf("fastcgi: ping: dial: %w", err)
		}
		got, err := ping(ctx, c)
		if err == nil || retried || !c.reused || got || ctx.Err() != nil || !isConnGone(err) {
			return err
		}
	}
}

// ping sends FCGI_GET_VALUES on c and reads the answer. got reports
// whether any byte came back.
func ping(ctx context.Context, c *conn) (got bool, err error) {
	stop := context.AfterFunc(ctx, func() { c.nc.Close() })
	defer func() {
		stop()
		c.nc.Close()
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			err = fmt.Errorf("fastcgi: ping: %w", err)
		}
	}()
	b, err := appendPairRecords(nil, typeGetValues, 0, []param{
		{"FCGI_MAX_CONNS", ""}, {"FCGI_MAX_REQS", ""}, {"FCGI_MPXS_CONNS", ""},
	})
	if err != nil {
		return false, err
	}
	// appendPairRecords ends the stream with an empty record, which
	// management records do not have: FCGI_GET_VALUES is one record.
	b = b[:len(b)-headerLen]
	if _, err := c.nc.Write(b); err != nil {
		return false, fmt.Errorf("write FCGI_GET_VALUES: %w", err)
	}
	for {
		h, gotHeader, err := readRecordHeader(c.br)
		got = got || gotHeader
		if err != nil {
			return got, fmt.Errorf("read answer: %w", eofIsUnexpected(err))
		}
		if _, err := c.br.Discard(h.length + h.padding); err != nil {
			return true, fmt.Errorf("read answer: %w", eofIsUnexpected(err))
		}
		if h.id == 0 && (h.typ == typeGetValuesResult || h.typ == typeUnknownType) {
			return true, nil
		}
		if h.id == 0 {
			continue
		}
		return true, fmt.Errorf("read answer: record type %d for request %d: %w", h.typ, h.id, errProtocol)
	}
}
