// Package proctest is what drover's tests use to observe real processes
// and wait for conditions, in the spirit of net/http/httptest. It depends
// on nothing of drover's, so the tests of every package can use it,
// including those that drovertest (which builds a whole server) cannot
// serve without an import cycle.
package proctest

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Eventually polls cond until it holds or timeout passes: tests wait for a
// condition, never for a guessed time.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", timeout, msg)
		}
		time.Sleep(pause)
		pause = min(pause*2, 50*time.Millisecond)
	}
}

// stat returns the fields of /proc/PID/stat after the command name.
func stat(pid string) ([]string, string, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil, "", false
	}
	s := string(b)
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open || len(s) < close+2 {
		return nil, "", false
	}
	return strings.Fields(s[close+2:]), s[open+1 : close], true
}

// Alive reports whether a process exists and is not a zombie.
func Alive(pid int) bool {
	f, _, ok := stat(strconv.Itoa(pid))
	return ok && len(f) > 0 && f[0] != "Z"
}

// Children returns the live processes whose parent is ppid and whose
// command name (comm) is name ("" = any).
func Children(ppid int, name string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, comm, ok := stat(e.Name())
		if !ok || len(f) < 2 || f[0] == "Z" {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == ppid && (name == "" || comm == name) {
			out = append(out, pid)
		}
	}
	return out
}

// Status reads one field ("VmHWM", "Uid", "Groups"...) of
// /proc/PID/status.
func Status(pid int, field string) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Missing skips a test whose real program is not installed on a
// developer's machine, but fails it on CI, where .ci/run installs every
// program the tests use: a skip there would hide a missing dependency.
func Missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; .ci/run must install it", what)
	}
	t.Skipf("%s not installed", what)
}
