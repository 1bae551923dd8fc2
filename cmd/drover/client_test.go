package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/drovertest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// clientToken is the admin token of the client tests' drover.
const clientToken = "client-test-token"

// clientConfig is a drover with the admin API on loopback, its token in
// TOKENFILE.
const clientConfig = `
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

[pool.idle]
command = ["{{.App}}"]

[service.sleeper]
command = ["sleep", "1000"]
start = "on-demand"
`

func startClientDrover(t *testing.T) *drovertest.Drover {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte(clientToken), 0o600)
	return drovertest.Start(t, strings.ReplaceAll(clientConfig, "TOKENFILE", tokenFile))
}

// runCLI runs a client verb in-process with an environment of its own.
func runCLI(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code = runClient(ctx, args[0], args[1:], &out, &errb, func(k string) string { return env[k] })
	return code, out.String(), errb.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it)\n--- got\n%s--- want\n%s", name, got, want)
	}
}

// fakePools is what a fake admin API answers: every field the table shows.
const fakePools = `[
 {"name":"app","state":"running","waiting":3,
  "counters":{"instances":{"ready":2,"starting":1},"busy":1,"in_flight":1,"requests":1234,"req_per_sec":12.34,"p99_seconds":0.0425},
  "instances":[
   {"id":1,"pid":4242,"state":"ready","uptime_seconds":3725.5,"requests":1000,"in_flight":1,"rss_bytes":15728640,"cpu_seconds":12.5},
   {"id":2,"pid":4243,"state":"ready","uptime_seconds":65,"requests":234,"in_flight":0,"rss_bytes":7340032,"cpu_seconds":0.25},
   {"id":3,"pid":0,"state":"starting","uptime_seconds":0.2,"requests":0,"in_flight":0,"rss_bytes":0,"cpu_seconds":0}]},
 {"name":"reports-with-a-long-name","state":"stopped","stop_reason":"rapid-fail","waiting":0,
  "counters":{"instances":{},"busy":0,"req_per_sec":0,"p99_seconds":1.5},"instances":[]}
]`

// TestStatusGolden: the status table's layout, against a fake admin API.
func TestStatusGolden(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			fmt.Fprint(w, `{"error":"invalid token"}`)
			return
		}
		var pools []json.RawMessage
		json.Unmarshal([]byte(fakePools), &pools)
		switch r.URL.Path {
		case "/api/v1/pools":
			w.Write([]byte(fakePools))
		case "/api/v1/pools/app":
			w.Write(pools[0])
		default:
			w.WriteHeader(404)
			fmt.Fprint(w, `{"error":"no pool \"nope\""}`)
		}
	}))
	defer srv.Close()
	env := map[string]string{"DROVER_ADMIN": strings.TrimPrefix(srv.URL, "http://"), "DROVER_ADMIN_TOKEN": "tok"}
	code, out, errs := runCLI(t, env, "status")
	if code != 0 {
		t.Fatalf("status: %d %s", code, errs)
	}
	golden(t, "status.golden", out)
	code, out, errs = runCLI(t, env, "status", "app")
	if code != 0 {
		t.Fatalf("status app: %d %s", code, errs)
	}
	golden(t, "status_pool.golden", out)
	if code, _, errs := runCLI(t, env, "status", "nope"); code != 1 || !strings.Contains(errs, `no pool "nope"`) {
		t.Errorf("status nope: %d %q", code, errs)
	}
}

// normalise replaces what changes from run to run in a status table
// (pids, uptimes, RSS, CPU, rates) and collapses column padding.
func normalise(s string) string {
	for _, r := range []struct{ re, to string }{
		{`(?m)^(\d+)\s+\d+\s+(\S+)\s+\S+\s+(\d+)\s+(\d+)\s+\S+MiB\s+\S+s$`, "$1 PID $2 UPTIME $3 $4 RSS CPU"},
		{`(?m)^(\S+)\s+(running|stopped)\s+(\d+/\d+/\d+)\s+(\d+)\s+\S+\s+\S+$`, "$1 $2 $3 $4 REQ/S P99"},
		{` {2,}`, " "},
	} {
		s = regexp.MustCompile(r.re).ReplaceAllString(s, r.to)
	}
	return s
}

// TestStatusRealGolden: drover status against a real drover, found by -c
// (address and token file from the config), with varying numbers
// normalised.
func TestStatusRealGolden(t *testing.T) {
	d := startClientDrover(t)
	drovertest.Get(t, d.URL+"/pid")
	code, out, errs := runCLI(t, nil, "status", "-c", d.File)
	if code != 0 {
		t.Fatalf("status: %d %s", code, errs)
	}
	golden(t, "status_real.golden", normalise(out))
	code, out, errs = runCLI(t, nil, "status", "app", "-c", d.File)
	if code != 0 {
		t.Fatalf("status app: %d %s", code, errs)
	}
	golden(t, "status_real_pool.golden", normalise(out))
}

// TestClientCommands runs every client verb against a real drover: exit
// codes, output, and --json that parses.
func TestClientCommands(t *testing.T) {
	d := startClientDrover(t)
	env := map[string]string{"DROVER_ADMIN": d.Admin, "DROVER_ADMIN_TOKEN": clientToken}
	pid := strings.TrimSpace(mustGet(t, d.URL+"/pid"))

	for _, args := range [][]string{
		{"status", "--json"}, {"status", "app", "--json"}, {"requests", "--json"}, {"requests", "app", "--json"},
		{"events", "--json"}, {"start", "app", "--json"}, {"reload", "--json"},
	} {
		code, out, errs := runCLI(t, env, args...)
		if code != 0 || !json.Valid([]byte(out)) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}

	code, out, _ := runCLI(t, env, "requests")
	if code != 0 || out != "no requests in flight\n" {
		t.Errorf("requests: %d %q", code, out)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.Get(d.URL + "/sleep?d=1s"); err == nil {
			resp.Body.Close()
		}
	}()
	drovertest.Eventually(t, 5*time.Second, "requests lists the slow request", func() bool {
		_, out, _ := runCLI(t, env, "requests", "app")
		return strings.Contains(out, "/sleep?d=1s") && strings.Contains(out, pid)
	})
	<-done

	if code, out, errs := runCLI(t, env, "recycle", "app"); code != 0 || !strings.Contains(out, "recycle started") {
		t.Errorf("recycle: %d %q %q", code, out, errs)
	}
	drovertest.Eventually(t, 10*time.Second, "the instance is replaced", func() bool {
		p := d.Pool("app").PIDs("ready")
		return len(p) == 1 && strconv.Itoa(p[0]) != pid
	})
	if code, out, _ := runCLI(t, env, "stop", "app"); code != 0 || out != "pool app: stopped\n" {
		t.Errorf("stop: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, env, "status"); code != 0 || !strings.Contains(out, "stopped (admin)") {
		t.Errorf("status after stop: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, env, "start", "app"); code != 0 || out != "pool app: running\n" {
		t.Errorf("start: %d %q", code, out)
	}
	code, out, _ = runCLI(t, env, "events")
	if code != 0 || !regexp.MustCompile(`(?m) #\d+ recycle pool=app pid=`+pid+` reason=admin "replaced by \d+"$`).MatchString(out) {
		t.Errorf("events: %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, env, "reload"); code != 0 || !strings.HasPrefix(out, "reloaded: added [], removed [], changed [], unchanged 2") {
		t.Errorf("reload: %d %q", code, out)
	}

	if code, out, errs := runCLI(t, env, "service", "start", "sleeper", "--wait", "5s"); code != 0 || out != "service sleeper: started\n" {
		t.Errorf("service start: %d %q %q", code, out, errs)
	}
	if code, out, errs := runCLI(t, env, "service", "stop", "sleeper", "--json"); code != 0 || !json.Valid([]byte(out)) {
		t.Errorf("service stop: %d %q %q", code, out, errs)
	}

	// Errors: exit 1 with a message that says what to do.
	os.WriteFile(d.File, []byte("[server]\nlisten = 42\n"), 0o644)
	if code, _, errs := runCLI(t, env, "reload"); code != 1 || !strings.Contains(errs, d.File+":2:") {
		t.Errorf("broken reload: %d %q", code, errs)
	}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		code int
		msg  string
	}{
		{env, []string{"stop", "nope"}, 1, `no pool "nope"`},
		{env, []string{"service", "start", "nope", "--wait", "1s"}, 1, `service "nope": no such service`},
		{map[string]string{"DROVER_ADMIN": d.Admin, "DROVER_ADMIN_TOKEN": "wrong"}, []string{"status"}, 1, "refused the token"},
		{map[string]string{"DROVER_ADMIN": d.Admin}, []string{"status"}, 1, "needs a token"},
		{map[string]string{"DROVER_ADMIN": "127.0.0.1:" + strconv.Itoa(drovertest.FreePort(t))}, []string{"status"}, 1, "cannot reach the admin API"},
		{env, []string{"recycle"}, 2, "want one POOL"},
		{env, []string{"status", "a", "b"}, 2, "too many arguments"},
		{env, []string{"service", "restart", "x"}, 2, "want start or stop"},
		{env, []string{"status", "--bogus"}, 2, "flag provided but not defined"},
	} {
		code, _, errs := runCLI(t, tc.env, tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) {
			t.Errorf("%v: exit %d %q, want %d and %q", tc.args, code, errs, tc.code, tc.msg)
		}
	}
}

func mustGet(t *testing.T, url string) string {
	t.Helper()
	code, body, _ := drovertest.Get(t, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return body
}

// TestEventsFollow: the drover binary's "events -f" prints events as they
// happen and ends with exit 0 on SIGINT.
func TestEventsFollow(t *testing.T) {
	d := startClientDrover(t)
	cmd := exec.Command(drovertest.Binary(t), "events", "-f", "--admin", d.Admin)
	cmd.Env = append(os.Environ(), "DROVER_ADMIN_TOKEN="+clientToken)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	waitFor := func(what string) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("events -f ended before %q: %s", what, stderr.String())
				}
				if strings.Contains(l, what) {
					return
				}
			case <-timeout:
				t.Fatalf("events -f did not print %q", what)
			}
		}
	}
	waitFor("server-start")
	mustGet(t, d.URL+"/pid")
	waitFor("ready pool=app")
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Errorf("events -f after SIGINT: %v %s", err, stderr.String())
	}
}
