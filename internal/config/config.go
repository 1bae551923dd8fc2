// Package config turns a drover TOML file into typed, validated settings.
//
// Loading is strict: an unknown key, a wrong type or an invalid value is an
// error that names file:line:column and the key, and every error in the file
// is reported at once (see Errors). A Config that Load returns has every
// default applied and every cross-reference (route → pool) checked, so the
// rest of drover never re-validates it.
//
// The key names and defaults are the user-facing contract in docs/DESIGN.md.
package config

import "time"

// Config is one loaded configuration file.
type Config struct {
	// File is the path the configuration was read from.
	File string `toml:"-"`

	Server   Server              `toml:"server"`
	Routes   []Route             `toml:"route"`
	Pools    map[string]*Pool    `toml:"pool"`
	Services map[string]*Service `toml:"service"`

	// pos maps each dotted key written in the file ("pool.tiles.kind",
	// "route[0].pool") to where it was written; see Pos.
	pos map[string]position
}

// Server holds the [server] table.
type Server struct {
	// Listen are the front-end addresses: "host:port" or "unix:/path".
	Listen []string `toml:"listen"`
	// Admin is the admin API address ("" disables it).
	Admin           string   `toml:"admin"`
	AdminTokenFile  string   `toml:"admin_token_file"`
	RuntimeDir      string   `toml:"runtime_dir"`
	LogFormat       string   `toml:"log_format"` // text | json
	AccessLog       string   `toml:"access_log"` // stdout | stderr | path | ""
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// TLSCert and TLSKey, when both set, serve every TCP listen address
	// with TLS (HTTP/1.1 and h2 by ALPN) instead of cleartext (h1 and h2c).
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
}

// Route holds one [[route]] entry: host + path prefix → pool or static dir.
type Route struct {
	Host        string `toml:"host"`
	Path        string `toml:"path"`
	Pool        string `toml:"pool"`
	Static      string `toml:"static"`
	StripPrefix bool   `toml:"strip_prefix"`
	// Listing allows directory listings on a static route.
	Listing bool `toml:"listing"`
}

// Pool holds one [pool.NAME] table.
type Pool struct {
	// Name is the table name; set by Load.
	Name string `toml:"-"`

	Kind       string            `toml:"kind"` // http | fastcgi | uwsgi | cgi | wsgi
	Command    []string          `toml:"command"`
	App        string            `toml:"app"`
	Python     string            `toml:"python"`
	PythonPath []string          `toml:"pythonpath"`
	Root       string            `toml:"root"`
	Script     string            `toml:"script"`
	Dir        string            `toml:"dir"`
	Env        map[string]string `toml:"env"`
	User       string            `toml:"user"`
	Group      string            `toml:"group"`

	Start               string   `toml:"start"` // on-demand | always
	MinInstances        int      `toml:"min_instances"`
	MaxInstances        int      `toml:"max_instances"`
	InstanceConcurrency int      `toml:"instance_concurrency"`
	Threads             int      `toml:"threads"` // wsgi: 0 = instance_concurrency, or 1
	QueueLength         int      `toml:"queue_length"`
	MaxWait             Duration `toml:"max_wait"`
	RequestTimeout      Duration `toml:"request_timeout"`
	IdleTimeout         Duration `toml:"idle_timeout"`
	StartupTimeout      Duration `toml:"startup_timeout"`
	ShutdownTimeout     Duration `toml:"shutdown_timeout"`

	Health    Health    `toml:"health"`
	RapidFail RapidFail `toml:"rapid_fail"`
	Recycle   Recycle   `toml:"recycle"`
	Limits    Limits    `toml:"limits"`
	Orphan    Orphan    `toml:"orphan"`
}

// Health holds [pool.NAME.health]: pings of idle instances.
type Health struct {
	Path     string   `toml:"path"`
	Interval Duration `toml:"interval"`
	Timeout  Duration `toml:"timeout"`
}

// RapidFail holds [pool.NAME.rapid_fail] (IIS rapid-fail protection).
type RapidFail struct {
	MaxFailures int      `toml:"max_failures"`
	Interval    Duration `toml:"interval"`
	OnStopped   string   `toml:"on_stopped"` // 503 | reset
}

// Recycle holds [pool.NAME.recycle]: when instances are replaced.
type Recycle struct {
	Requests int      `toml:"requests"`
	Memory   Size     `toml:"memory"`
	Interval Duration `toml:"interval"`
	Schedule []string `toml:"schedule"` // "HH:MM" local times
	Watch    []string `toml:"watch"`
	Overlap  bool     `toml:"overlap"`
}

// Limits holds [pool.NAME.limits] and [service.NAME.limits].
type Limits struct {
	Memory       Size    `toml:"memory"`
	CPU          Percent `toml:"cpu"`
	CPUAction    string  `toml:"cpu_action"` // throttle | kill | log
	Pids         int     `toml:"pids"`
	AddressSpace Size    `toml:"address_space"`
	OpenFiles    int     `toml:"open_files"`
	CPUAffinity  []int   `toml:"cpu_affinity"`
	Nice         int     `toml:"nice"`
}

// Orphan holds [pool.NAME.orphan].
type Orphan struct {
	Enabled bool     `toml:"enabled"`
	Exec    []string `toml:"exec"`
}

// Service holds one [service.NAME] table.
type Service struct {
	Name string `toml:"-"`

	Command         []string          `toml:"command"`
	Dir             string            `toml:"dir"`
	Env             map[string]string `toml:"env"`
	User            string            `toml:"user"`
	Group           string            `toml:"group"`
	Start           string            `toml:"start"`   // always | on-demand
	Restart         string            `toml:"restart"` // always | on-failure | never
	Ready           string            `toml:"ready"`   // "" | tcp:HOST:PORT | unix:PATH | notify
	ShutdownTimeout Duration          `toml:"shutdown_timeout"`
	Limits          Limits            `toml:"limits"`
	RapidFail       RapidFail         `toml:"rapid_fail"`
}

// Duration is a Go duration written as a string ("15s", "20m"); 0 or "" is off.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count written as "512MiB", "64MB", "1GiB" or a plain
// integer; 0 or "" is off.
type Size int64

// Percent is a CPU quota written as "150%" (1.5 cores); stored as percent.
type Percent float64
