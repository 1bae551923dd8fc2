package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/drovertest"
)

func TestMain(m *testing.M) { drovertest.Main(m) }

const e2eConfig = `
[server]
listen = ["{{.Listen}}"]
admin = ""
access_log = ""
runtime_dir = "{{.Runtime}}"
shutdown_timeout = "20s"

[[route]]
path = "/"
pool = "app"

[pool.app]
command = ["{{.App}}"]
`

// TestSIGTERMDuringSlowRequest: a graceful stop lets the request in flight
// complete with 200, then no process of drover's remains.
func TestSIGTERMDuringSlowRequest(t *testing.T) {
	d := drovertest.StartBinary(t, e2eConfig)
	mark := filepath.Join(d.Dir, "reached")
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(d.URL + "/sleep?d=1500ms&mark=" + mark)
		if err != nil {
			done <- result{err: err}
			return
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode}
	}()
	var pid int
	drovertest.Eventually(t, 10*time.Second, "request reached the instance", func() bool {
		b, err := os.ReadFile(mark)
		pid, _ = strconv.Atoi(string(b))
		return err == nil && pid > 0
	})
	d.Cmd.Process.Signal(syscall.SIGTERM)
	r := <-done
	if r.err != nil || r.code != 200 {
		t.Fatalf("slow request during SIGTERM: %d %v", r.code, r.err)
	}
	d.Wait(t, 15*time.Second)
	if drovertest.Alive(pid) {
		t.Fatalf("instance %d outlived drover", pid)
	}
	if kids := drovertest.Children(d.Cmd.Process.Pid, ""); len(kids) > 0 {
		t.Fatalf("children of drover remain: %v", kids)
	}
}

// TestSIGKILLLeavesNoWorker: drover killed outright takes its workers
// with it (parent-death signal).
func TestSIGKILLLeavesNoWorker(t *testing.T) {
	d := drovertest.StartBinary(t, strings.Replace(e2eConfig, `command = ["{{.App}}"]`, `command = ["{{.App}}"]
start = "always"
min_instances = 2`, 1))
	var kids []int
	drovertest.Eventually(t, 10*time.Second, "two workers", func() bool {
		kids = drovertest.Children(d.Cmd.Process.Pid, "sampleapp")
		return len(kids) == 2
	})
	d.Cmd.Process.Kill()
	d.Wait(t, 5*time.Second)
	drovertest.Eventually(t, 5*time.Second, "workers gone", func() bool {
		return !drovertest.Alive(kids[0]) && !drovertest.Alive(kids[1])
	})
}

// pattern is 251 (prime) rounds of a byte ramp, so that a shifted or
// dropped block changes the checksum.
var pattern = func() []byte {
	b := make([]byte, 251*256)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}()

// patternReader yields n bytes of the pattern without holding them.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	n := 0
	for n < len(p) {
		n += copy(p[n:], pattern[(r.off+int64(n))%251:])
	}
	r.off += int64(n)
	return n, nil
}

// TestStream1GiB streams 1 GiB up and 1 GiB down through drover, with and
// without a known length, and checks that drover's peak RSS stays under
// 100 MiB: bodies are streamed, never held.
func TestStream1GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 2 GiB; run without -short")
	}
	d := drovertest.StartBinary(t, e2eConfig)
	const size = 1 << 30

	// Upload, chunked (unknown length).
	h := sha256.New()
	io.Copy(h, &patternReader{n: size})
	want := fmt.Sprintf("%d %s", size, hex.EncodeToString(h.Sum(nil)))
	req, _ := http.NewRequest("POST", d.URL+"/upload", io.NopCloser(&patternReader{n: size}))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(b)); resp.StatusCode != 200 || got != want {
		t.Fatalf("upload: %d %q, want %q", resp.StatusCode, got, want)
	}

	// Download with a Content-Length.
	resp, err = http.Get(d.URL + "/download?size=" + strconv.Itoa(size))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, %v", n, err)
	}

	hwm := drovertest.Status(d.Cmd.Process.Pid, "VmHWM")
	kb, _ := strconv.Atoi(strings.TrimSuffix(hwm, " kB"))
	t.Logf("drover peak RSS after streaming 2 GiB: %d KiB", kb)
	if kb == 0 || kb > 100*1024 {
		t.Fatalf("drover peak RSS %q, want under 100 MiB", hwm)
	}
}

// TestCheckCommand: drover check exits 0 with a summary, or 1 with every
// error at file:line:column.
func TestCheckCommand(t *testing.T) {
	bin := drovertest.Binary(t)
	good, _ := drovertest.WriteConfig(t, e2eConfig)
	out, err := exec.Command(bin, "check", "-c", good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("check good config: %v\n%s", err, out)
	}
	bad, _ := drovertest.WriteConfig(t, e2eConfig+`max_instances = -1
bogus = 1
`)
	out, err = exec.Command(bin, "check", "-c", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("check bad config: %v, want exit 1\n%s", err, out)
	}
	// The pool table starts at line 13 of e2eConfig; the two bad keys
	// follow its command line.
	for _, want := range []string{"drover.toml:15:1", "max_instances", "drover.toml:16:1", "bogus"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	if code := run([]string{"frobnicate"}); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

// TestSIGHUP: a valid change is applied on SIGHUP; a broken file is
// refused with its errors logged by line, and drover keeps serving.
func TestSIGHUP(t *testing.T) {
	d := drovertest.StartBinary(t, e2eConfig)
	resp, err := http.Get(d.URL + "/pid")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cfg, _ := os.ReadFile(d.File)
	// Valid: a second route to a new pool.
	next := string(cfg) + `
[[route]]
path = "/two"
pool = "two"
strip_prefix = true
[pool.two]
command = ["` + d.App + `"]
`
	os.WriteFile(d.File, []byte(next), 0o644)
	d.Cmd.Process.Signal(syscall.SIGHUP)
	drovertest.Eventually(t, 10*time.Second, "new pool serves after SIGHUP", func() bool {
		resp, err := http.Get(d.URL + "/two/pid")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	// Broken: a wrong type on line 22 of the file.
	os.WriteFile(d.File, []byte(next+"max_instances = \"four\"\n"), 0o644)
	lines := strings.Count(next, "\n") + 1
	d.Cmd.Process.Signal(syscall.SIGHUP)
	want := fmt.Sprintf("drover.toml:%d:", lines)
	drovertest.Eventually(t, 10*time.Second, "reload errors logged with the line", func() bool {
		return strings.Contains(d.Output.String(), want) && strings.Contains(d.Output.String(), "reload refused")
	})
	for _, path := range []string{"/pid", "/two/pid"} {
		resp, err := http.Get(d.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s after a refused reload: %d", path, resp.StatusCode)
		}
	}
}
