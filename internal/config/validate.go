package config

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// validate checks values and cross-references after decoding, so that the
// rest of drover can trust a loaded Config. Each check reports at the key it
// is about; loader.errorf keeps it to one error per key.
func (l *loader) validate() {
	l.validateServer()
	l.validateRoutes()
	for _, name := range sortedNames(l.c.Pools) {
		l.validatePool(l.c.Pools[name])
	}
	for _, name := range sortedNames(l.c.Services) {
		l.validateService(l.c.Services[name])
	}
}

func (l *loader) validateServer() {
	s := &l.c.Server
	seen := map[string]int{}
	for i, a := range s.Listen {
		key := indexKey("server.listen", i)
		if err := checkAddr(a); err != nil {
			l.errorf(key, "%v", err)
			continue
		}
		if j, dup := seen[a]; dup {
			l.errorf(key, "%q is already server.listen[%d]", a, j)
			continue
		}
		seen[a] = i
	}
	if len(s.Listen) == 0 && len(l.c.Routes) > 0 {
		l.errorf("server.listen", "no listen address, but there are routes to serve")
	}
	if s.Admin != "" {
		if err := checkAddr(s.Admin); err != nil {
			l.errorf("server.admin", "%v", err)
		} else if j, dup := seen[s.Admin]; dup {
			l.errorf("server.admin", "%q is also server.listen[%d]; the admin API needs its own address", s.Admin, j)
		}
	}
	l.enum("server.log_format", s.LogFormat, "text", "json")
	if l.c.has("server.runtime_dir") && s.RuntimeDir != "" && !filepath.IsAbs(s.RuntimeDir) {
		l.errorf("server.runtime_dir", "must be an absolute path, got %q", s.RuntimeDir)
	}
	if s.TLSCert != "" && s.TLSKey == "" {
		l.errorf("server.tls_key", "required when tls_cert is set")
	}
	if s.TLSKey != "" && s.TLSCert == "" {
		l.errorf("server.tls_cert", "required when tls_key is set")
	}
}

func (l *loader) validateRoutes() {
	type hostPath struct{ host, path string }
	seen := map[hostPath]int{}
	for i, r := range l.c.Routes {
		key := indexKey("route", i)
		switch {
		case r.Pool == "" && r.Static == "":
			l.errorf(key, "a route needs pool or static")
		case r.Pool != "" && r.Static != "":
			l.errorf(key, "a route has pool or static, not both")
		case r.Pool != "":
			if _, ok := l.c.Pools[r.Pool]; !ok {
				l.errorf(key+".pool", "no pool %q is defined%s", r.Pool, poolList(l.c.Pools))
			}
		}
		if r.Listing && r.Static == "" {
			l.errorf(key+".listing", "applies only to static routes")
		}
		if !strings.HasPrefix(r.Path, "/") {
			l.errorf(key+".path", "must start with \"/\", got %q", r.Path)
			continue
		}
		if err := checkRouteHost(r.Host); err != nil {
			l.errorf(key+".host", "%v", err)
			continue
		}
		hp := hostPath{r.Host, r.Path}
		if j, dup := seen[hp]; dup {
			host := "any host"
			if r.Host != "" {
				host = "host " + strconv.Quote(r.Host)
			}
			l.errorf(key, "duplicate route: route[%d] already maps %s, path %q", j, host, r.Path)
			continue
		}
		seen[hp] = i
	}
}

var poolKinds = []string{"http", "fastcgi", "uwsgi", "cgi", "wsgi"}

func (l *loader) validatePool(p *Pool) {
	key := joinKey("pool", p.Name)
	k := func(sub string) string { return key + "." + sub }
	if !validName(p.Name) {
		l.errorf(key, "invalid pool name %q: %s", p.Name, nameRule)
	}

	switch p.Kind {
	case "http", "fastcgi", "uwsgi":
		if len(p.Command) == 0 {
			l.errorf(k("command"), "required for kind %q", p.Kind)
		}
	case "cgi":
		if p.Script == "" && p.Root == "" {
			l.errorf(k("script"), "kind \"cgi\" needs script or root")
		}
	case "wsgi":
		if p.App == "" {
			l.errorf(k("app"), "required for kind \"wsgi\" (module:callable)")
		} else if !validApp(p.App) {
			l.errorf(k("app"), "invalid app %q: want module:callable, e.g. \"mysite.wsgi:application\"", p.App)
		}
		if p.Python == "" {
			l.errorf(k("python"), "must name a Python interpreter or virtualenv")
		}
	default:
		l.errorf(k("kind"), "invalid kind %q: want one of %s", p.Kind, quoteList(poolKinds))
	}
	if slices.Contains(poolKinds, p.Kind) {
		// A setting the kind ignores is a mistake (a wrong kind, or a key
		// copied from another pool), not a harmless extra. Writing the
		// default, as the reference config in DESIGN.md does, is fine.
		for _, f := range []struct {
			name  string
			set   bool
			kinds []string
		}{
			{"command", len(p.Command) > 0, []string{"http", "fastcgi", "uwsgi", "cgi"}},
			{"app", p.App != "", []string{"wsgi"}},
			{"python", p.Python != defaultPool("").Python, []string{"wsgi"}},
			{"pythonpath", len(p.PythonPath) > 0, []string{"wsgi"}},
			{"root", p.Root != "", []string{"fastcgi", "cgi"}},
			{"script", p.Script != "", []string{"fastcgi", "cgi"}},
			{"threads", p.Threads != 0, []string{"wsgi"}},
		} {
			if f.set && !slices.Contains(f.kinds, p.Kind) {
				l.errorf(k(f.name), "not used by kind %q (only by %s)", p.Kind, strings.Join(f.kinds, ", "))
			}
		}
	}
	l.checkArgv(k("command"), p.Command)
	l.checkEnv(k("env"), p.Env)
	l.checkIdentity(key, p.User, p.Group)

	l.enum(k("start"), p.Start, "on-demand", "always")
	if p.MinInstances < 0 {
		l.errorf(k("min_instances"), "must be >= 0")
	}
	if p.MaxInstances < 1 {
		l.errorf(k("max_instances"), "must be >= 1")
	} else if p.MinInstances > p.MaxInstances {
		l.errorf(k("min_instances"), "must be <= max_instances (%d)", p.MaxInstances)
	}
	if p.InstanceConcurrency < 1 {
		l.errorf(k("instance_concurrency"), "must be >= 1")
	} else if p.Kind == "wsgi" && p.Threads != 0 && p.Threads != 1 && p.Threads != p.InstanceConcurrency {
		l.errorf(k("threads"), "must be 1 (one thread serves every slot, a request at a time) or instance_concurrency (%d, a thread per slot)", p.InstanceConcurrency)
	}
	if p.QueueLength < 0 {
		l.errorf(k("queue_length"), "must be >= 0")
	}

	if p.Health.Path != "" && !strings.HasPrefix(p.Health.Path, "/") {
		l.errorf(k("health.path"), "must start with \"/\", got %q", p.Health.Path)
	}
	if p.Health.Interval > 0 && p.Health.Timeout == 0 {
		l.errorf(k("health.timeout"), "must be > 0 when interval is set")
	}
	l.validateRapidFail(k("rapid_fail"), p.RapidFail)

	if p.Recycle.Requests < 0 {
		l.errorf(k("recycle.requests"), "must be >= 0")
	}
	for i, t := range p.Recycle.Schedule {
		if !validClock(t) {
			l.errorf(indexKey(k("recycle.schedule"), i), "invalid time %q: want HH:MM from 00:00 to 23:59", t)
		}
	}
	for i, w := range p.Recycle.Watch {
		if w == "" {
			l.errorf(indexKey(k("recycle.watch"), i), "must not be empty")
		}
	}
	l.validateLimits(k("limits"), p.Limits)
	l.checkArgv(k("orphan.exec"), p.Orphan.Exec)
}

func (l *loader) validateService(s *Service) {
	key := joinKey("service", s.Name)
	k := func(sub string) string { return key + "." + sub }
	if !validName(s.Name) {
		l.errorf(key, "invalid service name %q: %s", s.Name, nameRule)
	}
	if len(s.Command) == 0 {
		l.errorf(k("command"), "required")
	}
	l.checkArgv(k("command"), s.Command)
	l.checkEnv(k("env"), s.Env)
	l.checkIdentity(key, s.User, s.Group)
	l.enum(k("start"), s.Start, "always", "on-demand")
	l.enum(k("restart"), s.Restart, "always", "on-failure", "never")
	if err := checkReady(s.Ready); err != nil {
		l.errorf(k("ready"), "%v", err)
	}
	l.validateRapidFail(k("rapid_fail"), s.RapidFail)
	l.validateLimits(k("limits"), s.Limits)
}

func (l *loader) validateRapidFail(key string, r RapidFail) {
	if r.MaxFailures < 0 {
		l.errorf(key+".max_failures", "must be >= 0 (0 turns rapid-fail protection off)")
	}
	l.enum(key+".on_stopped", r.OnStopped, "503", "reset")
}

func (l *loader) validateLimits(key string, lim Limits) {
	l.enum(key+".cpu_action", lim.CPUAction, "throttle", "kill", "log")
	if lim.Pids < 0 {
		l.errorf(key+".pids", "must be >= 0")
	}
	if lim.OpenFiles < 0 {
		l.errorf(key+".open_files", "must be >= 0")
	}
	seen := map[int]bool{}
	for i, cpu := range lim.CPUAffinity {
		ek := indexKey(key+".cpu_affinity", i)
		switch {
		case cpu < 0:
			l.errorf(ek, "cpu %d does not exist: CPUs are numbered from 0", cpu)
		case cpu >= l.host.numCPU:
			l.errorf(ek, "cpu %d does not exist: this machine has %d CPU%s", cpu, l.host.numCPU, plural(l.host.numCPU))
		case seen[cpu]:
			l.errorf(ek, "cpu %d is listed twice", cpu)
		}
		seen[cpu] = true
	}
	if lim.Nice < -20 || lim.Nice > 19 {
		l.errorf(key+".nice", "must be between -20 and 19, got %d", lim.Nice)
	}
}

// checkIdentity checks user and group of a pool or service: they must exist
// now (a typo should fail at load, not at the first spawn) and drover must
// be root to switch to them.
func (l *loader) checkIdentity(key, usr, grp string) {
	for _, id := range []struct {
		field, name string
		lookup      func(string) error
	}{
		{"user", usr, l.host.lookupUser},
		{"group", grp, l.host.lookupGroup},
	} {
		if id.name == "" {
			continue
		}
		k := key + "." + id.field
		if err := id.lookup(id.name); err != nil {
			l.errorf(k, "%s %q does not exist", id.field, id.name)
		} else if l.host.euid != 0 {
			l.errorf(k, "%s requires drover to run as root", id.field)
		}
	}
}

func (l *loader) checkArgv(key string, argv []string) {
	if len(argv) > 0 && argv[0] == "" {
		l.errorf(indexKey(key, 0), "the program must not be empty")
	}
	for i, a := range argv {
		if strings.IndexByte(a, 0) >= 0 {
			l.errorf(indexKey(key, i), "must not contain a NUL byte")
		}
	}
}

func (l *loader) checkEnv(key string, env map[string]string) {
	for _, name := range sortedNames(env) {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			l.errorf(joinKey(key, name), "invalid environment variable name %q", name)
		} else if strings.IndexByte(env[name], 0) >= 0 {
			l.errorf(joinKey(key, name), "must not contain a NUL byte")
		}
	}
}

func (l *loader) enum(key, val string, allowed ...string) {
	if !slices.Contains(allowed, val) {
		l.errorf(key, "invalid value %q: want %s", val, quoteList(allowed))
	}
}

const nameRule = "use letters, digits, '_', '.' and '-', starting with a letter or digit"

// validName reports whether name matches ^[A-Za-z0-9][A-Za-z0-9_.-]*$, which
// keeps names safe in URLs, metric labels, cgroup and socket file names.
func validName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return name != ""
}

// validApp reports whether s is "module:callable" with a dotted Python
// module path and a (possibly dotted) attribute path.
func validApp(s string) bool {
	mod, fn, ok := strings.Cut(s, ":")
	return ok && validDotted(mod) && validDotted(fn)
}

func validDotted(s string) bool {
	for _, part := range strings.Split(s, ".") {
		if part == "" || part[0] >= '0' && part[0] <= '9' {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
				return false
			}
		}
	}
	return true
}

// validClock reports whether s is "HH:MM" between 00:00 and 23:59.
func validClock(s string) bool {
	if len(s) != 5 || s[2] != ':' || !isDigits(s[:2]) || !isDigits(s[3:]) {
		return false
	}
	h, _ := strconv.Atoi(s[:2])
	m, _ := strconv.Atoi(s[3:])
	return h < 24 && m < 60
}

// checkAddr checks a listen or admin address: "host:port" (host may be
// empty for all interfaces, port 0 picks a free port) or "unix:/abs/path".
func checkAddr(s string) error {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		return checkSocketPath(path)
	}
	h, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid address %q: want host:port or unix:/path", s)
	}
	if n, err := strconv.Atoi(port); err != nil || !isDigits(port) || n > 65535 {
		return fmt.Errorf("invalid address %q: port must be a number from 0 to 65535", s)
	}
	if h != "" && !validIP(h) && !validHostname(h) {
		return fmt.Errorf("invalid address %q: %q is not an IP address or host name", s, h)
	}
	return nil
}

// checkSocketPath checks a unix socket path: absolute, so it does not depend
// on the working directory, and short enough for sockaddr_un.
func checkSocketPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("unix socket path %q must be absolute", p)
	}
	if len(p) > 107 {
		return fmt.Errorf("unix socket path %q is too long (%d bytes; Linux allows 107)", p, len(p))
	}
	return nil
}

// checkReady checks a service's readiness condition.
func checkReady(r string) error {
	switch {
	case r == "" || r == "notify":
		return nil
	case strings.HasPrefix(r, "tcp:"):
		h, port, err := net.SplitHostPort(r[len("tcp:"):])
		if err != nil || h == "" {
			return fmt.Errorf("invalid ready %q: want tcp:HOST:PORT", r)
		}
		if n, err := strconv.Atoi(port); err != nil || !isDigits(port) || n < 1 || n > 65535 {
			return fmt.Errorf("invalid ready %q: port must be a number from 1 to 65535", r)
		}
		if !validIP(h) && !validHostname(h) {
			return fmt.Errorf("invalid ready %q: %q is not an IP address or host name", r, h)
		}
		return nil
	case strings.HasPrefix(r, "unix:"):
		return checkSocketPath(r[len("unix:"):])
	default:
		return fmt.Errorf("invalid ready %q: want \"\", \"notify\", \"tcp:HOST:PORT\" or \"unix:/path\"", r)
	}
}

// checkRouteHost checks an already lower-cased route host: "" (any),
// "*.suffix" or an exact host name or IP address, without a port.
func checkRouteHost(h string) error {
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
	}
	if h == "" || validHostname(name) || name == h && validIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")) {
		return nil
	}
	return fmt.Errorf("invalid host %q: want \"\" or \"*\" (any host), an exact host name, or \"*.example.org\"", h)
}

func validIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// validHostname accepts DNS names, allowing '_' as many internal names use it.
func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func quoteList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = strconv.Quote(v)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func poolList(m map[string]*Pool) string {
	if len(m) == 0 {
		return " (there are no pools)"
	}
	return " (pools: " + strings.Join(sortedNames(m), ", ") + ")"
}

func sortedNames[T any](m map[string]T) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
