package uwsgi

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// ErrVarsTooLarge reports a request whose vars do not fit the 16-bit size
// field of a uwsgi packet, almost always because of huge headers. A gateway
// may answer it with 431 rather than 502: the instance never saw the request.
var ErrVarsTooLarge = errors.New("uwsgi: request vars larger than the protocol's 65535-byte limit")

const (
	maxVarsSize = 0xffff
	headerSize  = 4
)

// ConnInfo describes the client connection a request came in on. The
// Transport sees requests that the gateway may have rewritten or built
// afresh, so the gateway hands over the original connection's facts through
// the context (WithConnInfo) instead of relying on fields of the request.
type ConnInfo struct {
	// RemoteAddr is the client's "ip:port" (REMOTE_ADDR, REMOTE_PORT).
	RemoteAddr string
	// LocalAddr is the "ip:port" the client connected to (SERVER_PORT, and
	// SERVER_NAME when the request has no Host).
	LocalAddr string
	// HTTPS reports a TLS connection (HTTPS=on, wsgi.url_scheme https).
	HTTPS bool
	// ScriptName, when the route stripped a path prefix, is that prefix: it
	// is sent as SCRIPT_NAME, with the request's (stripped) path as PATH_INFO,
	// so WSGI applications build their URLs under the prefix.
	ScriptName string
}

type connInfoKey struct{}

// WithConnInfo returns a context carrying ci for Transport.RoundTrip.
// Without it the Transport falls back to the request's RemoteAddr and TLS
// fields and the server's http.LocalAddrContextKey.
func WithConnInfo(ctx context.Context, ci ConnInfo) context.Context {
	return context.WithValue(ctx, connInfoKey{}, &ci)
}

// ConnInfoFrom returns the ConnInfo stored by WithConnInfo.
func ConnInfoFrom(ctx context.Context) (ConnInfo, bool) {
	ci, ok := ctx.Value(connInfoKey{}).(*ConnInfo)
	if !ok {
		return ConnInfo{}, false
	}
	return *ci, true
}

// varsWriter appends uwsgi vars (u16 LE key size, key, u16 LE value size,
// value) to b, remembering the first error; it checks Params so that a
// pool's configured var replaces the computed one instead of duplicating it.
type varsWriter struct {
	b        []byte
	override map[string]string
	err      error
}

func (w *varsWriter) add(k, v string) {
	if w.override != nil {
		if _, ok := w.override[k]; ok {
			return
		}
	}
	w.addRaw(k, v)
}

func (w *varsWriter) addRaw(k, v string) {
	if len(k) > maxVarsSize || len(v) > maxVarsSize {
		w.err = ErrVarsTooLarge
		return
	}
	w.b = append(w.b, byte(len(k)), byte(len(k)>>8))
	w.b = append(w.b, k...)
	w.b = append(w.b, byte(len(v)), byte(len(v)>>8))
	w.b = append(w.b, v...)
}

// addHeader adds one request header as HTTP_<NAME>, upper-cased with '-'
// turned into '_', its values joined as HTTP/1.1 would fold them.
func (w *varsWriter) addHeader(name string, vals []string) {
	sep := ", "
	if name == "Cookie" {
		sep = "; " // RFC 6265: cookies fold with "; " (HTTP/2 splits them)
	}
	vlen := len(sep) * (len(vals) - 1)
	for _, v := range vals {
		vlen += len(v)
	}
	klen := len("HTTP_") + len(name)
	if klen > maxVarsSize || vlen > maxVarsSize {
		w.err = ErrVarsTooLarge
		return
	}
	start := len(w.b)
	w.b = append(w.b, byte(klen), byte(klen>>8), 'H', 'T', 'T', 'P', '_')
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case c == '-':
			c = '_'
		}
		w.b = append(w.b, c)
	}
	if w.override != nil {
		if _, ok := w.override[string(w.b[start+2:])]; ok {
			w.b = w.b[:start]
			return
		}
	}
	w.b = append(w.b, byte(vlen), byte(vlen>>8))
	for i, v := range vals {
		if i > 0 {
			w.b = append(w.b, sep...)
		}
		w.b = append(w.b, v...)
	}
}

// skipHeader reports headers that must not become HTTP_* vars: those the
// CGI spec carries in their own vars (Host, Content-Type, Content-Length),
// Transfer-Encoding (framing between drover and the client, not the app's),
// and Proxy, which CGI-style apps would read as HTTP_PROXY, the variable
// HTTP client libraries take their proxy from ("httpoxy").
func skipHeader(name string) bool {
	switch len(name) {
	case 4:
		return strings.EqualFold(name, "Host")
	case 5:
		return strings.EqualFold(name, "Proxy")
	case 12:
		return strings.EqualFold(name, "Content-Type")
	case 14:
		return strings.EqualFold(name, "Content-Length")
	case 17:
		return strings.EqualFold(name, "Transfer-Encoding")
	}
	return false
}

// bodyMode says how the request body follows the vars.
type bodyMode uint8

const (
	bodyNone        bodyMode = iota // no body: CONTENT_LENGTH absent
	bodyLength                      // exactly CONTENT_LENGTH bytes
	bodyShimChunked                 // DROVER_CHUNKED=1: u32 LE length-prefixed chunks, zero ends
	bodyHTTPChunked                 // HTTP_TRANSFER_ENCODING=chunked: HTTP chunked coding (real uWSGI)
)

// appendPacket appends a complete uwsgi request packet header and vars for
// req to b, in the manner of nginx's uwsgi_params.
func (t *Transport) appendPacket(b []byte, req *http.Request, length int64, mode bodyMode) ([]byte, error) {
	start := len(b)
	w := varsWriter{b: append(b, 0, 0, 0, 0)}
	if len(t.Params) > 0 {
		w.override = t.Params
	}
	ctx := req.Context()
	ci, haveCI := ConnInfoFrom(ctx)
	if !haveCI {
		ci.RemoteAddr = req.RemoteAddr
	}
	if ci.LocalAddr == "" {
		if a, ok := ctx.Value(http.LocalAddrContextKey).(net.Addr); ok {
			ci.LocalAddr = a.String()
		}
	}
	https := ci.HTTPS || req.TLS != nil
	u := req.URL

	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	w.add("REQUEST_METHOD", method)
	uri := req.RequestURI
	if uri == "" {
		uri = u.RequestURI()
	}
	w.add("REQUEST_URI", uri)
	w.add("PATH_INFO", u.Path)
	w.add("QUERY_STRING", u.RawQuery)
	if ci.ScriptName != "" {
		w.add("SCRIPT_NAME", ci.ScriptName)
	}
	if ct := req.Header["Content-Type"]; len(ct) > 0 {
		w.add("CONTENT_TYPE", ct[0])
	} else {
		w.add("CONTENT_TYPE", "")
	}
	switch mode {
	case bodyLength:
		var n [20]byte
		w.add("CONTENT_LENGTH", string(strconv.AppendInt(n[:0], length, 10)))
	case bodyShimChunked:
		w.addRaw("DROVER_CHUNKED", "1")
	case bodyHTTPChunked:
		w.addRaw("HTTP_TRANSFER_ENCODING", "chunked")
	default:
		w.add("CONTENT_LENGTH", "")
	}
	proto := req.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	w.add("SERVER_PROTOCOL", proto)
	scheme := "http"
	if https {
		scheme = "https"
		w.add("HTTPS", "on")
	}
	w.add("REQUEST_SCHEME", scheme)

	if host, port, ok := splitHostPort(ci.RemoteAddr); ok {
		w.add("REMOTE_ADDR", unbracket(host))
		w.add("REMOTE_PORT", port)
	} else if ci.RemoteAddr != "" {
		w.add("REMOTE_ADDR", ci.RemoteAddr)
	}

	host := req.Host
	if host == "" {
		host = u.Host
	}
	hostName, hostPort, ok := splitHostPort(host)
	if !ok {
		hostName, hostPort = host, ""
	}
	localName, localPort, _ := splitHostPort(ci.LocalAddr)
	serverName := hostName
	if serverName == "" {
		serverName = localName
	}
	if serverName == "" {
		serverName = "localhost"
	}
	w.add("SERVER_NAME", serverName)
	serverPort := localPort
	if serverPort == "" {
		serverPort = hostPort
	}
	if serverPort == "" {
		serverPort = "80"
		if https {
			serverPort = "443"
		}
	}
	w.add("SERVER_PORT", serverPort)
	if host != "" {
		w.add("HTTP_HOST", host)
	}

	for name, vals := range req.Header {
		if len(vals) == 0 || skipHeader(name) || strings.IndexByte(name, '_') >= 0 {
			// A name with '_' would alias one with '-' (X_Forwarded_For vs
			// X-Forwarded-For) and could spoof a header a proxy set; nginx
			// drops them too.
			continue
		}
		w.addHeader(name, vals)
	}
	for k, v := range t.Params {
		w.addRaw(k, v)
	}
	if w.err != nil {
		return b[:start], w.err
	}
	if t.CompactVars {
		if vars, ok := compactVars(w.b[start+headerSize:]); ok {
			w.b = w.b[:start+headerSize+len(vars)]
			w.b[start+3] = modifier2Compact
		}
	}
	size := len(w.b) - start - headerSize
	if size > maxVarsSize {
		return b[:start], ErrVarsTooLarge
	}
	w.b[start+1] = byte(size)
	w.b[start+2] = byte(size >> 8)
	return w.b, nil
}

// modifier2Compact marks a packet whose vars are compactVars': the shim's
// own form, which Python splits at C speed where the length-prefixed form
// costs it a loop in Python per variable.
const modifier2Compact = 1

// compactVars rewrites uwsgi vars (each key and value after a u16 LE
// length) in place as keys and values each ended by a NUL byte. It
// reports false, with b unchanged, when a key or value holds a NUL itself
// (a PATH_INFO decoded from %00, say): that packet keeps the usual form.
func compactVars(b []byte) ([]byte, bool) {
	for r := 0; r < len(b); {
		if r+2 > len(b) {
			return b, false
		}
		n := int(b[r]) | int(b[r+1])<<8
		if r+2+n > len(b) || bytes.IndexByte(b[r+2:r+2+n], 0) >= 0 {
			return b, false
		}
		r += 2 + n
	}
	w := 0
	for r := 0; r < len(b); {
		n := int(b[r]) | int(b[r+1])<<8
		w += copy(b[w:], b[r+2:r+2+n]) // w < r+2: the copy moves bytes down
		b[w] = 0
		w++
		r += 2 + n
	}
	return b[:w], true
}

// splitHostPort splits "host:port" and "[v6]:port" without allocating. The
// brackets of a v6 literal stay in host, as SERVER_NAME wants them.
func splitHostPort(s string) (host, port string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", false
	}
	host, port = s[:i], s[i+1:]
	if strings.IndexByte(host, ':') >= 0 && !(len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']') {
		return "", "", false // a bare v6 address has no port
	}
	return host, port, true
}

// unbracket turns "[::1]" into "::1", the form REMOTE_ADDR takes.
func unbracket(host string) string {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		return host[1 : len(host)-1]
	}
	return host
}
