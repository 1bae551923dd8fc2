package config

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Load reads and parses the configuration file at path; see Parse. When the
// file cannot be read the error is the one from os.ReadFile (so
// errors.Is(err, fs.ErrNotExist) works); every other error is Errors.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes, completes and validates the TOML document data; file names
// it in errors and becomes Config.File.
//
// On success the Config has every default of DESIGN.md applied, Pool.Name
// and Service.Name set, route hosts lower-cased with "*" written as "" (both
// mean any host), and empty arrays and tables stored as nil, so two files
// that mean the same thing compare equal in Diff.
//
// On failure the Config is nil and the error is Errors holding every
// problem found, each at the line and column of its key. A TOML syntax error
// stops decoding, so it is reported alone.
func Parse(file string, data []byte) (*Config, error) {
	return parse(file, data, realHost())
}

// host is what defaults and validation need to know about the machine drover
// runs on. Parse uses the real machine; tests pass a fixed one so that
// results do not depend on where they run.
type host struct {
	euid, uid   int
	numCPU      int
	tempDir     string
	getenv      func(string) string
	lookupUser  func(string) error
	lookupGroup func(string) error
}

func realHost() host {
	return host{
		euid:    os.Geteuid(),
		uid:     os.Getuid(),
		numCPU:  runtime.NumCPU(),
		tempDir: os.TempDir(),
		getenv:  os.Getenv,
		lookupUser: func(name string) error {
			if isDigits(name) {
				_, err := user.LookupId(name)
				return err
			}
			_, err := user.Lookup(name)
			return err
		},
		lookupGroup: func(name string) error {
			if isDigits(name) {
				_, err := user.LookupGroupId(name)
				return err
			}
			_, err := user.LookupGroup(name)
			return err
		},
	}
}

func parse(file string, data []byte, h host) (*Config, error) {
	var raw map[string]any
	if err := decodeTOML(data, &raw); err != nil {
		e := &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
		var de *toml.DecodeError
		if errors.As(err, &de) {
			e.Line, e.Col = de.Position()
		} else if p, ok := locateFailure(data, func(b []byte) error { return decodeTOML(b, new(map[string]any)) }); ok {
			e.Line, e.Col = p.line, p.col
		}
		return nil, Errors{e}
	}

	c := &Config{
		File:     file,
		Pools:    map[string]*Pool{},
		Services: map[string]*Service{},
		pos:      scanPositions(data),
	}
	l := &loader{c: c, host: h, reported: map[string]bool{}, broken: map[string]bool{}}
	l.decodeConfig(raw)
	l.completeConfig()
	l.validate()

	if len(l.errs) > 0 {
		sort.SliceStable(l.errs, func(i, j int) bool {
			a, b := l.errs[i], l.errs[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Col < b.Col
		})
		return nil, l.errs
	}
	return c, nil
}

// decodeTOML decodes a document into a generic tree. Decoding into
// map[string]any rather than into Config leaves type checking to
// decodeValue, which can report every mismatch instead of the first.
func decodeTOML(data []byte, v *map[string]any) error {
	return toml.Unmarshal(data, v)
}

// loader holds the state of one Parse: the Config being built and the
// errors found so far.
type loader struct {
	c    *Config
	host host
	errs Errors
	// reported holds the keys that already have an error, so that one
	// mistake is reported once rather than again by every later check.
	reported map[string]bool
	// broken holds the keys whose value could not be decoded; checks of
	// keys below them would only report the consequences.
	broken map[string]bool
}

// decodeErrorf reports a value that cannot be decoded at all.
func (l *loader) decodeErrorf(key, format string, args ...any) {
	l.broken[key] = true
	l.errorf(key, format, args...)
}

func (l *loader) errorf(key, format string, args ...any) {
	if l.reported[key] {
		return
	}
	for k := parentKey(key); k != ""; k = parentKey(k) {
		if l.broken[k] {
			return
		}
	}
	l.reported[key] = true
	p := lookupPos(l.c.pos, key)
	l.errs = append(l.errs, &Error{
		File: l.c.File, Line: p.line, Col: p.col, Key: key,
		Msg: fmt.Sprintf(format, args...),
	})
}

// Defaults. Decoding starts from these values, so a key the file leaves out
// keeps its default and a key it writes (even as 0 or "") replaces it.

func defaultServer() Server {
	return Server{
		Listen:          []string{"127.0.0.1:8080"},
		Admin:           "127.0.0.1:9180",
		LogFormat:       "text",
		AccessLog:       "stdout",
		ShutdownTimeout: Duration(30 * time.Second),
	}
}

func defaultRapidFail() RapidFail {
	return RapidFail{MaxFailures: 5, Interval: Duration(5 * time.Minute), OnStopped: "503"}
}

func defaultPool(name string) *Pool {
	return &Pool{
		Name:                name,
		Kind:                "http",
		Python:              "python3",
		Start:               "on-demand",
		MaxInstances:        4,
		InstanceConcurrency: 1,
		QueueLength:         1000,
		MaxWait:             Duration(30 * time.Second),
		RequestTimeout:      Duration(10 * time.Minute),
		IdleTimeout:         Duration(20 * time.Minute),
		StartupTimeout:      Duration(90 * time.Second),
		ShutdownTimeout:     Duration(90 * time.Second),
		// Interval and Timeout are set only when [health] is present:
		// pinging is opt-in; see completeConfig.
		Health:    Health{Path: "/"},
		RapidFail: defaultRapidFail(),
		Recycle:   Recycle{Overlap: true},
		Limits:    Limits{CPUAction: "throttle"},
	}
}

func defaultService(name string) *Service {
	return &Service{
		Name:            name,
		Start:           "always",
		Restart:         "on-failure",
		ShutdownTimeout: Duration(90 * time.Second),
		Limits:          Limits{CPUAction: "throttle"},
		RapidFail:       defaultRapidFail(),
	}
}

func defaultRoute() Route { return Route{Path: "/"} }

// decodeConfig fills l.c from the generic TOML tree, reporting unknown keys
// and wrong types. go-toml's own struct decoder stops at the first type
// error; decoding by hand lets Parse report them all.
func (l *loader) decodeConfig(raw map[string]any) {
	c := l.c
	c.Server = defaultServer()
	for _, k := range sortedNames(raw) {
		v := raw[k]
		switch k {
		case "server":
			l.decodeStruct("server", v, reflect.ValueOf(&c.Server).Elem())
		case "route":
			arr, ok := v.([]any)
			if !ok {
				l.decodeErrorf("route", "expected an array of tables ([[route]]), got %s", describe(v))
				continue
			}
			for i, e := range arr {
				r := defaultRoute()
				l.decodeStruct(indexKey("route", i), e, reflect.ValueOf(&r).Elem())
				c.Routes = append(c.Routes, r)
			}
		case "pool":
			l.decodeNamed("pool", v, func(key, name string, t any) {
				p := defaultPool(name)
				l.decodeStruct(key, t, reflect.ValueOf(p).Elem())
				c.Pools[name] = p
			})
		case "service":
			l.decodeNamed("service", v, func(key, name string, t any) {
				s := defaultService(name)
				l.decodeStruct(key, t, reflect.ValueOf(s).Elem())
				c.Services[name] = s
			})
		default:
			l.decodeErrorf(joinKey("", k), "unknown key%s", suggest(k, []string{"server", "route", "pool", "service"}))
		}
	}
}

// decodeNamed walks a table of named tables such as [pool.NAME].
func (l *loader) decodeNamed(section string, v any, each func(key, name string, t any)) {
	m, ok := v.(map[string]any)
	if !ok {
		l.decodeErrorf(section, "expected a table of named tables ([%s.NAME]), got %s", section, describe(v))
		return
	}
	for _, name := range sortedNames(m) {
		each(joinKey(section, name), name, m[name])
	}
}

// decodeStruct decodes a TOML table into the struct v, field by field,
// matching keys to `toml` tags.
func (l *loader) decodeStruct(key string, val any, v reflect.Value) {
	m, ok := val.(map[string]any)
	if !ok {
		l.decodeErrorf(key, "expected a table, got %s", describe(val))
		return
	}
	t := v.Type()
	fields := map[string]int{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name != "" && name != "-" {
			fields[name] = i
			names = append(names, name)
		}
	}
	for _, k := range sortedNames(m) {
		sub := joinKey(key, k)
		i, ok := fields[k]
		if !ok {
			l.decodeErrorf(sub, "unknown key%s", suggest(k, names))
			continue
		}
		l.decodeValue(sub, m[k], v.Field(i))
	}
}

// decodeValue decodes one TOML value into v.
func (l *loader) decodeValue(key string, val any, v reflect.Value) {
	if u, ok := v.Addr().Interface().(tomlValue); ok {
		if err := u.fromTOML(val); err != nil {
			l.decodeErrorf(key, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		s, ok := val.(string)
		if !ok {
			l.decodeErrorf(key, "expected a string, got %s", describe(val))
			return
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := val.(bool)
		if !ok {
			l.decodeErrorf(key, "expected true or false, got %s", describe(val))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		n, ok := val.(int64)
		if !ok {
			l.decodeErrorf(key, "expected an integer, got %s", describe(val))
			return
		}
		if v.OverflowInt(n) {
			l.decodeErrorf(key, "integer %d is out of range", n)
			return
		}
		v.SetInt(n)
	case reflect.Slice:
		arr, ok := val.([]any)
		if !ok {
			l.decodeErrorf(key, "expected an array, got %s", describe(val))
			return
		}
		if len(arr) == 0 {
			v.SetZero()
			return
		}
		s := reflect.MakeSlice(v.Type(), len(arr), len(arr))
		for i, e := range arr {
			l.decodeValue(indexKey(key, i), e, s.Index(i))
		}
		v.Set(s)
	case reflect.Map:
		m, ok := val.(map[string]any)
		if !ok {
			l.decodeErrorf(key, "expected a table, got %s", describe(val))
			return
		}
		if len(m) == 0 {
			v.SetZero()
			return
		}
		out := reflect.MakeMapWithSize(v.Type(), len(m))
		for _, k := range sortedNames(m) {
			e := reflect.New(v.Type().Elem()).Elem()
			l.decodeValue(joinKey(key, k), m[k], e)
			out.SetMapIndex(reflect.ValueOf(k), e)
		}
		v.Set(out)
	case reflect.Struct:
		l.decodeStruct(key, val, v)
	default:
		// Only reachable if config.go gains a field of a new kind.
		l.decodeErrorf(key, "internal error: cannot decode into %s", v.Type())
	}
}

// completeConfig applies the defaults that depend on what else is set.
func (l *loader) completeConfig() {
	c := l.c
	if c.Server.RuntimeDir == "" {
		c.Server.RuntimeDir = defaultRuntimeDir(l.host)
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		r.Host = strings.ToLower(r.Host)
		if r.Host == "*" {
			r.Host = ""
		}
	}
	for name, p := range c.Pools {
		key := joinKey("pool", name)
		// Health pings are opt-in: writing [pool.NAME.health] turns them
		// on with these defaults; without it Interval stays 0 (off).
		if h := joinKey(key, "health"); c.has(h) {
			if !c.has(joinKey(h, "interval")) {
				p.Health.Interval = Duration(30 * time.Second)
			}
			if !c.has(joinKey(h, "timeout")) {
				p.Health.Timeout = Duration(90 * time.Second)
			}
		}
	}
}

// defaultRuntimeDir follows the XDG base directory convention for a user
// session, /run for a system service, and a per-user temporary directory
// otherwise, so two users on one machine never share sockets.
func defaultRuntimeDir(h host) string {
	if d := h.getenv("XDG_RUNTIME_DIR"); d != "" {
		return strings.TrimRight(d, "/") + "/drover"
	}
	if h.euid == 0 {
		return "/run/drover"
	}
	return strings.TrimRight(h.tempDir, "/") + "/drover-" + strconv.Itoa(h.uid)
}

// describe names a decoded TOML value for a type error: `string "4"`,
// `integer 4`, `table`.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("string %q", v)
	case int64:
		return fmt.Sprintf("integer %d", v)
	case float64:
		return fmt.Sprintf("float %v", v)
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case []any:
		return "array"
	case map[string]any:
		return "table"
	case time.Time, toml.LocalDateTime:
		return "date-time"
	case toml.LocalDate:
		return "date"
	case toml.LocalTime:
		return "time"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// suggest returns ` (did you mean "x"?)` for the known name closest to an
// unknown key, if one is close enough to be a likely typo.
func suggest(key string, known []string) string {
	limit := 1
	if len(key) >= 5 {
		limit = 2
	}
	best, bestDist := "", limit+1
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // not a typo; avoid quadratic work on garbage keys
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
