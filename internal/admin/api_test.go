package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/admin"
	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/drovertest"
	"github.com/drover-pool/drover/internal/events"
	"github.com/drover-pool/drover/internal/server"
)

func TestMain(m *testing.M) { drovertest.Main(m) }

const testToken = "s3cret-token-for-tests"

// adminConfig runs pool "app" (the sample worker) with the admin API on
// loopback TCP and the token in TOKENFILE.
const adminConfig = `
[server]
listen = ["{{.Listen}}"]
admin = "{{.Admin}}"
admin_token_file = "TOKENFILE"
access_log = ""
runtime_dir = "{{.Runtime}}"

[[route]]
path = "/"
pool = "app"

[pool.app]
command = ["{{.App}}"]
max_instances = 2
`

// startAdmin starts an in-process drover from tmpl (which may use
// TOKENFILE) and returns it with an API client that sends the token.
func startAdmin(t *testing.T, tmpl string) (*drovertest.Drover, *client) {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := drovertest.Start(t, strings.ReplaceAll(tmpl, "TOKENFILE", tokenFile))
	return d, &client{t: t, base: "http://" + d.Admin, token: testToken, hc: &http.Client{Timeout: 30 * time.Second}}
}

// client calls the admin API.
type client struct {
	t     *testing.T
	base  string
	token string
	hc    *http.Client
}

// do sends a request and returns status, body and headers.
func (c *client) do(method, path string, hdr ...string) (int, []byte, http.Header) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// json sends a request, checks the status and decodes the answer into v.
func (c *client) json(method, path string, want int, v any) {
	c.t.Helper()
	code, b, _ := c.do(method, path)
	if code != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
}

func (c *client) with(token string) *client {
	cc := *c
	cc.token = token
	return &cc
}

func pool(t *testing.T, c *client, name string) admin.PoolView {
	t.Helper()
	var v admin.PoolView
	c.json("GET", "/api/v1/pools/"+name, 200, &v)
	return v
}

func readyPIDs(v admin.PoolView) []int {
	var out []int
	for _, in := range v.Instances {
		if in.State == "ready" {
			out = append(out, in.PID)
		}
	}
	return out
}

// TestAPIEndpoints: every endpoint answers its status with the token, 401
// without it or with a wrong one (JSON error, WWW-Authenticate), 404 for
// an unknown pool, service or path, and 405 with Allow for a bad method.
func TestAPIEndpoints(t *testing.T) {
	d, c := startAdmin(t, adminConfig)
	drovertest.Get(t, d.URL+"/pid") // an instance runs
	for _, tc := range []struct {
		method, path string
		want         int
		allow        string
	}{
		{"GET", "/api/v1/pools", 200, ""},
		{"HEAD", "/api/v1/pools", 200, ""},
		{"GET", "/api/v1/pools/app", 200, ""},
		{"GET", "/api/v1/pools/app/requests", 200, ""},
		{"GET", "/api/v1/requests", 200, ""},
		{"POST", "/api/v1/pools/app/start", 200, ""},
		{"POST", "/api/v1/pools/app/recycle", 200, ""},
		{"GET", "/api/v1/services", 200, ""},
		{"GET", "/api/v1/events", 200, ""},
		{"GET", "/api/v1/events?since=1&wait=10ms", 200, ""},
		{"POST", "/api/v1/reload", 200, ""},
		{"GET", "/api/v1/pools/nope", 404, ""},
		{"GET", "/api/v1/pools/nope/requests", 404, ""},
		{"POST", "/api/v1/pools/nope/stop", 404, ""},
		{"POST", "/api/v1/pools/nope/recycle", 404, ""},
		{"POST", "/api/v1/services/nope/start?wait=1s", 404, ""},
		{"POST", "/api/v1/services/nope/stop", 404, ""},
		{"GET", "/api/v1/nope", 404, ""},
		{"GET", "/api/v1/pools/app/frobnicate", 404, ""},
		{"DELETE", "/api/v1/pools", 405, "GET, HEAD"},
		{"POST", "/api/v1/pools/app", 405, "GET, HEAD"},
		{"GET", "/api/v1/pools/app/stop", 405, "POST"},
		{"GET", "/api/v1/reload", 405, "POST"},
		{"PUT", "/api/v1/events", 405, "GET, HEAD"},
		{"GET", "/api/v1/events?since=x", 400, ""},
		{"GET", "/api/v1/events?wait=forever", 400, ""},
		{"POST", "/api/v1/services/x/start?wait=soon", 400, ""},
	} {
		name := tc.method + " " + tc.path
		for _, auth := range []struct {
			name  string
			token string
		}{{"none", ""}, {"wrong", "wrong-" + testToken}} {
			code, body, h := c.with(auth.token).do(tc.method, tc.path)
			if code != 401 {
				t.Errorf("%s with %s token: %d %s, want 401", name, auth.name, code, body)
				continue
			}
			if !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: 401 without WWW-Authenticate: Bearer", name)
			}
			if tc.method != "HEAD" {
				var e struct{ Error string }
				if json.Unmarshal(body, &e) != nil || e.Error == "" {
					t.Errorf("%s: 401 body is not a JSON error: %s", name, body)
				}
			}
		}
		code, body, h := c.do(tc.method, tc.path)
		if code != tc.want {
			t.Errorf("%s: %d %s, want %d", name, code, body, tc.want)
			continue
		}
		if ct := h.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", name, ct)
		}
		if tc.method != "HEAD" && !json.Valid(body) {
			t.Errorf("%s: invalid JSON %s", name, body)
		}
		if code >= 400 && tc.method != "HEAD" {
			var e struct{ Error string }
			if json.Unmarshal(body, &e); e.Error == "" {
				t.Errorf("%s: error answer without \"error\": %s", name, body)
			}
		}
		if tc.allow != "" && h.Get("Allow") != tc.allow {
			t.Errorf("%s: Allow %q, want %q", name, h.Get("Allow"), tc.allow)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: CSP %q", name, csp)
		}
	}
	// The services list is empty, not null, while no services exist.
	var svcs []any
	c.json("GET", "/api/v1/services", 200, &svcs)
	if svcs == nil || len(svcs) != 0 {
		t.Errorf("services: %v, want []", svcs)
	}
}

// TestCrossOriginPOSTRefused: a browser POST from another origin is refused
// even with the token; the admin origin itself and no Origin are fine.
func TestCrossOriginPOSTRefused(t *testing.T) {
	d, c := startAdmin(t, adminConfig)
	code, body, _ := c.do("POST", "/api/v1/pools/app/start", "Origin", "http://evil.example")
	if code != 403 {
		t.Errorf("cross-origin POST: %d %s, want 403", code, body)
	}
	code, body, _ = c.do("POST", "/api/v1/pools/app/start", "Origin", "http://"+d.Admin)
	if code != 200 {
		t.Errorf("same-origin POST: %d %s", code, body)
	}
}

// TestPoolView: GET /pools/{name} shows state, settings, counters and each
// instance's pid, uptime, requests, RSS and CPU.
func TestPoolView(t *testing.T) {
	d, c := startAdmin(t, adminConfig)
	pid, _ := strconv.Atoi(strings.TrimSpace(getBody(t, d.URL+"/pid")))
	for range 4 {
		getBody(t, d.URL+"/")
	}
	v := pool(t, c, "app")
	if v.Name != "app" || v.State != "running" || v.StopReason != "" {
		t.Errorf("pool: %+v", v)
	}
	if v.Settings.MaxInstances != 2 || v.Settings.Kind != "http" || v.Settings.InstanceConcurrency != 1 {
		t.Errorf("settings: %+v", v.Settings)
	}
	if len(v.Instances) != 1 {
		t.Fatalf("instances: %+v", v.Instances)
	}
	in := v.Instances[0]
	if in.PID != pid || in.State != "ready" || in.Requests != 5 || in.InFlight != 0 {
		t.Errorf("instance: %+v, want pid %d ready with 5 requests", in, pid)
	}
	if in.RSSBytes < 1<<20 || in.UptimeSeconds <= 0 || in.CPUSeconds < 0 || in.Started.IsZero() {
		t.Errorf("instance usage: %+v", in)
	}
	if v.Counters.Instances["ready"] != 1 || v.Counters.Requests != 5 || v.Counters.Starts != 1 || v.Counters.ReqPerSec <= 0 || v.Counters.P99 <= 0 {
		t.Errorf("counters: %+v", v.Counters)
	}
	var all []admin.PoolView
	c.json("GET", "/api/v1/pools", 200, &all)
	if len(all) != 1 || all[0].Name != "app" {
		t.Errorf("pools: %+v", all)
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	code, body, _ := drovertest.Get(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return body
}

// TestRequestsInFlight: a slow request shows in /requests and
// /pools/app/requests with its method, URL, instance pid and elapsed time.
func TestRequestsInFlight(t *testing.T) {
	d, c := startAdmin(t, adminConfig)
	pid, _ := strconv.Atoi(strings.TrimSpace(getBody(t, d.URL+"/pid")))
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(d.URL + "/sleep?d=1500ms&token=hush")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	type req struct {
		Pool, Method, URL, Client string
		PID                       int
		Elapsed                   int64 `json:"elapsed_ns"`
	}
	for _, path := range []string{"/api/v1/requests", "/api/v1/pools/app/requests"} {
		var got []req
		drovertest.Eventually(t, 5*time.Second, "the slow request is listed at "+path, func() bool {
			c.json("GET", path, 200, &got)
			return len(got) == 1 && got[0].PID == pid && got[0].Elapsed > 0
		})
		r := got[0]
		if r.Pool != "app" || r.Method != "GET" || !strings.HasPrefix(r.URL, "/sleep?") || !strings.Contains(r.URL, "token=REDACTED") || r.Client == "" {
			t.Errorf("%s: %+v", path, r)
		}
	}
	<-done
	var got []req
	c.json("GET", "/api/v1/requests", 200, &got)
	if len(got) != 0 {
		t.Errorf("after the request: %+v", got)
	}
}

// TestStopStartRecycle: POST stop makes the front end answer 503
// pool-stopped and the pool show "stopped" by "admin"; start serves again;
// recycle replaces the instance (overlapped) with reason admin.
func TestStopStartRecycle(t *testing.T) {
	d, c := startAdmin(t, adminConfig)
	getBody(t, d.URL+"/pid")
	var res admin.ActionResult
	c.json("POST", "/api/v1/pools/app/stop", 200, &res)
	if res.State != "stopped" || res.Pool != "app" || res.Action != "stop" {
		t.Errorf("stop: %+v", res)
	}
	if code, _, h := drovertest.Get(t, d.URL+"/pid"); code != 503 || h.Get("Drover-Error") != "pool-stopped" {
		t.Errorf("front end after stop: %d %q", code, h.Get("Drover-Error"))
	}
	if v := pool(t, c, "app"); v.State != "stopped" || v.StopReason != "admin" {
		t.Errorf("after stop: state %s reason %q", v.State, v.StopReason)
	}
	c.json("POST", "/api/v1/pools/app/start", 200, &res)
	if res.State != "running" {
		t.Errorf("start: %+v", res)
	}
	old, _ := strconv.Atoi(strings.TrimSpace(getBody(t, d.URL+"/pid")))
	c.json("POST", "/api/v1/pools/app/recycle", 200, &res)
	drovertest.Eventually(t, 10*time.Second, "the instance is replaced", func() bool {
		p := readyPIDs(pool(t, c, "app"))
		return len(p) == 1 && p[0] != old
	})
	var evs []events.Event
	drovertest.Eventually(t, 10*time.Second, "the recycle event", func() bool {
		evs = d.Events().Find(func(e events.Event) bool { return e.Kind == events.Recycle && e.PID == old })
		return len(evs) > 0
	})
	if len(evs) != 1 || evs[0].Reason != "admin" {
		t.Errorf("recycle events: %+v", evs)
	}
}

// TestReload: a broken file answers 422 with each error at file:line:col
// and changes nothing; a good one answers 200 with what changed.
func TestReload(t *testing.T) {
	d, c := startAdmin(t, adminConfig)
	orig, err := os.ReadFile(d.File)
	if err != nil {
		t.Fatal(err)
	}
	broken := string(orig) + "\n[pool.two]\ncommand = [\"{{.App}}\"]\nmax_instances = \"many\"\nbogus = 1\n"
	os.WriteFile(d.File, []byte(broken), 0o644)
	code, body, _ := c.do("POST", "/api/v1/reload")
	var e struct {
		Error  string
		Errors []string
	}
	if err := json.Unmarshal(body, &e); err != nil || code != 422 {
		t.Fatalf("broken reload: %d %s", code, body)
	}
	if len(e.Errors) != 2 {
		t.Errorf("errors: %q, want 2", e.Errors)
	}
	pos := regexp.MustCompile(`^` + regexp.QuoteMeta(d.File) + `:\d+:\d+: pool\.two\.`)
	for _, s := range e.Errors {
		if !pos.MatchString(s) {
			t.Errorf("error %q does not start with file:line:col: pool.two.KEY", s)
		}
	}
	if d.Pool("two") != nil {
		t.Error("a broken reload created a pool")
	}
	good := strings.ReplaceAll(string(orig), `path = "/"`, "path = \"/two\"\npool = \"two\"\n[[route]]\npath = \"/\"") +
		"\n[pool.two]\ncommand = [\"" + d.App + "\"]\n"
	os.WriteFile(d.File, []byte(good), 0o644)
	var res admin.ReloadResult
	c.json("POST", "/api/v1/reload", 200, &res)
	if !res.Reloaded || !strings.Contains(res.Summary, "added [two]") {
		t.Errorf("reload: %+v", res)
	}
	var all []admin.PoolView
	c.json("GET", "/api/v1/pools", 200, &all)
	if len(all) != 2 || all[1].Name != "two" {
		t.Errorf("pools after reload: %d", len(all))
	}
}

// TestEventsLongPoll: /events?since=LAST&wait=D blocks until the next
// event and answers it at once; with nothing happening it answers [] when
// D has passed; ?pool= filters.
func TestEventsLongPoll(t *testing.T) {
	d, c := startAdmin(t, adminConfig)
	var evs []events.Event
	c.json("GET", "/api/v1/events", 200, &evs)
	if len(evs) == 0 || evs[len(evs)-1].Kind != "server-start" {
		t.Fatalf("events at start: %+v", evs)
	}
	last := evs[len(evs)-1].ID

	start := time.Now()
	c.json("GET", "/api/v1/events?since="+strconv.FormatUint(last, 10)+"&wait=300ms", 200, &evs)
	if el := time.Since(start); len(evs) != 0 || el < 250*time.Millisecond {
		t.Errorf("idle long poll: %d events after %s", len(evs), el)
	}

	got := make(chan []events.Event, 1)
	go func() {
		// Not c.json: a test must not fail from another goroutine.
		var evs []events.Event
		req, _ := http.NewRequest("GET", c.base+"/api/v1/events?pool=app&since="+strconv.FormatUint(last, 10)+"&wait=20s", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			json.NewDecoder(resp.Body).Decode(&evs)
			resp.Body.Close()
		}
		got <- evs
	}()
	select {
	case evs := <-got:
		t.Fatalf("long poll answered before any event: %+v", evs)
	case <-time.After(300 * time.Millisecond):
	}
	d.Events().Emit(events.Event{Kind: "test", Pool: "other"}) // filtered out
	start = time.Now()
	getBody(t, d.URL+"/pid") // spawn, ready
	select {
	case evs := <-got:
		if len(evs) == 0 || evs[0].Kind != events.Spawn || evs[0].Pool != "app" {
			t.Errorf("long poll: %+v", evs)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("long poll answered late")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("long poll did not answer the event")
	}
}

// TestEventsStream: with Accept: text/event-stream, events arrive as
// Server-Sent Events as they happen.
func TestEventsStream(t *testing.T) {
	d, c := startAdmin(t, adminConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", c.base+"/api/v1/events?since="+strconv.FormatUint(d.Events().Last(), 10), nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	go func() {
		if resp, err := http.Get(d.URL + "/pid"); err == nil {
			resp.Body.Close()
		}
	}()
	sc := bufio.NewScanner(resp.Body)
	var id string
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "id: "); ok {
			id = v
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			var e events.Event
			if err := json.Unmarshal([]byte(v), &e); err != nil {
				t.Fatalf("data %q: %v", v, err)
			}
			if strconv.FormatUint(e.ID, 10) != id {
				t.Errorf("id: %s, data id %d", id, e.ID)
			}
			if e.Kind == events.Ready && e.Pool == "app" {
				return
			}
		}
	}
	t.Fatalf("stream ended without the ready event: %v", sc.Err())
}

// TestHealthOnAdmin: /healthz and /readyz answer on the admin listener
// without a token; /readyz is 503 while draining.
func TestHealthOnAdmin(t *testing.T) {
	d, c := startAdmin(t, adminConfig)
	c = c.with("")
	if code, body, _ := c.do("GET", "/healthz"); code != 200 {
		t.Errorf("healthz: %d %s", code, body)
	}
	if code, body, _ := c.do("GET", "/readyz"); code != 200 {
		t.Errorf("readyz: %d %s", code, body)
	}
	d.Gateway().SetDraining(true)
	if code, body, _ := c.do("GET", "/readyz"); code != 503 {
		t.Errorf("readyz while draining: %d %s", code, body)
	}
	d.Gateway().SetDraining(false)
}

// TestUnixSocketAdmin: on a unix socket the API needs no token, and the
// socket is 0600 from the start; it is removed at shutdown.
func TestUnixSocketAdmin(t *testing.T) {
	d := drovertest.Start(t, strings.ReplaceAll(adminConfig, `"{{.Admin}}"`, `"unix:{{.Runtime}}/admin.sock"`))
	sock := filepath.Join(d.Runtime, "admin.sock")
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want socket 0600", fi.Mode())
	}
	c := &client{t: t, base: "http://drover", hc: unixClient(sock)}
	var all []admin.PoolView
	c.json("GET", "/api/v1/pools", 200, &all)
	if len(all) != 1 {
		t.Errorf("pools: %+v", all)
	}
	c.json("POST", "/api/v1/pools/app/recycle", 200, nil)
	if _, err := os.Stat(filepath.Join(d.Runtime, admin.GeneratedTokenFile)); err == nil {
		t.Error("a token was generated for a unix socket")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.Shutdown(ctx)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after shutdown: %v", err)
	}
}

func unixClient(path string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
}

// TestGeneratedToken: loopback TCP without a configured token gets a
// random one in runtime_dir/admin.token (0600), which works; the log names
// the file but never the token.
func TestGeneratedToken(t *testing.T) {
	d := drovertest.Start(t, strings.ReplaceAll(adminConfig, `admin_token_file = "TOKENFILE"`, ""))
	file := filepath.Join(d.Runtime, admin.GeneratedTokenFile)
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v", fi.Mode())
	}
	b, _ := os.ReadFile(file)
	tok := strings.TrimSpace(string(b))
	if len(tok) < 32 {
		t.Fatalf("token %d chars", len(tok))
	}
	c := &client{t: t, base: "http://" + d.Admin, hc: http.DefaultClient}
	if code, _, _ := c.do("GET", "/api/v1/pools"); code != 401 {
		t.Errorf("without token: %d", code)
	}
	c.with(tok).json("GET", "/api/v1/pools", 200, nil)
	logs := d.Logs.String()
	if strings.Contains(logs, tok) {
		t.Error("the log contains the token")
	}
	if !strings.Contains(logs, file) {
		t.Errorf("the log does not name the token file:\n%s", logs)
	}
}

// TestNonLoopbackWithoutTokenRefused: an admin address open to the network
// without a token is refused at start, naming server.admin.
func TestNonLoopbackWithoutTokenRefused(t *testing.T) {
	file, v := drovertest.WriteConfig(t, strings.ReplaceAll(strings.ReplaceAll(adminConfig, `admin_token_file = "TOKENFILE"`, ""), "{{.Admin}}", "0.0.0.0:"+strconv.Itoa(drovertest.FreePort(t))))
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "server.admin") || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("start: %v, want a server.admin error about loopback", err)
	}
	if _, err := os.Stat(filepath.Join(v.Runtime, admin.GeneratedTokenFile)); err == nil {
		t.Error("a token was generated for a non-loopback address")
	}
}

// TestEnvTokenOverridesFile: DROVER_ADMIN_TOKEN wins over admin_token_file.
func TestEnvTokenOverridesFile(t *testing.T) {
	t.Setenv("DROVER_ADMIN_TOKEN", "from-env")
	_, c := startAdmin(t, adminConfig)
	if code, _, _ := c.do("GET", "/api/v1/pools"); code != 401 {
		t.Errorf("file token with env set: %d, want 401", code)
	}
	c.with("from-env").json("GET", "/api/v1/pools", 200, nil)
}

// TestServices: GET /services lists the configured services; start with
// ?wait answers 200 once running, 408 when the wait passed first, 409
// when the service stopped before it was ready, 404 for an unknown one;
// stop answers 200.
func TestServices(t *testing.T) {
	port := strconv.Itoa(drovertest.FreePort(t))
	_, c := startAdmin(t, adminConfig+`
[service.sleeper]
command = ["sleep", "1000"]
start = "on-demand"

[service.never-ready]
command = ["sleep", "1000"]
start = "on-demand"
ready = "tcp:127.0.0.1:`+port+`"

[service.quits]
command = ["true"]
start = "on-demand"
restart = "never"
ready = "tcp:127.0.0.1:`+port+`"
`)
	type svc struct {
		Name, State string
		PID         int
	}
	var list []svc
	c.json("GET", "/api/v1/services", 200, &list)
	if len(list) != 3 || list[0].Name != "never-ready" || list[2].State != "stopped" {
		t.Fatalf("services: %+v", list)
	}
	var res admin.ActionResult
	c.json("POST", "/api/v1/services/sleeper/start?wait=5s", 200, &res)
	if res.Service != "sleeper" || res.Action != "start" {
		t.Errorf("start: %+v", res)
	}
	c.json("GET", "/api/v1/services", 200, &list)
	if list[2].Name != "sleeper" || list[2].State != "running" || !drovertest.Alive(list[2].PID) {
		t.Errorf("after start: %+v", list[2])
	}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/api/v1/services/never-ready/start?wait=300ms", 408},
		{"/api/v1/services/quits/start?wait=5s", 409},
		{"/api/v1/services/nope/start", 404},
		{"/api/v1/services/never-ready/stop", 200},
		{"/api/v1/services/sleeper/stop", 200},
	} {
		code, body, _ := c.do("POST", tc.path)
		if code != tc.want {
			t.Errorf("POST %s: %d %s, want %d", tc.path, code, body, tc.want)
		}
	}
	c.json("GET", "/api/v1/services", 200, &list)
	if list[2].State != "stopped" {
		t.Errorf("after stop: %+v", list[2])
	}
}

// TestConsoleFiles: the console is served from the binary without a
// token, with a strict CSP; its config tells it a token is needed.
func TestConsoleFiles(t *testing.T) {
	_, c := startAdmin(t, adminConfig)
	c = c.with("")
	for _, tc := range []struct {
		method, path string
		code         int
		ctype        string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8"},
		{"GET", "/console/app.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/console/style.css", 200, "text/css; charset=utf-8"},
		{"GET", "/console/i18n/fa.json", 200, "application/json"},
		{"GET", "/console/favicon.svg", 200, "image/svg+xml"},
		{"GET", "/console/config.json", 200, "application/json"},
		{"GET", "/console/nope.js", 404, ""},
		{"GET", "/nope", 404, ""},
		{"POST", "/", 405, ""},
	} {
		code, body, h := c.do(tc.method, tc.path)
		if code != tc.code || (tc.ctype != "" && h.Get("Content-Type") != tc.ctype) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, code, h.Get("Content-Type"), tc.code, tc.ctype)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.HasPrefix(csp, "default-src 'self';") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: CSP %q", tc.path, csp)
		}
		if tc.path == "/console/config.json" && strings.TrimSpace(string(body)) != `{"token_required":true}` {
			t.Errorf("config.json: %s", body)
		}
		if tc.method == "GET" && tc.path == "/" && (!strings.Contains(string(body), `<script src="/console/app.js"`) || strings.Contains(string(body), "<script>")) {
			t.Errorf("index.html: no external script or an inline one:\n%s", body)
		}
	}
}
