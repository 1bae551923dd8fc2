package cgi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/drover-pool/drover/internal/backend/fastcgi"
	"github.com/drover-pool/drover/internal/process"
)

// Transport is an http.RoundTripper that runs one CGI program per request.
// Its fields must not change once it is in use; RoundTrip is safe for
// concurrent use.
type Transport struct {
	// Spec is the template of every process: the pool's clean Env, Dir,
	// Credential, Limits, cgroup. Args is the interpreter's argv, to which
	// SCRIPT_FILENAME is appended; empty, the script is executed
	// directly. Stdin, Stdout and Args are set per request.
	Spec process.Spec
	// Root is the document root: the longest prefix of the URL path that
	// names a regular file below it is the script (SCRIPT_NAME), the rest
	// is PATH_INFO. A path that names no file is answered 404.
	Root string
	// Script, when set, is the program of every request; the whole path
	// is PATH_INFO (but see fastcgi.Transport.Script).
	Script string
	// ConnInfo finds the original client connection's description in a
	// request's context; nil means fastcgi.ConnInfoFrom.
	ConnInfo func(context.Context) (fastcgi.ConnInfo, bool)
	// Stderr receives the script's standard error line by line, and
	// drover's notes about the script's exit. It is called from other
	// goroutines and must not block. Nil falls back to Spec.Output, or
	// discards.
	Stderr func(line string)
	// MaxBufferedBody bounds a request body of unknown length, which is
	// buffered to a temporary file to learn its CONTENT_LENGTH; a larger
	// one is answered 413. 0 means 64 MiB; negative answers every such
	// request 411 Length Required.
	MaxBufferedBody int64
	// TempDir holds those temporary files, unlinked as soon as they are
	// created; "" is os.TempDir().
	TempDir string
}

const (
	// headerLimit bounds the response header, so that a script that never
	// ends it cannot make drover buffer without end.
	headerLimit = 1 << 20
	// defaultMaxBufferedBody is MaxBufferedBody's default.
	defaultMaxBufferedBody = 64 << 20
)

// exitGrace is how long Close waits for a script that closed its output
// to exit before it is killed; a variable for the tests.
var exitGrace = 3 * time.Second

var (
	errHeaderTooLarge = fmt.Errorf("response header larger than %d bytes", headerLimit)
	errBodyClosed     = errors.New("cgi: read on closed response body")
)

// RoundTrip implements http.RoundTripper: it runs the script for req and
// returns its response, whose body streams the script's output. The body
// must be closed; that ends the exchange (see the package documentation).
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
	if req.URL == nil {
		closeBody()
		return nil, errors.New("cgi: request has no URL")
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		closeBody()
		return nil, err
	}
	root, script, err := t.paths()
	if err != nil {
		closeBody()
		return nil, err
	}
	vars, filename, err := fastcgi.CGIParams(req, root, script, t.connInfo(ctx))
	if errors.Is(err, fastcgi.ErrNoScript) {
		closeBody()
		return answer(req, http.StatusNotFound), nil
	}
	if err != nil {
		closeBody()
		return nil, err
	}

	// The script's standard input: /dev/null, a pipe the body is copied
	// to, or the body buffered in a file.
	var stdin, bodyW *os.File
	switch {
	case body == nil:
	case req.ContentLength > 0:
		if stdin, bodyW, err = os.Pipe(); err != nil {
			closeBody()
			return nil, fmt.Errorf("cgi: stdin pipe: %w", err)
		}
	default:
		// Unknown length (a client request's 0 with a body means so
		// too): CGI needs CONTENT_LENGTH, so buffer it.
		var n int64
		var code int
		stdin, n, code, err = t.bufferBody(body)
		body = nil // closed by bufferBody
		if err != nil {
			return nil, err
		}
		if code != 0 {
			return answer(req, code), nil
		}
		if n > 0 {
			vars = append(vars, "CONTENT_LENGTH="+strconv.FormatInt(n, 10))
		}
	}

	outR, outW, err := os.Pipe()
	if err != nil {
		closeFiles(stdin, bodyW)
		closeBody()
		return nil, fmt.Errorf("cgi: stdout pipe: %w", err)
	}
	proc, err := process.Start(t.spec(filename, vars, stdin, outW))
	// The child has its own copies of its ends.
	closeFiles(stdin, outW)
	if err != nil {
		closeFiles(outR, bodyW)
		closeBody()
		return nil, fmt.Errorf("cgi: %w", err)
	}

	x := &exchange{t: t, ctx: ctx, proc: proc, script: filename, out: outR, stdin: bodyW}
	x.stop = context.AfterFunc(ctx, x.cancel)
	if bodyW != nil {
		go x.writeBody(bodyW, body, req.ContentLength)
	}
	p, err := parseResponse(outR, req.Method)
	if err != nil {
		x.finish(true)
		return nil, x.failure("read response header", err)
	}
	return &http.Response{
		Status:        p.status,
		StatusCode:    p.code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        p.header,
		Body:          &responseBody{x: x, r: p.body},
		ContentLength: p.contentLength,
		Request:       req,
	}, nil
}

func (t *Transport) connInfo(ctx context.Context) fastcgi.ConnInfo {
	var ci fastcgi.ConnInfo
	if t.ConnInfo != nil {
		ci, _ = t.ConnInfo(ctx)
	} else {
		ci, _ = fastcgi.ConnInfoFrom(ctx)
	}
	return ci
}

// paths returns Root and Script made absolute: the script runs in its own
// directory, where a relative name would mean something else.
func (t *Transport) paths() (root, script string, err error) {
	abs := func(p string) (string, error) {
		if p == "" || filepath.IsAbs(p) {
			return p, nil
		}
		a, err := filepath.Abs(p)
		if err != nil {
			return "", fmt.Errorf("cgi: %w", err)
		}
		return a, nil
	}
	if root, err = abs(t.Root); err != nil {
		return "", "", err
	}
	script, err = abs(t.Script)
	return root, script, err
}

// spec makes the process.Spec of one exchange from the template.
func (t *Transport) spec(filename string, vars []string, stdin, stdout *os.File) process.Spec {
	s := t.Spec
	if len(t.Spec.Args) == 0 {
		s.Path = filename
		s.Args = []string{filename}
	} else {
		s.Args = append(append(make([]string, 0, len(t.Spec.Args)+1), t.Spec.Args...), filename)
	}
	s.Env = append(append(make([]string, 0, len(t.Spec.Env)+len(vars)), t.Spec.Env...), vars...)
	if s.Dir == "" {
		s.Dir = filepath.Dir(filename)
	}
	s.Stdin, s.Stdout = stdin, stdout
	if t.Stderr != nil {
		stderr := t.Stderr
		s.Output = func(_, line string) { stderr(line) }
	}
	return s
}

// bufferBody copies a body of unknown length to an unlinked temporary
// file and returns it, positioned at its start, with its length; or the
// status code that answers the request instead. It closes body.
func (t *Transport) bufferBody(body io.ReadCloser) (f *os.File, n int64, code int, err error) {
	defer body.Close()
	limit := t.MaxBufferedBody
	if limit == 0 {
		limit = defaultMaxBufferedBody
	}
	if limit < 0 {
		return nil, 0, http.StatusLengthRequired, nil
	}
	f, err = os.CreateTemp(t.TempDir, "drover-cgi-body-")
	if err != nil {
		return nil, 0, 0, fmt.Errorf("cgi: buffer request body: %w", err)
	}
	// Nothing is left behind, whatever happens next.
	os.Remove(f.Name())
	n, err = io.Copy(f, io.LimitReader(body, limit+1))
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, 0, fmt.Errorf("cgi: buffer request body: %w", err)
	}
	if n > limit {
		f.Close()
		return nil, 0, http.StatusRequestEntityTooLarge, nil
	}
	return f, n, 0, nil
}

// answer is drover's own small response, for a request that runs no
// script.
func answer(req *http.Request, code int) *http.Response {
	text := http.StatusText(code) + "\n"
	return &http.Response{
		Status:     strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode: code,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":           {"text/plain; charset=utf-8"},
			"X-Content-Type-Options": {"nosniff"},
		},
		Body:          io.NopCloser(strings.NewReader(text)),
		ContentLength: int64(len(text)),
		Request:       req,
	}
}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// exchange is one request's process and the files that connect drover to
// it.
type exchange struct {
	t      *Transport
	ctx    context.Context
	proc   *process.Process
	script string
	out    *os.File    // read end of the script's stdout
	stdin  *os.File    // write end of its stdin pipe; nil without one
	stop   func() bool // detaches cancel from ctx

	mu       sync.Mutex
	killed   bool  // drover sent SIGKILL
	lingered bool  // killed because it ran on after closing its output
	bodyErr  error // the request body failed

	once sync.Once
}

// cancel runs when the request's context ends: the whole process group is
// killed, and a pending read fails at once even if a process outside the
// group still holds the pipe.
func (x *exchange) cancel() {
	x.kill()
	x.out.SetReadDeadline(time.Now())
}

func (x *exchange) wasKilled() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.killed
}

func (x *exchange) kill() {
	x.mu.Lock()
	x.killed = true
	x.mu.Unlock()
	x.proc.Kill()
}

// finish ends the exchange, once: at once (early) or after giving the
// script exitGrace to exit by itself, it reaps the process, closes the
// exchange's files and reports an unexpected exit.
func (x *exchange) finish(early bool) {
	x.once.Do(func() {
		x.stop()
		if early {
			x.cancel()
		} else {
			t := time.NewTimer(exitGrace)
			select {
			case <-x.proc.Done():
			case <-x.ctx.Done():
				x.kill()
			case <-t.C:
				x.mu.Lock()
				x.lingered = true
				x.mu.Unlock()
				x.kill()
			}
			t.Stop()
		}
		<-x.proc.Done()
		// Closing the stdin pipe also ends a body write that the script
		// never read.
		closeFiles(x.out, x.stdin)
		if !early {
			x.report()
		}
	})
}

// report tells Stderr how a script that answered ended, unless it was
// drover that killed it for the client's sake.
func (x *exchange) report() {
	x.mu.Lock()
	killed, lingered := x.killed, x.lingered
	x.mu.Unlock()
	state := x.proc.State()
	var msg string
	switch {
	case lingered:
		msg = fmt.Sprintf("still running %v after closing its output: killed", exitGrace)
	case state != nil && state.Success():
		return
	case killed && signaled(state, syscall.SIGKILL):
		return
	default:
		msg = x.proc.ExitString()
	}
	if x.t.Stderr != nil {
		x.t.Stderr(fmt.Sprintf("cgi: %s (pid %d): %s", x.script, x.proc.Pid, msg))
	} else if x.t.Spec.Output != nil {
		x.t.Spec.Output("stderr", fmt.Sprintf("cgi: %s (pid %d): %s", x.script, x.proc.Pid, msg))
	}
}

func signaled(state *os.ProcessState, sig syscall.Signal) bool {
	if state == nil {
		return false
	}
	ws, ok := state.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// failure explains why reading the script's output failed: the context,
// the request body, or the script itself (with its exit status when it
// has been reaped).
func (x *exchange) failure(what string, err error) error {
	if cerr := x.ctx.Err(); cerr != nil {
		return fmt.Errorf("cgi: %s: %s: %w", x.script, what, cerr)
	}
	x.mu.Lock()
	bodyErr := x.bodyErr
	x.mu.Unlock()
	if bodyErr != nil {
		return bodyErr
	}
	status := "running"
	if x.proc.Exited() {
		status = x.proc.ExitString()
	}
	return fmt.Errorf("cgi: %s (%s): %s: %w", x.script, status, what, err)
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// writeBody copies n bytes of body to the script's stdin pipe w and closes
// both. A script that stops reading (it may answer without its input) just
// ends the copy; a body that fails or ends short kills the script, which
// is waiting for input that will not come.
func (x *exchange) writeBody(w *os.File, body io.ReadCloser, n int64) {
	bp := copyBufs.Get().(*[]byte)
	defer func() {
		copyBufs.Put(bp)
		w.Close()
		// Last: closing a server request body may wait for what the
		// client still sends.
		body.Close()
	}()
	buf := *bp
	for sent := int64(0); sent < n; {
		m, rerr := body.Read(buf[:min(int64(len(buf)), n-sent)])
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return // the script closed its stdin, or the exchange ended
			}
			sent += int64(m)
		}
		if rerr == io.EOF && sent == n {
			return
		}
		if rerr != nil {
			if rerr == io.EOF {
				rerr = fmt.Errorf("ended after %d of its %d bytes (Content-Length)", sent, n)
			}
			x.mu.Lock()
			x.bodyErr = fmt.Errorf("cgi: request body: %w", rerr)
			x.mu.Unlock()
			x.cancel()
			return
		}
	}
}

// parsed is a response header and the reader of the body after it.
type parsed struct {
	code          int
	status        string
	header        http.Header
	contentLength int64
	body          *bodyReader
}

// parseResponse reads a CGI response header from out, at most headerLimit
// bytes of it, and returns it with a reader of the body that follows.
func parseResponse(out io.Reader, method string) (*parsed, error) {
	lr := &headerLimiter{r: out, n: headerLimit}
	br := bufio.NewReaderSize(lr, 16<<10)
	code, status, h, err := fastcgi.ReadCGIHeader(br)
	if err != nil {
		return nil, err
	}
	if code < 200 {
		return nil, fmt.Errorf("status %d is not a final response", code)
	}
	lr.n = -1
	p := &parsed{code: code, status: status, header: h, contentLength: -1,
		body: &bodyReader{br: br, remaining: -1}}
	if v, ok := h["Content-Length"]; ok {
		n, err := strconv.ParseInt(v[0], 10, 64)
		if len(v) != 1 || err != nil || n < 0 || v[0][0] == '+' {
			// Not to be passed on: the body is sent as it comes.
			delete(h, "Content-Length")
		} else {
			p.contentLength, p.body.remaining = n, n
		}
	}
	if method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified {
		p.body.discard = true
	}
	return p, nil
}

// headerLimiter bounds what the header parser can read; n < 0 means no
// bound.
type headerLimiter struct {
	r io.Reader
	n int
}

func (l *headerLimiter) Read(p []byte) (int, error) {
	if l.n == 0 {
		return 0, errHeaderTooLarge
	}
	if l.n > 0 && len(p) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	if l.n > 0 {
		l.n -= n
	}
	return n, err
}

// bodyReader reads a response body after its header: to the end of the
// output, or remaining bytes when the script gave a Content-Length. With
// discard it reads all the output and returns none, for responses that
// have no body.
type bodyReader struct {
	br        *bufio.Reader
	remaining int64 // -1: to the end of the output
	discard   bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.discard {
		_, err := io.Copy(io.Discard, b.br)
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	if b.remaining == 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.remaining > 0 && int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.br.Read(p)
	if b.remaining > 0 {
		b.remaining -= int64(n)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	return n, err
}

// responseBody is the Body of a Response: the script's output after the
// header. Closing it ends the exchange.
type responseBody struct {
	x *exchange
	r *bodyReader

	mu     sync.Mutex
	eof    bool  // read to its end
	err    error // a read failed
	closed bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	closed, eof, err := b.closed, b.eof, b.err
	b.mu.Unlock()
	switch {
	case closed:
		return 0, errBodyClosed
	case eof:
		return 0, io.EOF
	case err != nil:
		return 0, err
	}
	n, err := b.r.Read(p)
	if err == nil {
		return n, nil
	}
	if err == io.EOF && b.x.wasKilled() {
		// The end of the output may be the kill's doing: the body is
		// not known to be complete.
		err = io.ErrUnexpectedEOF
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		err = errBodyClosed
	case err == io.EOF:
		b.eof = true
	default:
		err = b.x.failure("read response body", err)
		b.err = err
	}
	return n, err
}

// Close ends the exchange: the script is killed unless the body was read
// to its end, and Close returns once it has been reaped.
func (b *responseBody) Close() error {
	b.mu.Lock()
	early := !b.eof
	b.closed = true
	b.mu.Unlock()
	b.x.finish(early)
	return nil
}
