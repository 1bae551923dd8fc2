// Package admin is drover's admin listener: the JSON API under /api/v1
// (DESIGN.md, "Admin API"), /metrics, /healthz and /readyz, and the web
// console, all on an address of their own (server.admin), never on the
// front end, so that an application's users cannot reach them by a route.
//
// Security model. Over TCP every /api/v1 call carries
// "Authorization: Bearer TOKEN"; over a unix socket the socket's mode
// (0600, drover's user) is the access control and no token is asked for.
// The console keeps the token in sessionStorage and sends it as a header,
// never as a cookie, so a cross-site page cannot make the browser send it;
// in addition POSTs whose Origin is present and is not the admin origin
// are refused, and every answer carries a strict Content-Security-Policy.
// /metrics, /healthz, /readyz and the console's static files need no
// token: they hold no secret and are what load balancers and Prometheus
// scrapers read without drover-specific setup.
//
// Handlers return errors; one place (serveAPI) turns an error into a
// status and a JSON body {"error": "..."}.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/gateway"
	"github.com/drover-pool/drover/internal/metrics"
	"github.com/drover-pool/drover/internal/pool"
)

// Backend is what the admin API reads and acts on: the running server.
type Backend interface {
	// Pools returns the pools in force, by name.
	Pools() map[string]*pool.Pool
	// Requests lists the requests in flight of one pool ("" = all).
	Requests(pool string) []gateway.RequestInfo
	// Events is the lifecycle event log.
	Events() *events.Log
	// Reload re-reads the configuration file and applies it.
	Reload() error
	// Draining reports whether the server is shutting down.
	Draining() bool
}

// Services are the supervised background processes. An adapter over the
// service manager implements it, returning the sentinel errors below
// (wrapped is fine) so that the API can answer the right status.
type Services interface {
	// List returns a JSON-encodable description of every service.
	List() any
	// Start starts a service and waits up to wait for it to be running
	// (or ready, when it has a readiness check); wait <= 0 does not wait.
	Start(ctx context.Context, name string, wait time.Duration) error
	// Stop stops a service.
	Stop(ctx context.Context, name string) error
}

// Errors that Services return; the API maps them to HTTP statuses.
var (
	// ErrNotFound: no such service (404).
	ErrNotFound = errors.New("not found")
	// ErrWaitTimeout: the service was not running when the wait passed;
	// its start goes on (408).
	ErrWaitTimeout = errors.New("not running when the wait passed")
	// ErrFailed: the service failed to start or was stopped by rapid-fail
	// protection (409).
	ErrFailed = errors.New("failed")
	// ErrUnavailable: services cannot be acted on now, as drover is
	// shutting down (503).
	ErrUnavailable = errors.New("unavailable")
)

// Options configure the admin handler.
type Options struct {
	Backend  Backend
	Services Services         // nil: no services
	Metrics  *metrics.Metrics // nil: /metrics answers 404
	// Token is the bearer token of /api/v1; "" means none is required
	// (a unix-socket listener).
	Token  string
	Logger *slog.Logger
}

// Handler is the admin listener's HTTP handler.
type Handler struct {
	o   Options
	log *slog.Logger
	mux *http.ServeMux
}

// apiFunc is an API handler: it writes its answer on success and returns
// an error otherwise.
type apiFunc func(w http.ResponseWriter, r *http.Request) error

// route is one API endpoint.
type route struct {
	method, pattern string
	h               apiFunc
}

// New returns the admin handler.
func New(o Options) *Handler {
	h := &Handler{o: o, log: o.Logger, mux: http.NewServeMux()}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	api := []route{
		{"GET", "/pools", h.listPools},
		{"GET", "/pools/{name}", h.getPool},
		{"GET", "/pools/{name}/requests", h.poolRequests},
		{"POST", "/pools/{name}/start", h.poolAction("start")},
		{"POST", "/pools/{name}/stop", h.poolAction("stop")},
		{"POST", "/pools/{name}/recycle", h.poolAction("recycle")},
		{"GET", "/requests", h.allRequests},
		{"GET", "/services", h.listServices},
		{"POST", "/services/{name}/start", h.startService},
		{"POST", "/services/{name}/stop", h.stopService},
		{"GET", "/events", h.events},
		{"POST", "/reload", h.reload},
	}
	// Methods are dispatched here rather than by ServeMux method
	// patterns, so that a wrong method gets drover's JSON 405 with Allow.
	byPattern := map[string]map[string]apiFunc{}
	var order []string
	for _, rt := range api {
		if byPattern[rt.pattern] == nil {
			byPattern[rt.pattern] = map[string]apiFunc{}
			order = append(order, rt.pattern)
		}
		byPattern[rt.pattern][rt.method] = rt.h
	}
	for _, p := range order {
		h.mux.Handle("/api/v1"+p, h.serveAPI(methods(byPattern[p])))
	}
	h.mux.Handle("/api/v1/", h.serveAPI(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "no API endpoint %s", r.URL.Path)
	}))
	h.mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	h.mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if o.Backend.Draining() {
			writeText(w, http.StatusServiceUnavailable, "draining\n")
			return
		}
		writeText(w, http.StatusOK, "ready\n")
	})
	if o.Metrics != nil {
		h.mux.Handle("/metrics", o.Metrics.Handler())
	}
	h.mux.Handle("/", consoleHandler(o.Token != ""))
	return h
}

// ServeHTTP adds the headers every admin answer carries.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	h.mux.ServeHTTP(w, r)
}

// csp allows the console's own files and API calls, nothing else: no
// inline script, no other origin, no framing.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// methods dispatches on the request method; GET handlers answer HEAD too.
func methods(m map[string]apiFunc) apiFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		if f := m[method]; f != nil {
			return f(w, r)
		}
		var allow []string
		for _, k := range []string{"GET", "POST"} {
			if m[k] != nil {
				allow = append(allow, k)
				if k == "GET" {
					allow = append(allow, "HEAD")
				}
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed; use %s", r.Method, strings.Join(allow, ", "))
	}
}

// serveAPI authenticates an API call, runs it, and answers its error.
func (h *Handler) serveAPI(f apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		err := h.authorize(r)
		if err == nil {
			err = f(w, r)
		}
		if err == nil {
			return
		}
		var he *httpError
		if !errors.As(err, &he) {
			h.log.Error("admin API", "method", r.Method, "path", r.URL.Path, "err", err)
			he = &httpError{Code: http.StatusInternalServerError, Msg: err.Error()}
		}
		if he.Code == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="drover"`)
		}
		writeJSON(w, he.Code, he)
	})
}

// httpError is an error with the HTTP status that answers it.
type httpError struct {
	Code int    `json:"-"`
	Msg  string `json:"error"`
	// Errors lists several problems, such as a config file's.
	Errors []string `json:"errors,omitempty"`
}

func (e *httpError) Error() string { return e.Msg }

func errorf(code int, format string, args ...any) error {
	return &httpError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeText(w http.ResponseWriter, code int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(s))
}

// ok answers 200 with v.
func ok(w http.ResponseWriter, v any) error {
	writeJSON(w, http.StatusOK, v)
	return nil
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
