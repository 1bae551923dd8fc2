package fastcgi

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// stdinPool holds the buffers of body writers: a full FCGI_STDIN record
// plus room for padding and the empty record that ends the stream.
var stdinPool = sync.Pool{New: func() any {
	b := make([]byte, headerLen+maxStdin+8+headerLen)
	return &b
}}

// bodyWriter copies a request body to FCGI_STDIN records in its own
// goroutine, while the response is read, so that neither side waits for
// the other.
type bodyWriter struct {
	done chan struct{} // closed when run returns

	mu       sync.Mutex
	writing  bool  // in a Write to the connection
	stopped  bool  // the response ended: write no more
	complete bool  // the whole body and the end of FCGI_STDIN were written
	bodyErr  error // the body itself failed (read error or too short)
}

func startBodyWriter(nc net.Conn, body io.ReadCloser, contentLength int64) *bodyWriter {
	w := &bodyWriter{done: make(chan struct{})}
	go w.run(nc, body, contentLength)
	return w
}

// run sends body, at most contentLength bytes of it when that is known,
// and closes it. A body that fails closes the connection: the application
// is waiting for input that will not come.
func (w *bodyWriter) run(nc net.Conn, body io.ReadCloser, limit int64) {
	bp := stdinPool.Get().(*[]byte)
	buf := *bp
	defer func() {
		stdinPool.Put(bp)
		close(w.done)
		// After done: closing a server request body may read what
		// the client still sends, and the response must not wait.
		body.Close()
	}()
	if limit <= 0 {
		limit = -1 // unknown: a client request's 0 with a body means so too
	}
	fail := func(err error) {
		w.mu.Lock()
		w.bodyErr = err
		w.mu.Unlock()
		nc.Close()
	}
	var sent int64
	for {
		room := maxStdin
		if limit >= 0 && limit-sent < int64(room) {
			room = int(limit - sent)
		}
		// room > 0: the loop ends when sent reaches limit.
		n, rerr := body.Read(buf[headerLen : headerLen+room])
		sent += int64(n)
		if rerr != nil && rerr != io.EOF {
			fail(fmt.Errorf("fastcgi: read request body: %w", rerr))
			return
		}
		if rerr == io.EOF && limit >= 0 && sent < limit {
			fail(fmt.Errorf("fastcgi: request body ended after %d of its %d bytes (Content-Length)", sent, limit))
			return
		}
		final := rerr == io.EOF || sent == limit
		out := buf[:0]
		if n > 0 {
			pad := putHeader(buf, typeStdin, requestID, n)
			clear(buf[headerLen+n : headerLen+n+pad])
			out = buf[:headerLen+n+pad]
		}
		if final {
			m := len(out)
			out = out[:m+headerLen]
			putHeader(out[m:], typeStdin, requestID, 0)
		}
		if len(out) == 0 {
			continue
		}
		if !w.begin() {
			return
		}
		_, werr := nc.Write(out)
		stopped := w.end(final && werr == nil)
		if werr != nil || final || stopped {
			return
		}
	}
}

func (w *bodyWriter) begin() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writing = !w.stopped
	return w.writing
}

func (w *bodyWriter) end(complete bool) (stopped bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writing = false
	w.complete = complete
	return w.stopped
}

// failure returns the body's own error, if it failed.
func (w *bodyWriter) failure() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bodyErr
}

// finish stops the writer once the application has ended the request and
// reports whether the whole body was sent, which the connection's reuse
// requires. A write in progress is cut short by a past deadline: the
// application no longer reads, so it could otherwise block for good.
func (w *bodyWriter) finish(nc net.Conn) bool {
	if w == nil {
		return true
	}
	w.mu.Lock()
	w.stopped = true
	complete, writing := w.complete, w.writing
	w.mu.Unlock()
	if complete || !writing {
		return complete
	}
	nc.SetWriteDeadline(time.Now())
	<-w.done
	w.mu.Lock()
	complete = w.complete
	w.mu.Unlock()
	if complete {
		nc.SetWriteDeadline(time.Time{})
	}
	return complete
}
