package cgi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/proctest"

	"go.uber.org/goleak"

	"github.com/drover-pool/drover/internal/backend/fastcgi"
	"github.com/drover-pool/drover/internal/process"
)

// www is the document root of the test scripts. They are all written
// before any test starts a process: writing an executable while another
// goroutine forks can leave the write descriptor open in the child for a
// moment, and exec then fails with ETXTBSY.
var www string

// scripts are the test CGI programs, by name; mode 0755 unless the name
// ends in ".noexec.py" or ".txt".
var scripts = map[string]string{
	"env.sh": `#!/bin/sh
printf 'Content-Type: text/plain\r\nX-Script: env\r\n\r\n'
echo "CWD=$(pwd)"
echo "ARGV=$0 $*"
env
`,
	"md5.sh": `#!/bin/sh
sum=$(head -c "${CONTENT_LENGTH:-0}" | md5sum | cut -d' ' -f1)
printf 'Content-Type: text/plain\n\n%s %s\n' "$sum" "${CONTENT_LENGTH:-unset}"
`,
	"sha.noexec.py": shaPy,
	"sha.py":        "#!/usr/bin/python3\n" + shaPy,
	"status.sh": `#!/bin/sh
printf 'Status: 404 Not Found\nContent-Type: text/plain\n\nnope\n'
`,
	"redirect.sh": `#!/bin/sh
printf 'Location: /elsewhere\n\n'
`,
	"created.sh": `#!/bin/sh
printf 'Status: 201\r\nLocation: http://example.org/item/7\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n'
`,
	"stream.sh": `#!/bin/sh
printf 'Content-Type: text/plain\n\nfirst\n'
read line < "$CGI_TEST_FIFO"
echo "second $line"
`,
	"hang.sh": `#!/bin/sh
sleep 1000 &
echo "$$ $!" > "$CGI_TEST_FIFO"
if [ -n "$CGI_TEST_HEADER" ]; then printf 'Content-Type: text/plain\n\nstarted\n'; fi
wait
`,
	"spin.sh": `#!/bin/sh
printf 'Content-Type: text/plain\n\n'
echo $$
exec yes
`,
	"stderr.sh": `#!/bin/sh
echo "to stderr" >&2
printf 'Content-Type: text/plain\n\nok\n'
echo "after" >&2
exit 3
`,
	"noheader.sh": `#!/bin/sh
echo "no header for you" >&2
printf 'Content-Type: text/pl'
exit 1
`,
	"badheader.sh": `#!/bin/sh
printf 'this is not a header\n\nbody\n'
`,
	"bigheader.sh": `#!/bin/sh
printf 'X-Big: '
tr '\000' a < /dev/zero
`,
	"clen.sh": `#!/bin/sh
printf 'Content-Length: 5\n\nhello world'
`,
	"short.sh": `#!/bin/sh
printf 'Content-Length: 50\n\nhello'
`,
	"linger.sh": `#!/bin/sh
printf 'Content-Type: text/plain\n\ndone\n'
exec >&-
exec sleep 1000
`,
	"status100.sh": `#!/bin/sh
printf 'Status: 100 Continue\n\n'
`,
	"plain.txt": "not a program\n",
	"dir/sub.sh": `#!/bin/sh
printf 'Content-Type: text/plain\n\nsub %s|%s|%s\n' "$SCRIPT_NAME" "$PATH_INFO" "$(pwd)"
`,
}

const shaPy = `import hashlib, os, sys
n = int(os.environ.get("CONTENT_LENGTH") or 0)
data = sys.stdin.buffer.read(n)
out = "%s %d %s\n" % (hashlib.sha256(data).hexdigest(), len(data), os.environ["REQUEST_METHOD"])
sys.stdout.write("Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
`

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cgi-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	www = filepath.Join(dir, "www")
	for name, text := range scripts {
		p := filepath.Join(www, name)
		mode := os.FileMode(0o755)
		if strings.HasSuffix(name, ".noexec.py") || strings.HasSuffix(name, ".txt") {
			mode = 0o644
		}
		err := os.MkdirAll(filepath.Dir(p), 0o755)
		if err == nil {
			err = os.WriteFile(p, []byte(text), mode)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(leakOptions()...); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func leakOptions() []goleak.Option {
	// The process package's spawner thread lives as long as drover.
	return []goleak.Option{goleak.IgnoreAnyFunction("github.com/drover-pool/drover/internal/process.spawner")}
}

// lines collects Stderr lines.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) { l.mu.Lock(); l.l = append(l.l, s); l.mu.Unlock() }

func (l *lines) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.l...)
}

// newTransport returns a Transport for www with a clean environment plus
// env ("K=V").
func newTransport(t testing.TB, env ...string) (*Transport, *lines) {
	t.Helper()
	errs := &lines{}
	tr := &Transport{
		Spec: process.Spec{
			Env: append(process.CleanEnv("/", "", nil), env...),
		},
		Root:   www,
		Stderr: errs.add,
	}
	return tr, errs
}

func newRequest(t testing.TB, ctx context.Context, method, url string, body io.Reader) *http.Request {
	t.Helper()
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// get makes a round trip and reads the whole body.
func get(t testing.TB, tr http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

// envMap parses env(1) output lines.
func envMap(body string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(body, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// waitDead waits for pid to die. A process killed by SIGKILL is gone from
// the scheduler at once, but a grandchild is reparented and reaped by
// someone else; the state turns to Z or the entry goes away soon after
// the kill. It is a condition poll with a deadline, not a sleep standing
// for a condition.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for proctest.Alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// children lists the processes whose parent is this test binary.
func children(t *testing.T) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(self) {
			out = append(out, pid)
		}
	}
	return out
}

// fdCount counts this process's open file descriptors.
func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// mkfifo makes a named pipe in a test directory.
func mkfifo(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readPids opens the fifo for reading (which waits for the script to open
// it for writing) and reads the "pid pid" line it writes.
func readPids(t *testing.T, fifo string) (script, child int) {
	t.Helper()
	f, err := os.Open(fifo)
	if err != nil {
		t.Error(err)
		return 0, 0
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if _, err2 := fmt.Sscan(line, &script, &child); err2 != nil {
		t.Errorf("pids %q: %v %v", line, err, err2)
	}
	return script, child
}

func withConnInfo(ctx context.Context, ci fastcgi.ConnInfo) context.Context {
	return fastcgi.WithConnInfo(ctx, ci)
}
