package gateway

import (
	"net/http"
	"strconv"
)

// Reasons drover gives in the Drover-Error header of its own answers.
const (
	reasonNoRoute        = "no-route"
	reasonQueueFull      = "queue-full"
	reasonWaitTimeout    = "wait-timeout"
	reasonPoolStopped    = "pool-stopped"
	reasonBadGateway     = "bad-gateway"
	reasonRequestTimeout = "request-timeout"
)

// answer writes one of drover's own small answers.
func answer(w http.ResponseWriter, status int, reason string, retryAfter int) {
	h := w.Header()
	h.Set("Drover-Error", reason)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(strconv.Itoa(status) + " " + http.StatusText(status) + ": " + reason + "\n"))
}

// reset drops the client connection without an HTTP answer, so that a
// TCP-level load balancer in front fails over (on_stopped = "reset"). On
// HTTP/1 the socket is closed with RST; on HTTP/2 the stream is reset.
func reset(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	// A *net.TCPConn, or the event loops' handed-over connection.
	if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
