package process

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/drover-pool/drover/internal/proctest"
)

// TestStopKillsTheGroup: a process that ignores SIGTERM is killed at the
// timeout, and so is the child it left in its group.
func TestStopKillsTheGroup(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	p, err := Start(Spec{
		Args: []string{"/bin/sh", "-c", `trap "" TERM; sleep 1000 & echo child $!; wait`},
		Env:  []string{"PATH=/usr/bin:/bin"},
		Output: func(stream, line string) {
			mu.Lock()
			lines = append(lines, stream+": "+line)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		for _, l := range lines {
			if c, ok := strings.CutPrefix(l, "stdout: child "); ok {
				child, _ = strconv.Atoi(c)
			}
		}
		mu.Unlock()
	}
	if child == 0 {
		t.Fatalf("no child pid in output %v", lines)
	}
	start := time.Now()
	p.Stop(context.Background(), 300*time.Millisecond)
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Errorf("stopped after %s although SIGTERM is ignored", el)
	}
	if !p.Exited() || proctest.Alive(p.Pid) {
		t.Fatalf("exited=%v, process alive=%v", p.Exited(), proctest.Alive(p.Pid))
	}
	// The child was sent SIGKILL with the group; it dies a moment later.
	for deadline := time.Now().Add(5 * time.Second); proctest.Alive(child); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d survived its group's SIGKILL", child)
		}
	}
	if s := p.ExitString(); s != "signal: killed" {
		t.Errorf("exit %q", s)
	}
}

// TestLongLinesKeepDraining: output lines longer than the buffer arrive
// in pieces and never stall the writer.
func TestLongLinesKeepDraining(t *testing.T) {
	var mu sync.Mutex
	total := 0
	p, err := Start(Spec{
		Args: []string{"/bin/sh", "-c", `head -c 300000 /dev/zero | tr '\0' x; echo; echo done`},
		Env:  []string{"PATH=/usr/bin:/bin"},
		Output: func(stream, line string) {
			mu.Lock()
			total += len(line)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("writer stalled")
	}
	mu.Lock()
	defer mu.Unlock()
	if total != 300000+len("done") {
		t.Fatalf("read %d bytes of output", total)
	}
}

func TestNotFound(t *testing.T) {
	_, err := Start(Spec{Args: []string{"no-such-program-here"}, Env: []string{"PATH=/usr/bin:/bin"}})
	if err == nil || !strings.Contains(err.Error(), "no-such-program-here") {
		t.Fatalf("got %v", err)
	}
}

func TestSignalToExitedIsNoop(t *testing.T) {
	p, err := Start(Spec{Args: []string{"/bin/true"}})
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}
