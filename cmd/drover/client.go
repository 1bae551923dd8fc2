package main

// The client commands talk to a running drover through its admin API
// (DESIGN.md, "CLI"): status, requests, recycle, start, stop, reload,
// events and service. They find the admin address and token the way an
// operator on the server expects, with no setup on the machine that runs
// drover:
//
//	address: --admin ADDR, else $DROVER_ADMIN, else server.admin of the
//	         config (-c FILE, or ./drover.toml when it exists, or the
//	         default 127.0.0.1:9180)
//	token:   $DROVER_ADMIN_TOKEN, else the config's admin_token_file,
//	         else the token drover generated in runtime_dir/admin.token
//
// The token is never taken from the command line, where other users could
// read it in the process list.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/drover-pool/drover/internal/admin"
	"github.com/drover-pool/drover/internal/config"
)

// clientCommands maps each client verb to its implementation and usage.
var clientCommands = map[string]struct {
	run   func(*clientCmd) error
	usage string
}{
	"status":   {cmdStatus, "status [POOL]"},
	"requests": {cmdRequests, "requests [POOL]"},
	"recycle":  {cmdPoolAction("recycle"), "recycle POOL"},
	"start":    {cmdPoolAction("start"), "start POOL"},
	"stop":     {cmdPoolAction("stop"), "stop POOL"},
	"reload":   {cmdReload, "reload"},
	"events":   {cmdEvents, "events [-f]"},
	"service":  {cmdService, "service start|stop NAME [--wait D]"},
}

// usageError is a command-line mistake: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// clientCmd is one client command being run.
type clientCmd struct {
	ctx    context.Context
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	args   []string // positional arguments
	json   bool
	follow bool          // events -f
	wait   time.Duration // service start --wait

	api *apiClient
}

// client runs a client verb with the process's streams and environment;
// Ctrl-C ends a following command (events -f) normally.
func client(verb string, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runClient(ctx, verb, args, os.Stdout, os.Stderr, os.Getenv)
}

// runClient parses a client verb's flags, connects and runs it; it returns
// the exit code: 0 ok, 1 error, 2 usage.
func runClient(ctx context.Context, verb string, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	cmd, ok := clientCommands[verb]
	if !ok {
		fmt.Fprintf(stderr, "drover: unknown command %q\n", verb)
		return 2
	}
	c := &clientCmd{ctx: ctx, stdout: stdout, stderr: stderr, getenv: getenv}
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: drover %s [-c FILE] [--admin ADDR] [--json]\n", cmd.usage)
		fs.PrintDefaults()
	}
	file := fs.String("c", "", "drover's configuration file, for the admin address and token (default ./drover.toml if it exists)")
	addr := fs.String("admin", "", "admin API address, host:port or unix:/path (default $DROVER_ADMIN, else the config's server.admin)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	if verb == "events" {
		fs.BoolVar(&c.follow, "f", false, "follow: print events as they happen until interrupted")
	}
	if verb == "service" {
		fs.DurationVar(&c.wait, "wait", 0, "start: wait this long for the service to be running (0: do not wait)")
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	c.args = pos
	if err := c.connect(*file, *addr); err != nil {
		fmt.Fprintln(stderr, "drover:", err)
		return 1
	}
	err = cmd.run(c)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "drover: %s\nusage: drover %s [-c FILE] [--admin ADDR] [--json]\n", ue.msg, cmd.usage)
		return 2
	default:
		fmt.Fprintln(stderr, "drover:", err)
		return 1
	}
}

// parseInterspersed parses flags placed before, between or after the
// positional arguments ("drover status app --json"), which package flag
// alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// connect finds the admin address and token.
func (c *clientCmd) connect(file, addr string) error {
	var cfg *config.Config
	if file == "" && addr == "" && c.getenv("DROVER_ADMIN") == "" {
		if _, err := os.Stat("drover.toml"); err == nil {
			file = "drover.toml"
		}
	}
	if file != "" {
		var err error
		if cfg, err = config.Load(file); err != nil {
			return fmt.Errorf("reading %s for the admin address: %w", file, err)
		}
	} else {
		// The defaults: server.admin and runtime_dir as drover would
		// have them with no configuration.
		cfg, _ = config.Parse("defaults", nil)
	}
	if addr == "" {
		addr = c.getenv("DROVER_ADMIN")
	}
	where := "--admin or $DROVER_ADMIN"
	if addr == "" && cfg != nil {
		addr, where = cfg.Server.Admin, "server.admin"
		if file != "" {
			where += " in " + file
		}
	}
	if addr == "" {
		return fmt.Errorf("no admin address: %s is empty (the admin API is disabled); use --admin ADDR", where)
	}
	token := strings.TrimSpace(c.getenv("DROVER_ADMIN_TOKEN"))
	if token == "" && cfg != nil && !admin.IsUnix(addr) {
		candidates := []string{}
		if cfg.Server.AdminTokenFile != "" {
			candidates = append(candidates, cfg.Server.AdminTokenFile)
		} else if cfg.Server.RuntimeDir != "" {
			candidates = append(candidates, filepath.Join(cfg.Server.RuntimeDir, admin.GeneratedTokenFile))
		}
		for _, f := range candidates {
			if b, err := os.ReadFile(f); err == nil {
				token = strings.TrimSpace(string(b))
				break
			} else if !os.IsNotExist(err) {
				return fmt.Errorf("reading the admin token: %w", err)
			}
		}
	}
	c.api = newAPIClient(addr, token)
	return nil
}

// apiClient calls the admin API.
type apiClient struct {
	addr  string
	base  string
	token string
	hc    *http.Client
}

func newAPIClient(addr, token string) *apiClient {
	tr := &http.Transport{Proxy: nil, ResponseHeaderTimeout: 0}
	base := "http://" + addr
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}
		base = "http://drover"
	}
	return &apiClient{addr: addr, base: base, token: token, hc: &http.Client{Transport: tr}}
}

// apiError is an error answer of the admin API.
type apiError struct {
	Status int      `json:"-"`
	Msg    string   `json:"error"`
	Errors []string `json:"errors"`
}

func (e *apiError) Error() string {
	if len(e.Errors) == 0 {
		return e.Msg
	}
	return e.Msg + ":\n  " + strings.Join(e.Errors, "\n  ")
}

// do sends a request and returns the response with a 2xx status; any
// other status becomes an error with the API's message.
func (a *apiClient) do(ctx context.Context, method, path string, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+"/api/v1"+path, nil)
	if err != nil {
		return nil, err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	req.Header.Set("Accept", accept)
	resp, err := a.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the admin API at %s: %v\n(is drover running, with server.admin set to this address?)", a.addr, unwrapURLError(err))
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &apiError{Status: resp.StatusCode}
	if json.Unmarshal(b, e) != nil || e.Msg == "" {
		e.Msg = fmt.Sprintf("admin API answered %s", resp.Status)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		if a.token == "" {
			e.Msg = fmt.Sprintf("the admin API at %s needs a token: set DROVER_ADMIN_TOKEN, or use -c with drover's configuration so that its admin_token_file (or runtime_dir/%s) is read", a.addr, admin.GeneratedTokenFile)
		} else {
			e.Msg = fmt.Sprintf("the admin API at %s refused the token (%s): check DROVER_ADMIN_TOKEN or the token file", a.addr, e.Msg)
		}
	}
	return nil, e
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// get calls the API and decodes its JSON answer into v, and returns the
// raw answer for --json.
func (a *apiClient) call(ctx context.Context, method, path string, v any) ([]byte, error) {
	resp, err := a.do(ctx, method, path, "application/json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return nil, fmt.Errorf("admin API answer: %w", err)
		}
	}
	return b, nil
}

// raw writes an API answer as JSON, for --json.
func (c *clientCmd) raw(b []byte) error {
	_, err := c.stdout.Write(b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		fmt.Fprintln(c.stdout)
	}
	return err
}

func (c *clientCmd) optionalPool() (string, error) {
	switch len(c.args) {
	case 0:
		return "", nil
	case 1:
		return c.args[0], nil
	}
	return "", usageError{"too many arguments"}
}

func (c *clientCmd) requirePool() (string, error) {
	if len(c.args) != 1 {
		return "", usageError{"want one POOL"}
	}
	return c.args[0], nil
}

func cmdPoolAction(action string) func(*clientCmd) error {
	return func(c *clientCmd) error {
		name, err := c.requirePool()
		if err != nil {
			return err
		}
		var res admin.ActionResult
		b, err := c.api.call(c.ctx, "POST", "/pools/"+url.PathEscape(name)+"/"+action, &res)
		if err != nil {
			return err
		}
		if c.json {
			return c.raw(b)
		}
		switch action {
		case "recycle":
			fmt.Fprintf(c.stdout, "pool %s: recycle started (each instance is replaced before it stops)\n", name)
		default:
			fmt.Fprintf(c.stdout, "pool %s: %s\n", name, res.State)
		}
		return nil
	}
}

func cmdReload(c *clientCmd) error {
	if len(c.args) != 0 {
		return usageError{"reload takes no arguments"}
	}
	var res admin.ReloadResult
	b, err := c.api.call(c.ctx, "POST", "/reload", &res)
	if err != nil {
		var ae *apiError
		if c.json && errors.As(err, &ae) {
			j, _ := json.MarshalIndent(ae, "", "  ")
			c.raw(j)
		}
		return err
	}
	if c.json {
		return c.raw(b)
	}
	fmt.Fprintf(c.stdout, "reloaded: %s\n", res.Summary)
	return nil
}

func cmdService(c *clientCmd) error {
	if len(c.args) != 2 || (c.args[0] != "start" && c.args[0] != "stop") {
		return usageError{"want start or stop, and a service NAME"}
	}
	action, name := c.args[0], c.args[1]
	path := "/services/" + url.PathEscape(name) + "/" + action
	if action == "start" && c.wait > 0 {
		path += "?wait=" + c.wait.String()
	}
	b, err := c.api.call(c.ctx, "POST", path, nil)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusRequestTimeout {
			return fmt.Errorf("service %s: not running after %s; its start goes on (%s)", name, c.wait, ae.Msg)
		}
		return err
	}
	if c.json {
		return c.raw(b)
	}
	fmt.Fprintf(c.stdout, "service %s: %s\n", name, map[string]string{"start": "started", "stop": "stopped"}[action])
	return nil
}

func cmdEvents(c *clientCmd) error {
	if len(c.args) != 0 {
		return usageError{"events takes no arguments"}
	}
	if !c.follow {
		var evs []eventLine
		b, err := c.api.call(c.ctx, "GET", "/events", &evs)
		if err != nil {
			return err
		}
		if c.json {
			return c.raw(b)
		}
		for _, e := range evs {
			e.print(c.stdout)
		}
		return nil
	}
	// Follow: the last retained events, then new ones as Server-Sent
	// Events; with --json, one JSON object per line.
	resp, err := c.api.do(c.ctx, "GET", "/events", "text/event-stream")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if c.json {
			fmt.Fprintln(c.stdout, data)
			continue
		}
		var e eventLine
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		e.print(c.stdout)
	}
	if c.ctx.Err() != nil {
		return nil // interrupted: the normal end of following
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("event stream: %w", err)
	}
	return errors.New("event stream: drover closed it (shutting down?)")
}

// eventLine is an event as the API sends it.
type eventLine struct {
	ID      uint64    `json:"id"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Pool    string    `json:"pool"`
	Service string    `json:"service"`
	PID     int       `json:"pid"`
	Reason  string    `json:"reason"`
	Detail  string    `json:"detail"`
}

func (e eventLine) print(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d %s", e.Time.Local().Format("2006-01-02 15:04:05.000"), e.ID, e.Kind)
	if e.Pool != "" {
		fmt.Fprintf(&b, " pool=%s", e.Pool)
	}
	if e.Service != "" {
		fmt.Fprintf(&b, " service=%s", e.Service)
	}
	if e.PID != 0 {
		fmt.Fprintf(&b, " pid=%d", e.PID)
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " reason=%s", e.Reason)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, " %q", e.Detail)
	}
	fmt.Fprintln(w, b.String())
}
