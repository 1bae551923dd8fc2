package fastcgi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// ConnInfo describes the client connection a request arrived on. A proxy
// in front of the Transport rewrites the request (and may use a unix socket
// listener), so the original client address and TLS state cannot be read
// from the request it hands over; it passes them in the context instead.
type ConnInfo struct {
	// RemoteAddr is the client's "ip:port"; it overrides req.RemoteAddr.
	RemoteAddr string
	// LocalAddr is the "ip:port" the client connected to; it gives
	// SERVER_ADDR and SERVER_PORT.
	LocalAddr string
	// HTTPS is true when the client connection used TLS (HTTPS=on).
	HTTPS bool
}

type connInfoKey struct{}

// WithConnInfo returns a context that carries ci to Transport.RoundTrip.
func WithConnInfo(ctx context.Context, ci ConnInfo) context.Context {
	return context.WithValue(ctx, connInfoKey{}, ci)
}

// ConnInfoFrom returns the ConnInfo stored by WithConnInfo.
func ConnInfoFrom(ctx context.Context) (ConnInfo, bool) {
	ci, ok := ctx.Value(connInfoKey{}).(ConnInfo)
	return ci, ok
}

type param struct{ name, value string }

// params builds the CGI/1.1 meta-variables of req the way nginx's
// fastcgi_params does, so that PHP applications see the $_SERVER they
// were written for.
func (t *Transport) params(req *http.Request, dst []param) ([]param, error) {
	ctx := req.Context()
	var ci ConnInfo
	if t.ConnInfo != nil {
		ci, _ = t.ConnInfo(ctx)
	} else {
		ci, _ = ConnInfoFrom(ctx)
	}

	urlPath := path.Clean("/" + req.URL.Path)
	filename, scriptName, pathInfo := t.splitScript(urlPath)
	docRoot := t.Root
	if docRoot == "" && t.Script != "" {
		docRoot = filepath.Dir(t.Script)
	}

	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	proto := req.Proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	remote := req.RemoteAddr
	if ci.RemoteAddr != "" {
		remote = ci.RemoteAddr
	}
	remoteAddr, remotePort := splitAddr(remote)
	local := ci.LocalAddr
	if local == "" {
		if a, ok := ctx.Value(http.LocalAddrContextKey).(net.Addr); ok {
			local = a.String()
		}
	}
	serverAddr, serverPort := splitAddr(local)
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	serverName, hostPort := splitAddr(host)
	https := ci.HTTPS || req.TLS != nil
	if serverPort == "" {
		switch {
		case hostPort != "":
			serverPort = hostPort
		case https:
			serverPort = "443"
		default:
			serverPort = "80"
		}
	}

	p := dst[:0]
	add := func(name, value string) { p = append(p, param{name, value}) }
	if filename != "" {
		add("SCRIPT_FILENAME", filename)
	}
	add("SCRIPT_NAME", scriptName)
	add("PATH_INFO", pathInfo)
	add("QUERY_STRING", req.URL.RawQuery)
	add("REQUEST_METHOD", method)
	if ct := req.Header.Get("Content-Type"); ct != "" {
		add("CONTENT_TYPE", ct)
	}
	// php-cgi reads exactly CONTENT_LENGTH bytes of input; a body of
	// unknown length is still streamed for applications that read to the
	// end of FCGI_STDIN.
	if req.ContentLength > 0 {
		add("CONTENT_LENGTH", strconv.FormatInt(req.ContentLength, 10))
	}
	add("REQUEST_URI", req.URL.RequestURI())
	add("DOCUMENT_URI", urlPath)
	add("DOCUMENT_ROOT", docRoot)
	add("SERVER_PROTOCOL", proto)
	add("GATEWAY_INTERFACE", "CGI/1.1")
	add("SERVER_SOFTWARE", "drover")
	add("REMOTE_ADDR", remoteAddr)
	add("REMOTE_PORT", remotePort)
	add("SERVER_ADDR", serverAddr)
	add("SERVER_PORT", serverPort)
	add("SERVER_NAME", serverName)
	if https {
		add("HTTPS", "on")
		add("REQUEST_SCHEME", "https")
	} else {
		add("REQUEST_SCHEME", "http")
	}
	// php-cgi refuses to run without it when cgi.force_redirect is on
	// (the default), to stop direct /cgi-bin/php invocations.
	add("REDIRECT_STATUS", "200")
	if host != "" && req.Header.Get("Host") == "" {
		add("HTTP_HOST", host)
	}
	for name, values := range req.Header {
		// Proxy would become HTTP_PROXY, which CGI programs take for
		// their outgoing proxy (httpoxy). A header with an underscore
		// could pose as another one (X_Real_IP as X-Real-IP), so it is
		// dropped, as nginx does by default.
		if len(values) == 0 || strings.EqualFold(name, "Proxy") || strings.IndexByte(name, '_') >= 0 {
			continue
		}
		sep := ", "
		if strings.EqualFold(name, "Cookie") {
			sep = "; "
		}
		add(headerParamName(name), strings.Join(values, sep))
	}
	for name, value := range t.Params {
		set(&p, name, value)
	}
	for _, kv := range p {
		if strings.IndexByte(kv.name, 0) >= 0 || strings.IndexByte(kv.value, 0) >= 0 {
			return p, fmt.Errorf("fastcgi: param %q contains a NUL byte", kv.name)
		}
		if kv.name == "" {
			return p, fmt.Errorf("fastcgi: empty param name")
		}
	}
	return p, nil
}

// set replaces the value of name in *p, or appends it.
func set(p *[]param, name, value string) {
	for i := range *p {
		if (*p)[i].name == name {
			(*p)[i].value = value
			return
		}
	}
	*p = append(*p, param{name, value})
}

// headerParamName maps "X-Forwarded-For" to "HTTP_X_FORWARDED_FOR".
func headerParamName(name string) string {
	b := make([]byte, 0, len("HTTP_")+len(name))
	b = append(b, "HTTP_"...)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}

// splitAddr splits "host:port" (or "[v6]:port"); anything else, such as a
// unix socket name, is all host.
func splitAddr(addr string) (host, port string) {
	if h, p, err := net.SplitHostPort(addr); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), ""
}

// splitScript maps the clean URL path p to SCRIPT_FILENAME, SCRIPT_NAME and
// PATH_INFO.
//
// With Script set (a front controller), every request runs that file;
// SCRIPT_NAME is the script's own name when the path starts with it
// ("/index.php/blog" → "/index.php" + "/blog"), else empty with the whole
// path as PATH_INFO, keeping SCRIPT_NAME+PATH_INFO equal to the path.
//
// With Root, SCRIPT_NAME is the longest prefix of p that names a regular
// file under Root ("/index.php/foo/bar" → "/index.php" + "/foo/bar"), which
// is what nginx's fastcgi_split_path_info is usually configured to do
// without its regular expression. A directory runs its index.php. When no
// file matches, the whole path is passed so that the application answers
// the 404 ("No input file specified." from php-cgi).
func (t *Transport) splitScript(p string) (filename, scriptName, pathInfo string) {
	if t.Script != "" {
		base := "/" + filepath.Base(t.Script)
		if strings.HasPrefix(p, base) && (len(p) == len(base) || p[len(base)] == '/') {
			return t.Script, base, p[len(base):]
		}
		return t.Script, "", p
	}
	if t.Root == "" {
		return "", "", p
	}
	for i := 1; ; {
		end := len(p)
		if j := strings.IndexByte(p[i:], '/'); j >= 0 {
			end = i + j
		}
		prefix := p[:end]
		fi, err := os.Stat(filepath.Join(t.Root, filepath.FromSlash(prefix)))
		if err != nil {
			break
		}
		if fi.Mode().IsRegular() {
			return filepath.Join(t.Root, filepath.FromSlash(prefix)), prefix, p[end:]
		}
		if !fi.IsDir() {
			break
		}
		if end == len(p) {
			index := path.Join(prefix, "index.php")
			name := filepath.Join(t.Root, filepath.FromSlash(index))
			if fi, err := os.Stat(name); err == nil && fi.Mode().IsRegular() {
				return name, index, ""
			}
			break
		}
		i = end + 1
	}
	return filepath.Join(t.Root, filepath.FromSlash(p)), p, ""
}
