package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testHost is a fixed machine: root, 2 CPUs, users "root" and "www-data".
func testHost() host {
	known := func(names ...string) func(string) error {
		return func(n string) error {
			for _, k := range names {
				if n == k {
					return nil
				}
			}
			return errors.New("unknown")
		}
	}
	return host{
		euid: 0, uid: 0, numCPU: 2, tempDir: "/tmp",
		getenv:      func(string) string { return "" },
		lookupUser:  known("root", "www-data", "33"),
		lookupGroup: known("root", "www-data"),
	}
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := parse("drover.toml", []byte(src), testHost())
	if err != nil {
		t.Fatalf("unexpected error:\n%v", err)
	}
	return c
}

func parseErrors(t *testing.T, src string, h host) Errors {
	t.Helper()
	c, err := parse("drover.toml", []byte(src), h)
	if err == nil {
		t.Fatalf("expected an error, got none")
	}
	if c != nil {
		t.Errorf("got a Config along with errors")
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want Errors: %v", err, err)
	}
	return errs
}

func TestDesignExample(t *testing.T) {
	data, err := os.ReadFile("testdata/design_example.toml")
	if err != nil {
		t.Fatal(err)
	}
	c := mustParse(t, string(data))

	if got, want := c.Server.Listen, []string{"127.0.0.1:8080"}; !reflect.DeepEqual(got, want) {
		t.Errorf("listen = %q, want %q", got, want)
	}
	if c.Server.RuntimeDir != "/run/drover" {
		t.Errorf("runtime_dir = %q, want the default for root", c.Server.RuntimeDir)
	}
	want := []Route{{Host: "tiles.example.org", Path: "/", Pool: "tiles"}}
	if !reflect.DeepEqual(c.Routes, want) {
		t.Errorf("routes = %+v, want %+v", c.Routes, want)
	}
	p := c.Pools["tiles"]
	if p == nil {
		t.Fatal("pool tiles missing")
	}
	if p.Name != "tiles" || p.Kind != "wsgi" || p.App != "tilecache:application" {
		t.Errorf("pool = %+v", p)
	}
	if p.Health != (Health{Path: "/", Interval: Duration(30 * time.Second), Timeout: Duration(90 * time.Second)}) {
		t.Errorf("health = %+v", p.Health)
	}
	if p.Command != nil || p.Env != nil || p.Recycle.Schedule != nil {
		t.Errorf("empty arrays and tables should decode as nil: %+v", p)
	}
	if !p.Recycle.Overlap || p.Limits.CPUAction != "throttle" || p.RapidFail.OnStopped != "503" {
		t.Errorf("recycle/limits/rapid_fail = %+v %+v %+v", p.Recycle, p.Limits, p.RapidFail)
	}
	s := c.Services["indexer"]
	if s == nil || s.Name != "indexer" || !reflect.DeepEqual(s.Command, []string{"/usr/bin/indexer", "--loop"}) {
		t.Fatalf("service = %+v", s)
	}
	if s.Restart != "on-failure" || s.ShutdownTimeout != Duration(90*time.Second) {
		t.Errorf("service defaults = %+v", s)
	}
	if line, col := c.Pos("pool.tiles.max_instances"); line != 31 || col != 1 {
		t.Errorf("Pos(max_instances) = %d:%d, want 31:1", line, col)
	}
}

func TestLoad(t *testing.T) {
	c, err := Load("testdata/design_example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.File != "testdata/design_example.toml" {
		t.Errorf("File = %q", c.File)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, `
[[route]]
pool = "app"

[pool.app]
command = ["./app"]

[service.worker]
command = ["./worker"]
`)
	wantServer := Server{
		Listen:          []string{"127.0.0.1:8080"},
		Admin:           "127.0.0.1:9180",
		RuntimeDir:      "/run/drover",
		LogFormat:       "text",
		AccessLog:       "stdout",
		ShutdownTimeout: Duration(30 * time.Second),
	}
	if !reflect.DeepEqual(c.Server, wantServer) {
		t.Errorf("server =\n%+v, want\n%+v", c.Server, wantServer)
	}
	if want := []Route{{Path: "/", Pool: "app"}}; !reflect.DeepEqual(c.Routes, want) {
		t.Errorf("routes = %+v, want %+v", c.Routes, want)
	}
	rapid := RapidFail{MaxFailures: 5, Interval: Duration(5 * time.Minute), OnStopped: "503"}
	wantPool := &Pool{
		Name:                "app",
		Kind:                "http",
		Command:             []string{"./app"},
		Python:              "python3",
		Start:               "on-demand",
		MinInstances:        0,
		MaxInstances:        4,
		InstanceConcurrency: 1,
		QueueLength:         1000,
		MaxWait:             Duration(30 * time.Second),
		RequestTimeout:      Duration(10 * time.Minute),
		IdleTimeout:         Duration(20 * time.Minute),
		StartupTimeout:      Duration(90 * time.Second),
		ShutdownTimeout:     Duration(90 * time.Second),
		Health:              Health{Path: "/"}, // no [health]: pings off
		RapidFail:           rapid,
		Recycle:             Recycle{Overlap: true},
		Limits:              Limits{CPUAction: "throttle"},
	}
	if !reflect.DeepEqual(c.Pools["app"], wantPool) {
		t.Errorf("pool =\n%+v, want\n%+v", c.Pools["app"], wantPool)
	}
	wantService := &Service{
		Name:            "worker",
		Command:         []string{"./worker"},
		Start:           "always",
		Restart:         "on-failure",
		ShutdownTimeout: Duration(90 * time.Second),
		Limits:          Limits{CPUAction: "throttle"},
		RapidFail:       rapid,
	}
	if !reflect.DeepEqual(c.Services["worker"], wantService) {
		t.Errorf("service =\n%+v, want\n%+v", c.Services["worker"], wantService)
	}
}

func TestExplicitZeroBeatsDefault(t *testing.T) {
	c := mustParse(t, `
[server]
admin = ""
access_log = ""
shutdown_timeout = 0

[pool.app]
command = ["./app"]
queue_length = 0
max_wait = ""
recycle.overlap = false
`)
	if c.Server.Admin != "" || c.Server.AccessLog != "" || c.Server.ShutdownTimeout != 0 {
		t.Errorf("server = %+v", c.Server)
	}
	p := c.Pools["app"]
	if p.QueueLength != 0 || p.MaxWait != 0 || p.Recycle.Overlap {
		t.Errorf("pool = %+v", p)
	}
}

func TestHealthDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, health string
		want         Health
	}{
		{"absent", "", Health{Path: "/"}},
		{"empty table", "[pool.app.health]\n", Health{Path: "/", Interval: Duration(30 * time.Second), Timeout: Duration(90 * time.Second)}},
		{"interval only", "[pool.app.health]\ninterval = \"5s\"\n", Health{Path: "/", Interval: Duration(5 * time.Second), Timeout: Duration(90 * time.Second)}},
		{"dotted key", "health.path = \"/ping\"\n", Health{Path: "/ping", Interval: Duration(30 * time.Second), Timeout: Duration(90 * time.Second)}},
		{"off", "[pool.app.health]\ninterval = \"0\"\ntimeout = 0\n", Health{Path: "/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, "[pool.app]\ncommand = [\"./app\"]\n"+tc.health)
			if got := c.Pools["app"].Health; got != tc.want {
				t.Errorf("health = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestRuntimeDirDefault(t *testing.T) {
	for _, tc := range []struct {
		name string
		xdg  string
		euid int
		want string
	}{
		{"xdg", "/run/user/1000", 1000, "/run/user/1000/drover"},
		{"xdg wins for root", "/run/user/0/", 0, "/run/user/0/drover"},
		{"root", "", 0, "/run/drover"},
		{"user", "", 1000, "/tmp/drover-1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testHost()
			h.euid, h.uid = tc.euid, tc.euid
			h.getenv = func(k string) string {
				if k == "XDG_RUNTIME_DIR" {
					return tc.xdg
				}
				return ""
			}
			c, err := parse("f", nil, h)
			if err != nil {
				t.Fatal(err)
			}
			if c.Server.RuntimeDir != tc.want {
				t.Errorf("runtime_dir = %q, want %q", c.Server.RuntimeDir, tc.want)
			}
		})
	}
	c := mustParse(t, "[server]\nruntime_dir = \"/srv/drover\"\n")
	if c.Server.RuntimeDir != "/srv/drover" {
		t.Errorf("explicit runtime_dir = %q", c.Server.RuntimeDir)
	}
}

func TestValidVariants(t *testing.T) {
	c := mustParse(t, `
[server]
listen = ["0.0.0.0:80", ":8080", "[::1]:8443", "localhost:0", "unix:/run/drover/front.sock"]
admin = "unix:/run/drover/admin.sock"

[[route]]
host = "*.Example.org"
path = "/api"
pool = "tiles.v2"
strip_prefix = true

[[route]]
host = "*"
path = "/static"
static = "/srv/www"
listing = true

[[route]]
host = "10.0.0.1"
pool = "php"

[pool."tiles.v2"]
command = ["./tiles", "--port", "$PORT"]
env = { A = "1", B_2 = "x" }
user = "www-data"
group = "www-data"
limits = { memory = "512MiB", cpu = "150%", cpu_affinity = [0, 1], nice = -5, address_space = 1073741824 }
recycle.schedule = ["00:00", "23:59"]
recycle.memory = "1.5GiB"

[pool.php]
kind = "fastcgi"
command = ["php-cgi"]
root = "/srv/php"

[pool.legacy]
kind = "cgi"
script = "/srv/cgi/app.cgi"

[pool.py]
kind = "wsgi"
app = "mysite.wsgi:application"
python = "/srv/venv"
pythonpath = ["/srv/lib"]

[service.a]
command = ["a"]
ready = "tcp:127.0.0.1:9000"
restart = "never"

[service.b]
command = ["b"]
ready = "unix:/run/b.sock"
start = "on-demand"

[service.c]
command = ["c"]
ready = "notify"
user = "33"
`)
	if c.Routes[0].Host != "*.example.org" || c.Routes[1].Host != "" {
		t.Errorf("hosts not normalised: %q %q", c.Routes[0].Host, c.Routes[1].Host)
	}
	p := c.Pools["tiles.v2"]
	if p.Limits.Memory != 512<<20 || p.Limits.CPU != 150 || p.Limits.Nice != -5 || p.Limits.AddressSpace != 1<<30 {
		t.Errorf("limits = %+v", p.Limits)
	}
	if p.Recycle.Memory != 3<<29 {
		t.Errorf("recycle.memory = %d", p.Recycle.Memory)
	}
	if line, _ := c.Pos(`pool."tiles.v2".env.B_2`); line != 24 {
		t.Errorf("Pos(quoted pool env) line = %d, want 24", line)
	}
}

func TestErrors(t *testing.T) {
	const app = "[pool.app]\ncommand = [\"./app\"]\n" // lines 1-2
	notRoot := func(h *host) { h.euid = 1000 }

	for _, tc := range []struct {
		name      string
		src       string
		host      func(*host)
		line, col int
		key       string
		msg       string
	}{
		{
			name: "unknown key",
			src:  "[server]\nlisen = [\"127.0.0.1:80\"]\n",
			line: 2, col: 1, key: "server.lisen", msg: `unknown key (did you mean "listen"?)`,
		},
		{
			name: "unknown table",
			src:  app + "[pool.app.helth]\npath = \"/\"\n",
			line: 3, col: 1, key: "pool.app.helth", msg: `did you mean "health"?`,
		},
		{
			name: "unknown top-level key",
			src:  "pools = 1\n",
			line: 1, col: 1, key: "pools", msg: `did you mean "pool"?`,
		},
		{
			name: "string for int",
			src:  app + "max_instances = \"4\"\n",
			line: 3, col: 1, key: "pool.app.max_instances", msg: `expected an integer, got string "4"`,
		},
		{
			name: "float for int",
			src:  app + "queue_length = 1.5\n",
			line: 3, col: 1, key: "pool.app.queue_length", msg: "expected an integer, got float 1.5",
		},
		{
			name: "string for bool",
			src:  app + "[[route]]\npool = \"app\"\nstrip_prefix = \"yes\"\n",
			line: 5, col: 1, key: "route[0].strip_prefix", msg: "expected true or false",
		},
		{
			name: "string for array",
			src:  "[server]\nlisten = \"127.0.0.1:80\"\n",
			line: 2, col: 1, key: "server.listen", msg: "expected an array",
		},
		{
			name: "int in string array",
			src:  "[pool.app]\ncommand = [\"./app\", 1]\n",
			line: 2, col: 21, key: "pool.app.command[1]", msg: "expected a string, got integer 1",
		},
		{
			name: "route as table",
			src:  "[route]\npool = \"x\"\n",
			line: 1, col: 1, key: "route", msg: "expected an array of tables ([[route]]), got table",
		},
		{
			name: "bad duration",
			src:  app + "max_wait = \"30 seconds\"\n",
			line: 3, col: 1, key: "pool.app.max_wait", msg: `invalid duration "30 seconds"`,
		},
		{
			name: "duration without unit",
			src:  app + "idle_timeout = 30\n",
			line: 3, col: 1, key: "pool.app.idle_timeout", msg: `a duration needs a unit: write "30s"`,
		},
		{
			name: "negative duration",
			src:  app + "  request_timeout = \"-1m\"\n",
			line: 3, col: 3, key: "pool.app.request_timeout", msg: `negative duration "-1m"`,
		},
		{
			name: "negative size",
			src:  app + "[pool.app.limits]\nmemory = \"-5MiB\"\n",
			line: 4, col: 1, key: "pool.app.limits.memory", msg: `negative size "-5MiB"`,
		},
		{
			name: "negative size integer",
			src:  app + "limits.address_space = -1\n",
			line: 3, col: 1, key: "pool.app.limits.address_space", msg: "negative size -1",
		},
		{
			name: "garbage size",
			src:  app + "recycle.memory = \"12 parsecs\"\n",
			line: 3, col: 1, key: "pool.app.recycle.memory", msg: `invalid size "12 parsecs"`,
		},
		{
			name: "negative percent",
			src:  app + "limits = { cpu = \"-50%\" }\n",
			line: 3, col: 12, key: "pool.app.limits.cpu", msg: "negative percentage",
		},
		{
			name: "min greater than max",
			src:  app + "max_instances = 2\nmin_instances = 5\n",
			line: 4, col: 1, key: "pool.app.min_instances", msg: "must be <= max_instances (2)",
		},
		{
			name: "max zero",
			src:  app + "max_instances = 0\n",
			line: 3, col: 1, key: "pool.app.max_instances", msg: "must be >= 1",
		},
		{
			name: "instance concurrency zero",
			src:  app + "instance_concurrency = 0\n",
			line: 3, col: 1, key: "pool.app.instance_concurrency", msg: "must be >= 1",
		},
		{
			name: "route to missing pool",
			src:  app + "\n[[route]]\npath = \"/x\"\npool = \"ap\"\n",
			line: 6, col: 1, key: "route[0].pool", msg: `no pool "ap" is defined (pools: app)`,
		},
		{
			name: "route to missing pool, inline array",
			src:  app + "[server]\nlisten = [\"127.0.0.1:80\"]\n[[route]]\npool = \"app\"\n[[route]]\npath = \"/b\"\npool = \"b\"\n",
			line: 9, col: 1, key: "route[1].pool", msg: `no pool "b"`,
		},
		{
			name: "duplicate route",
			src:  app + "[[route]]\nhost = \"A.org\"\npool = \"app\"\n[[route]]\nhost = \"a.org\"\npath = \"/\"\nstatic = \"/srv\"\n",
			line: 6, col: 1, key: "route[1]", msg: `duplicate route: route[0] already maps host "a.org", path "/"`,
		},
		{
			name: "duplicate any-host route",
			src:  app + "[[route]]\npool = \"app\"\n[[route]]\nhost = \"*\"\npool = \"app\"\n",
			line: 5, col: 1, key: "route[1]", msg: "already maps any host",
		},
		{
			name: "route with pool and static",
			src:  app + "[[route]]\npool = \"app\"\nstatic = \"/srv/www\"\n",
			line: 3, col: 1, key: "route[0]", msg: "pool or static, not both",
		},
		{
			name: "route with neither",
			src:  "[[route]]\npath = \"/\"\n",
			line: 1, col: 1, key: "route[0]", msg: "needs pool or static",
		},
		{
			name: "route path without slash",
			src:  app + "[[route]]\npool = \"app\"\npath = \"api\"\n",
			line: 5, col: 1, key: "route[0].path", msg: `must start with "/"`,
		},
		{
			name: "route host with port",
			src:  app + "[[route]]\npool = \"app\"\nhost = \"example.org:8080\"\n",
			line: 5, col: 1, key: "route[0].host", msg: "invalid host",
		},
		{
			name: "listing on pool route",
			src:  app + "[[route]]\npool = \"app\"\nlisting = true\n",
			line: 5, col: 1, key: "route[0].listing", msg: "only to static routes",
		},
		{
			name: "bad kind",
			src:  app + "kind = \"php\"\n",
			line: 3, col: 1, key: "pool.app.kind", msg: `invalid kind "php"`,
		},
		{
			name: "command missing",
			src:  "[pool.app]\nkind = \"uwsgi\"\n",
			line: 1, col: 1, key: "pool.app.command", msg: `required for kind "uwsgi"`,
		},
		{
			name: "wsgi without app",
			src:  "\n[pool.py]\nkind = \"wsgi\"\n",
			line: 2, col: 1, key: "pool.py.app", msg: "required for kind",
		},
		{
			name: "wsgi bad app",
			src:  "[pool.py]\nkind = \"wsgi\"\napp = \"mysite/wsgi.py\"\n",
			line: 3, col: 1, key: "pool.py.app", msg: "want module:callable",
		},
		{
			name: "wsgi with command",
			src:  "[pool.py]\nkind = \"wsgi\"\napp = \"m:app\"\ncommand = [\"gunicorn\"]\n",
			line: 4, col: 1, key: "pool.py.command", msg: `not used by kind "wsgi"`,
		},
		{
			name: "threads on an http pool",
			src:  app + "threads = 2\n",
			line: 3, col: 1, key: "pool.app.threads", msg: `not used by kind "http"`,
		},
		{
			name: "wsgi threads neither 1 nor the slots",
			src:  "[pool.py]\nkind = \"wsgi\"\napp = \"m:app\"\ninstance_concurrency = 4\nthreads = 2\n",
			line: 5, col: 1, key: "pool.py.threads", msg: "must be 1 (one thread serves every slot, a request at a time) or instance_concurrency (4, a thread per slot)",
		},
		{
			name: "cgi without script or root",
			src:  "[pool.c]\nkind = \"cgi\"\n",
			line: 1, col: 1, key: "pool.c.script", msg: "needs script or root",
		},
		{
			name: "bad start",
			src:  app + "start = \"lazy\"\n",
			line: 3, col: 1, key: "pool.app.start", msg: `want "on-demand" or "always"`,
		},
		{
			name: "bad pool name",
			src:  "[pool.\"-app\"]\ncommand = [\"x\"]\n",
			line: 1, col: 1, key: "pool.-app", msg: "invalid pool name",
		},
		{
			name: "bad listen address",
			src:  "[server]\nlisten = [\"127.0.0.1:80\", \"localhost\"]\n",
			line: 2, col: 27, key: "server.listen[1]", msg: `invalid address "localhost": want host:port or unix:/path`,
		},
		{
			name: "listen port out of range",
			src:  "[server]\nlisten = [\"127.0.0.1:80800\"]\n",
			line: 2, col: 11, key: "server.listen[0]", msg: "port must be a number from 0 to 65535",
		},
		{
			name: "relative unix socket",
			src:  "[server]\nlisten = [\"unix:front.sock\"]\n",
			line: 2, col: 11, key: "server.listen[0]", msg: "must be absolute",
		},
		{
			name: "duplicate listen",
			src:  "[server]\nlisten = [\":80\", \":80\"]\n",
			line: 2, col: 18, key: "server.listen[1]", msg: "already server.listen[0]",
		},
		{
			name: "bad admin",
			src:  "[server]\nadmin = \"9180\"\n",
			line: 2, col: 1, key: "server.admin", msg: "invalid address",
		},
		{
			name: "bad log format",
			src:  "[server]\nlog_format = \"xml\"\n",
			line: 2, col: 1, key: "server.log_format", msg: `want "text" or "json"`,
		},
		{
			name: "tls cert without key",
			src:  "[server]\ntls_cert = \"/etc/cert.pem\"\n",
			line: 1, col: 1, key: "server.tls_key", msg: "required when tls_cert is set",
		},
		{
			name: "bad schedule time",
			src:  app + "[pool.app.recycle]\nschedule = [\"03:00\", \"3:30\"]\n",
			line: 4, col: 22, key: "pool.app.recycle.schedule[1]", msg: `invalid time "3:30"`,
		},
		{
			name: "schedule hour 24",
			src:  app + "recycle.schedule = [\"24:00\"]\n",
			line: 3, col: 21, key: "pool.app.recycle.schedule[0]", msg: "00:00 to 23:59",
		},
		{
			name: "nonexistent cpu",
			src:  app + "[pool.app.limits]\ncpu_affinity = [0, 7]\n",
			line: 4, col: 20, key: "pool.app.limits.cpu_affinity[1]", msg: "cpu 7 does not exist: this machine has 2 CPUs",
		},
		{
			name: "nice out of range",
			src:  app + "limits.nice = 20\n",
			line: 3, col: 1, key: "pool.app.limits.nice", msg: "between -20 and 19",
		},
		{
			name: "bad cpu action",
			src:  app + "limits.cpu_action = \"stop\"\n",
			line: 3, col: 1, key: "pool.app.limits.cpu_action", msg: `want "throttle", "kill" or "log"`,
		},
		{
			name: "on_stopped as integer",
			src:  app + "[pool.app.rapid_fail]\non_stopped = 503\n",
			line: 4, col: 1, key: "pool.app.rapid_fail.on_stopped", msg: "expected a string, got integer 503",
		},
		{
			name: "health timeout zero",
			src:  app + "[pool.app.health]\ninterval = \"10s\"\ntimeout = \"0s\"\n",
			line: 5, col: 1, key: "pool.app.health.timeout", msg: "must be > 0 when interval is set",
		},
		{
			name: "nonexistent user",
			src:  app + "user = \"nosuchuser\"\n",
			line: 3, col: 1, key: "pool.app.user", msg: `user "nosuchuser" does not exist`,
		},
		{
			name: "user without root",
			src:  app + "user = \"www-data\"\n",
			host: notRoot,
			line: 3, col: 1, key: "pool.app.user", msg: "user requires drover to run as root",
		},
		{
			name: "nonexistent group",
			src:  "[service.s]\ncommand = [\"s\"]\ngroup = \"nogroup-x\"\n",
			line: 3, col: 1, key: "service.s.group", msg: `group "nogroup-x" does not exist`,
		},
		{
			name: "bad env name",
			src:  app + "env = { \"A=B\" = \"1\" }\n",
			line: 3, col: 9, key: `pool.app.env."A=B"`, msg: "invalid environment variable name",
		},
		{
			name: "service without command",
			src:  "[service.idx]\nrestart = \"always\"\n",
			line: 1, col: 1, key: "service.idx.command", msg: "required",
		},
		{
			name: "service bad restart",
			src:  "[service.idx]\ncommand = [\"i\"]\nrestart = \"sometimes\"\n",
			line: 3, col: 1, key: "service.idx.restart", msg: `want "always", "on-failure" or "never"`,
		},
		{
			name: "service bad ready",
			src:  "[service.idx]\ncommand = [\"i\"]\nready = \"http://localhost/\"\n",
			line: 3, col: 1, key: "service.idx.ready", msg: "invalid ready",
		},
		{
			name: "service ready tcp without port",
			src:  "[service.idx]\ncommand = [\"i\"]\nready = \"tcp:localhost\"\n",
			line: 3, col: 1, key: "service.idx.ready", msg: "want tcp:HOST:PORT",
		},
		{
			name: "pool entry not a table",
			src:  "[pool]\napp = 1\n",
			line: 2, col: 1, key: "pool.app", msg: "expected a table, got integer 1",
		},
		{
			name: "TOML syntax error",
			src:  app + "kind = \"http\n",
			line: 3, col: 13, key: "", msg: "basic strings cannot have new lines",
		},
		{
			name: "TOML duplicate table",
			src:  app + "[pool.app]\n",
			line: 3, col: 1, key: "", msg: "table app already exists",
		},
		{
			name: "TOML duplicate table further down",
			src:  app + "[server]\nlisten = []\n\n[pool.b]\ncommand = [\"b\"]\n\n  [pool.b]\nkind = \"http\"\n[service.s]\ncommand = [\"s\"]\n",
			line: 9, col: 3, key: "", msg: "table b already exists",
		},
		{
			name: "TOML table redefined as array",
			src:  "[route]\npool = \"a\"\n[[route]]\n",
			line: 3, col: 1, key: "", msg: "",
		},
		{
			name: "quoted pool name",
			src:  "[pool.\"my app\"]\ncommand = [\"x\"]\n",
			line: 1, col: 1, key: `pool."my app"`, msg: "invalid pool name",
		},
		{
			name: "TOML duplicate key",
			src:  app + "command = [\"other\"]\n",
			line: 3, col: 1, key: "", msg: "key command is already defined",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testHost()
			if tc.host != nil {
				tc.host(&h)
			}
			errs := parseErrors(t, tc.src, h)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want 1:\n%v", len(errs), errs)
			}
			e := errs[0]
			if e.File != "drover.toml" || e.Line != tc.line || e.Col != tc.col || e.Key != tc.key || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got  %s\nwant drover.toml:%d:%d: %s: ...%s...", e, tc.line, tc.col, tc.key, tc.msg)
			}
		})
	}
}

func TestAllErrorsTogether(t *testing.T) {
	src := `[server]
listen = ["127.0.0.1:8080"]
log_fromat = "json"

[pool.tiles]
command = ["./tiles"]
max_instances = "many"
min_instances = 2

[pool.tiles.limits]
memory = "lots"
cpu_affinity = [9]

[[route]]
pool = "maps"
`
	errs := parseErrors(t, src, testHost())
	want := []string{
		`drover.toml:3:1: server.log_fromat: unknown key (did you mean "log_format"?)`,
		`drover.toml:7:1: pool.tiles.max_instances: expected an integer, got string "many"`,
		`drover.toml:11:1: pool.tiles.limits.memory: invalid size "lots": `,
		`drover.toml:12:17: pool.tiles.limits.cpu_affinity[0]: cpu 9 does not exist: this machine has 2 CPUs`,
		`drover.toml:15:1: route[0].pool: no pool "maps" is defined (pools: tiles)`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("error %d:\n got %s\nwant %s", i, errs[i], w)
		}
	}
	if lines := strings.Split(errs.Error(), "\n"); len(lines) != len(want) {
		t.Errorf("Errors.Error() has %d lines, want %d", len(lines), len(want))
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "d.toml", Line: 12, Col: 1, Key: "pool.a.x", Msg: "bad"}, "d.toml:12:1: pool.a.x: bad"},
		{Error{File: "d.toml", Line: 3, Col: 8, Msg: "syntax"}, "d.toml:3:8: syntax"},
		{Error{File: "d.toml", Key: "k", Msg: "m"}, "d.toml: k: m"},
		{Error{Key: "k", Msg: "m"}, "k: m"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestPos(t *testing.T) {
	c := mustParse(t, `[server]
listen = ["127.0.0.1:1", "127.0.0.1:2"]

[pool."a.b"]
command = ["x"]
  limits.nice = 3

[[route]]
pool = "a.b"
[[route]]
static = "/srv"
path = "/s"
`)
	for _, tc := range []struct {
		key       string
		line, col int
	}{
		{"server", 1, 1},
		{"server.listen", 2, 1},
		{"server.listen[1]", 2, 26},
		{"server.admin", 1, 1}, // absent: falls back to [server]
		{`pool."a.b"`, 4, 1},
		{`pool."a.b".limits.nice`, 6, 3},
		{`pool."a.b".max_wait`, 4, 1},
		{"route[0].pool", 9, 1},
		{"route[1]", 10, 1},
		{"route[1].path", 12, 1},
		{"route[1].host", 10, 1},
		{"service.x", 0, 0},
	} {
		if line, col := c.Pos(tc.key); line != tc.line || col != tc.col {
			t.Errorf("Pos(%q) = %d:%d, want %d:%d", tc.key, line, col, tc.line, tc.col)
		}
	}
	if e := c.Errorf("route[1].path", "bind %s failed", "x"); e.Error() != "drover.toml:12:1: route[1].path: bind x failed" {
		t.Errorf("Errorf = %q", e)
	}
	var nilConfig *Config
	if line, col := nilConfig.Pos("server"); line != 0 || col != 0 {
		t.Errorf("nil Pos = %d:%d", line, col)
	}
}

func TestParentKey(t *testing.T) {
	for in, want := range map[string]string{
		"a.b.c":            "a.b",
		"route[2].pool":    "route[2]",
		"route[2]":         "route",
		`pool."a.b"`:       "pool",
		`pool."a[1]".kind`: `pool."a[1]"`,
		`env."x\"y.z"`:     "env",
		"server":           "",
	} {
		if got := parentKey(in); got != want {
			t.Errorf("parentKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDiff(t *testing.T) {
	old := mustParse(t, `
[server]
listen = ["127.0.0.1:1", "127.0.0.1:2"]
[[route]]
pool = "same"
[pool.same]
command = ["s"]
[pool.changed]
command = ["c"]
[pool.gone]
command = ["g"]
[service.svc]
command = ["v"]
`)
	next := mustParse(t, `
# comments and order do not matter
[pool.changed]
command = ["c"]
max_instances = 8
[pool.same]
command = ["s"]
env = {}
[pool.new]
command = ["n"]
[[route]]
pool = "same"
[server]
listen = ["127.0.0.1:2", "127.0.0.1:3"]
[service.svc]
command = ["v"]
[service.svc2]
command = ["w"]
`)
	got := Diff(old, next)
	want := Changes{
		Added:             []string{"new"},
		Removed:           []string{"gone"},
		Changed:           []string{"changed"},
		Unchanged:         []string{"same"},
		ServicesAdded:     []string{"svc2"},
		ServicesUnchanged: []string{"svc"},
		ListenersAdded:    []string{"127.0.0.1:3"},
		ListenersRemoved:  []string{"127.0.0.1:1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff =\n%+v\nwant\n%+v", got, want)
	}

	next.Routes[0].Path = "/x"
	next.Server.LogFormat = "json"
	if got := Diff(old, next); !got.RoutesChanged || !got.ServerChanged {
		t.Errorf("route and server changes not seen: %+v", got)
	}

	first := Diff(nil, old)
	if !reflect.DeepEqual(first.Added, []string{"changed", "gone", "same"}) || !first.RoutesChanged ||
		len(first.ListenersAdded) != 2 || !reflect.DeepEqual(first.ServicesAdded, []string{"svc"}) {
		t.Errorf("Diff(nil, c) = %+v", first)
	}
}

func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("testdata/design_example.toml"); err == nil {
		f.Add(string(data))
	}
	for _, s := range []string{
		"",
		"[server]\nlisten = [\"unix:/x\"]\n",
		"[[route]]\npool = \"a\"\n[[route]]\nstatic = \"/\"\n[pool.a]\ncommand=[\"x\"]\n",
		"[pool.\"a.b\"]\nkind = \"wsgi\"\napp = \"m:a\"\nlimits = { cpu = 1.5, memory = 10 }\n",
		"[pool.a]\nrecycle.schedule = [\"03:00\", 1]\nhealth = {}\n",
		"a.b.c = 1\n[a.b.d]\n[[a.e]]\n[a.e.f]\n[[a.e.g]]\n",
		"route = [{pool = \"x\", host = \"*.Y\"}]\n",
		"[service.s]\ncommand = [\"\"]\nready = \"tcp:[::1]:1\"\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := parse("f.toml", []byte(src), testHost())
		if err == nil {
			if c == nil {
				t.Fatal("nil Config without error")
			}
			_ = Diff(c, c)
			return
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %T %v is not a non-empty Errors", err, err)
		}
		for _, e := range errs {
			if e.Line <= 0 || e.Col <= 0 {
				t.Fatalf("error without a position: %v\nin:\n%s", e, src)
			}
		}
		_ = err.Error()
	})
}
