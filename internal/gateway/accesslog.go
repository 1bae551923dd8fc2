package gateway

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/drover-pool/drover/internal/gateway/evloop"
)

// AccessLog writes one line per request in the combined log format that
// log analysers already read, plus the duration in seconds.
type AccessLog struct {
	mu sync.Mutex // guards w
	w  *bufio.Writer
	// flush is armed while buffered lines wait, so lines reach the file
	// within a second even when traffic stops.
	flush *time.Timer
}

// NewAccessLog writes to w.
func NewAccessLog(w io.Writer) *AccessLog {
	return &AccessLog{w: bufio.NewWriterSize(w, 32*1024)}
}

// Log records one finished request.
func (a *AccessLog) Log(r *http.Request, rec *recorder, start time.Time) {
	a.line(r.RemoteAddr, r.Method, r.RequestURI, r.Proto, rec.status, rec.bytes, r.Referer(), r.UserAgent(), start, time.Now())
}

// LogExchange records one request an event loop served.
func (a *AccessLog) LogExchange(x *evloop.Exchange) {
	a.line(x.RemoteAddr(), x.Method(), x.RequestURI(), "HTTP/1.1", x.Status(), x.BodyBytes(), x.Referer(), x.UserAgent(), x.Start(), x.Now())
}

func (a *AccessLog) line(remote, method, uri, proto string, status int, bytes int64, referer, ua string, start, now time.Time) {
	host := remote
	if i := lastColon(host); i > 0 {
		host = host[:i]
	}
	if host == "" || host == "@" {
		host = "-"
	}
	b := make([]byte, 0, 256)
	b = append(b, host...)
	b = append(b, " - - ["...)
	b = now.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, uri...)
	b = append(b, ' ')
	b = append(b, proto...)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, bytes, 10)
	b = append(b, " \""...)
	b = append(b, referer...)
	b = append(b, "\" \""...)
	b = append(b, ua...)
	b = append(b, "\" "...)
	b = strconv.AppendFloat(b, now.Sub(start).Seconds(), 'f', 6, 64)
	b = append(b, '\n')
	a.mu.Lock()
	_, _ = a.w.Write(b)
	if a.flush == nil {
		a.flush = time.AfterFunc(time.Second, a.Flush)
	}
	a.mu.Unlock()
}

// Flush writes buffered lines out.
func (a *AccessLog) Flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	_ = a.w.Flush()
	a.flush = nil
}

func lastColon(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return i
		}
		if s[i] == ']' {
			return -1
		}
	}
	return -1
}

// recorder captures the status and size of a response for the access log.
// Unwrap lets http.ResponseController reach Flush and Hijack underneath.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader && code >= 200 {
		r.status = code
		r.wroteHeader = true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush keeps streaming responses streaming through the recorder.
func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }
