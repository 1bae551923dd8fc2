package fastcgi

import (
	"context"
	"errors"
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
	var ci ConnInfo
	if t.ConnInfo != nil {
		ci, _ = t.ConnInfo(req.Context())
	} else {
		ci, _ = ConnInfoFrom(req.Context())
	}
	p, _, _ := metaVars(req, t.Root, t.Script, phpIndex, ci, dst)
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

// phpIndex is the script a directory runs under Transport.Root.
const phpIndex = "index.php"

// ErrNoScript is returned by CGIParams when, under a document root, no
// prefix of the URL path names a regular file.
var ErrNoScript = errors.New("no script for this path")

// CGIParams returns the CGI/1.1 meta-variables (RFC 3875 section 4.1) of
// req as "NAME=value" strings, built exactly as Transport builds its
// params, for a CGI host that passes them in a process environment; and
// SCRIPT_FILENAME, the program to run.
//
// root and script have the meaning of Transport.Root and Transport.Script,
// except that a directory has no index script: a CGI directory holds
// programs, not a front controller. Under root, a path that names no
// regular file gives ErrNoScript; a fixed script is not checked.
// CONTENT_LENGTH is set when req.ContentLength > 0. A NUL byte in a name
// or value, or a name with '=', is an error: it cannot be passed in an
// environment.
func CGIParams(req *http.Request, root, script string, ci ConnInfo) (vars []string, scriptFilename string, err error) {
	if root == "" && script == "" {
		return nil, "", errors.New("cgi: neither a document root nor a script is set")
	}
	p, filename, found := metaVars(req, root, script, "", ci, nil)
	if !found {
		return nil, filename, ErrNoScript
	}
	vars = make([]string, 0, len(p))
	for _, kv := range p {
		if kv.name == "" || strings.ContainsAny(kv.name, "=\x00") || strings.IndexByte(kv.value, 0) >= 0 {
			return nil, filename, fmt.Errorf("cgi: meta-variable %q cannot be passed in an environment", kv.name)
		}
		vars = append(vars, kv.name+"="+kv.value)
	}
	return vars, filename, nil
}

// metaVars builds the meta-variables common to FastCGI and CGI. found
// reports whether the script was found: always with a fixed script, and
// under root when a prefix of the path names a regular file.
func metaVars(req *http.Request, root, script, index string, ci ConnInfo, dst []param) (p []param, filename string, found bool) {
	ctx := req.Context()
	urlPath := path.Clean("/" + req.URL.Path)
	filename, scriptName, pathInfo, found := splitScript(root, script, index, urlPath)
	docRoot := root
	if docRoot == "" && script != "" {
		docRoot = filepath.Dir(script)
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

	p = dst[:0]
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
	return p, filename, found
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
func (t *Transport) splitScript(p string) (filename, scriptName, pathInfo string) {
	filename, scriptName, pathInfo, _ = splitScript(t.Root, t.Script, phpIndex, p)
	return filename, scriptName, pathInfo
}

// splitScript maps the clean URL path p to SCRIPT_FILENAME, SCRIPT_NAME and
// PATH_INFO.
//
// With script set (a front controller), every request runs that file;
// SCRIPT_NAME is the script's own name when the path starts with it
// ("/index.php/blog" → "/index.php" + "/blog"), else empty with the whole
// path as PATH_INFO, keeping SCRIPT_NAME+PATH_INFO equal to the path.
//
// With root, SCRIPT_NAME is the longest prefix of p that names a regular
// file under root ("/index.php/foo/bar" → "/index.php" + "/foo/bar"), which
// is what nginx's fastcgi_split_path_info is usually configured to do
// without its regular expression. A directory runs its index script, when
// index is set. When no file matches, found is false and the whole path is
// passed, so that a FastCGI application can answer the 404 ("No input file
// specified." from php-cgi).
func splitScript(root, script, index, p string) (filename, scriptName, pathInfo string, found bool) {
	if script != "" {
		base := "/" + filepath.Base(script)
		if strings.HasPrefix(p, base) && (len(p) == len(base) || p[len(base)] == '/') {
			return script, base, p[len(base):], true
		}
		return script, "", p, true
	}
	if root == "" {
		return "", "", p, false
	}
	for i := 1; ; {
		end := len(p)
		if j := strings.IndexByte(p[i:], '/'); j >= 0 {
			end = i + j
		}
		prefix := p[:end]
		fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(prefix)))
		if err != nil {
			break
		}
		if fi.Mode().IsRegular() {
			return filepath.Join(root, filepath.FromSlash(prefix)), prefix, p[end:], true
		}
		if !fi.IsDir() {
			break
		}
		if end == len(p) {
			if index == "" {
				break
			}
			indexPath := path.Join(prefix, index)
			name := filepath.Join(root, filepath.FromSlash(indexPath))
			if fi, err := os.Stat(name); err == nil && fi.Mode().IsRegular() {
				return name, indexPath, "", true
			}
			break
		}
		i = end + 1
	}
	return filepath.Join(root, filepath.FromSlash(p)), p, "", false
}
