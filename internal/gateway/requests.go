package gateway

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Observer is told about every request a Proxy has finished; the metrics
// package implements it. It must be quick: it runs on the request path.
type Observer interface {
	// ObserveRequest reports one request: its final status code, how
	// long it took in all, and how long it waited for a slot.
	ObserveRequest(pool string, code int, total, wait time.Duration)
}

// RequestInfo describes one request that is waiting for a slot or being
// served, like IIS's "currently executing requests".
type RequestInfo struct {
	Pool    string        `json:"pool"`
	Method  string        `json:"method"`
	URL     string        `json:"url"`
	Client  string        `json:"client"`
	PID     int           `json:"pid"` // 0 while waiting for a slot
	Start   time.Time     `json:"start"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// inflight is one request in the registry. Fields other than pid are
// written before it is registered and not changed afterwards.
type inflight struct {
	req   *http.Request
	ctx   requestContext // the context of the request the proxy forwards
	sw    statusWriter   // the response, for the status the Observer gets
	lease lease          // the first attempt's; see newLease
	start time.Time
	pid   atomic.Int64
	wait  atomic.Int64 // nanoseconds spent waiting for slots
}

// entry is a request in the registry: one the h1 or net/http server runs
// (inflight) or one an event loop serves (loopEntry).
type entry interface {
	info(pool string, now time.Time) RequestInfo
}

func (e *inflight) info(pool string, now time.Time) RequestInfo {
	return RequestInfo{
		Pool:    pool,
		Method:  e.req.Method,
		URL:     redactURL(e.req.URL),
		Client:  e.req.RemoteAddr,
		PID:     int(e.pid.Load()),
		Start:   e.start,
		Elapsed: now.Sub(e.start),
	}
}

// loopEntry is a request an event loop serves; its fields are copies,
// since the loop's buffers are not the registry's to read.
type loopEntry struct {
	method, uri, client string
	pid                 int
	start               time.Time
}

func (e *loopEntry) info(pool string, now time.Time) RequestInfo {
	u, err := url.ParseRequestURI(e.uri)
	shown := "?"
	if err == nil {
		shown = redactURL(u)
	}
	return RequestInfo{Pool: pool, Method: e.method, URL: shown, Client: e.client, PID: e.pid,
		Start: e.start, Elapsed: now.Sub(e.start)}
}

// registry holds a proxy's requests in flight; its own lock, separate from
// the pool's, is held only for the insert and delete.
type registry struct {
	mu sync.Mutex
	m  map[entry]struct{}
}

func (r *registry) add(e entry) {
	r.mu.Lock()
	if r.m == nil {
		r.m = make(map[entry]struct{})
	}
	r.m[e] = struct{}{}
	r.mu.Unlock()
}

func (r *registry) remove(e entry) {
	r.mu.Lock()
	delete(r.m, e)
	r.mu.Unlock()
}

func (r *registry) list(pool string) []RequestInfo {
	now := time.Now()
	r.mu.Lock()
	out := make([]RequestInfo, 0, len(r.m))
	for e := range r.m {
		out = append(out, e.info(pool, now))
	}
	r.mu.Unlock()
	return out
}

// redactURL shows the path and query keys, but hides the values of keys
// that commonly carry secrets.
func redactURL(u *url.URL) string {
	s := u.EscapedPath()
	if u.RawQuery == "" {
		return s
	}
	q := u.Query()
	for k := range q {
		lk := strings.ToLower(k)
		for _, w := range []string{"pass", "token", "secret", "key", "auth", "sig", "session", "code"} {
			if strings.Contains(lk, w) {
				q[k] = []string{"REDACTED"}
				break
			}
		}
	}
	return s + "?" + q.Encode()
}

// statusWriter remembers the status code for the Observer.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }
