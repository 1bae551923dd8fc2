package gateway

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
)

// forward proxies an ordinary (not Upgrade) request: the same semantics
// as httputil.ReverseProxy with drover's Rewrite, without its per-request
// clones. out is the proxy's own shallow copy of the incoming request,
// and is edited in place to become the request to the instance; so is
// the header, which nothing reads after the handler returns. The URL is
// shared with the incoming request (the access log reads it afterwards)
// and is left alone: the transports use only its path and query.
func (px *Proxy) forward(w http.ResponseWriter, out *http.Request) {
	te := out.Header.Get("Te")
	out.RequestURI = ""
	out.Close = false
	if out.ContentLength == 0 {
		out.Body = nil // nothing to send: the transport must not chunk
	}
	h := out.Header
	removeHopByHop(h)
	if strings.Contains(strings.ToLower(te), "trailers") {
		h["Te"] = teTrailers
	}
	setForwarded(h, out)

	resp, err := (*slotTransport)(px).RoundTrip(out)
	if err != nil {
		px.fail(w, out, err)
		return
	}
	defer resp.Body.Close()

	removeHopByHop(resp.Header)
	dst := w.Header()
	for k, vv := range resp.Header {
		dst[k] = vv
	}
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		dst["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(resp.StatusCode)

	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	streamed := resp.ContentLength == -1 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	copyErr := copyBody(w, resp.Body, *buf, streamed)
	if copyErr != nil {
		// The answer is cut short: abort the client connection so the
		// client sees a truncated response, not a complete one.
		panic(http.ErrAbortHandler)
	}
	for k, vv := range resp.Trailer {
		dst[k] = vv
	}
}

// copyBody copies the instance's answer to the client through buf (not
// io.CopyBuffer, whose interface conversions cost an allocation per
// response). A streamed answer (no Content-Length, or server-sent events)
// is flushed whenever the instance has sent nothing more yet, so that
// events and progressive output reach the client now, while one that
// arrived whole (a PHP page, say) leaves in one write, to which the
// front end can then give a Content-Length.
func copyBody(w http.ResponseWriter, r io.Reader, buf []byte, streamed bool) error {
	var rc *http.ResponseController
	var arrived interface{ Buffered() int }
	if streamed {
		rc = http.NewResponseController(w)
		arrived, _ = r.(interface{ Buffered() int })
	}
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if streamed && err == nil && (arrived == nil || arrived.Buffered() == 0) {
				if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
					return ferr
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1 (and
// the old Proxy-Connection and Keep-Alive).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers and those that
// Connection names.
func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// setForwarded appends the client to X-Forwarded-For (as nginx's
// $proxy_add_x_forwarded_for does) and sets X-Forwarded-Host and -Proto.
func setForwarded(h http.Header, r *http.Request) {
	vals := make([]string, 2) // one allocation for both values
	vals[0] = r.Host
	h["X-Forwarded-Host"] = vals[0:1:1]
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		if prior := h["X-Forwarded-For"]; len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		vals[1] = ip
		h["X-Forwarded-For"] = vals[1:2:2]
	} else {
		delete(h, "X-Forwarded-For")
	}
	if r.TLS != nil {
		h["X-Forwarded-Proto"] = protoHTTPS
	} else {
		h["X-Forwarded-Proto"] = protoHTTP
	}
}

// Header values shared by every request; capped so that an append by
// anyone copies rather than writes into them.
var (
	protoHTTP  = []string{"http"}[:1:1]
	protoHTTPS = []string{"https"}[:1:1]
	teTrailers = []string{"trailers"}[:1:1]
)
