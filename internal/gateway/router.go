package gateway

import (
	"net/http"
	"sort"
	"strings"
)

// Route is one compiled routing rule: requests for Host whose path is
// below Path go to Handler.
type Route struct {
	// Host is "" or "*" (any host), an exact host, or "*.suffix".
	Host string
	// Path is the prefix; "/api" matches "/api" and "/api/...", not "/apix".
	Path string
	// StripPrefix removes Path from the request path before Handler sees it.
	StripPrefix bool
	// Target names the pool or directory, for logs.
	Target  string
	Handler http.Handler
}

// Table is an immutable routing table; the gateway swaps whole tables so
// that a reload switches every route at once.
type Table struct {
	exact    map[string][]*Route
	wildcard []wildcardGroup // longest suffix first
	any      []*Route
}

type wildcardGroup struct {
	suffix string // ".example.org"
	routes []*Route
}

// NewTable compiles routes. Within one host, the longest path prefix wins.
func NewTable(routes []Route) *Table {
	t := &Table{exact: map[string][]*Route{}}
	wild := map[string][]*Route{}
	for i := range routes {
		r := &routes[i]
		h := strings.ToLower(r.Host)
		switch {
		case h == "" || h == "*":
			t.any = append(t.any, r)
		case strings.HasPrefix(h, "*."):
			wild[h[1:]] = append(wild[h[1:]], r)
		default:
			t.exact[h] = append(t.exact[h], r)
		}
	}
	byPath := func(rs []*Route) {
		sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].Path) > len(rs[j].Path) })
	}
	for _, rs := range t.exact {
		byPath(rs)
	}
	byPath(t.any)
	for suffix, rs := range wild {
		byPath(rs)
		t.wildcard = append(t.wildcard, wildcardGroup{suffix, rs})
	}
	sort.Slice(t.wildcard, func(i, j int) bool { return len(t.wildcard[i].suffix) > len(t.wildcard[j].suffix) })
	return t
}

// Match finds the route for a request's Host header and path: exact host
// first, then the longest matching "*.suffix", then any-host routes; a host
// group with no matching path falls through to the next.
func (t *Table) Match(host, path string) *Route {
	host = normalizeHost(host)
	if r := matchPath(t.exact[host], path); r != nil {
		return r
	}
	for _, g := range t.wildcard {
		if strings.HasSuffix(host, g.suffix) && len(host) > len(g.suffix) {
			if r := matchPath(g.routes, path); r != nil {
				return r
			}
		}
	}
	return matchPath(t.any, path)
}

func matchPath(rs []*Route, path string) *Route {
	for _, r := range rs {
		if pathMatches(r.Path, path) {
			return r
		}
	}
	return nil
}

func pathMatches(prefix, path string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

func normalizeHost(host string) string {
	host = cutPort(host)
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}

// cutPort removes a port from a Host header ("example.org:8080",
// "[::1]:8080") and the brackets of an IPv6 literal, without the
// allocation of net.SplitHostPort's error for the common host without
// a port.
func cutPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i > 0 && digits(host[i+1:]) {
		// "name:port" or "[v6]:port"; a bare IPv6 literal has other
		// colons and no brackets, and no port.
		if host[i-1] == ']' || strings.IndexByte(host[:i], ':') < 0 {
			host = host[:i]
		}
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// stripPrefix removes a matched route prefix from the request path.
func stripPrefix(r *http.Request, prefix string) {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return
	}
	p := strings.TrimPrefix(r.URL.Path, prefix)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	r.URL.Path = p
	if r.URL.RawPath != "" {
		rp := strings.TrimPrefix(r.URL.RawPath, prefix)
		if !strings.HasPrefix(rp, "/") {
			rp = "/" + rp
		}
		r.URL.RawPath = rp
	}
}
