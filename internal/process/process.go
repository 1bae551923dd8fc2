// Package process starts and stops drover's worker processes.
//
// It is the one place that owns process lifecycle: every process drover
// starts goes through Start, runs in its own process group (so that the
// worker and everything it spawned can be signalled together), is watched by
// exactly one goroutine blocked in wait(2) (an exit is seen the instant it
// happens, never by polling), and dies with drover: each child gets
// PR_SET_PDEATHSIG=SIGKILL. Because the kernel ties the parent-death signal
// to the thread that forked the child, not to the process, all forks happen
// on one goroutine locked to its OS thread for drover's whole life.
package process

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec says how to start one process.
type Spec struct {
	// Path is the program; when it has no slash it is looked up in PATH.
	Path string
	// Args is argv, including argv[0].
	Args []string
	// Env is the complete environment (drover passes a clean minimal one).
	Env []string
	// Dir is the working directory; "" is drover's.
	Dir string
	// Stdin becomes fd 0 (fastcgi and wsgi instances get their listening
	// socket here); nil is /dev/null.
	Stdin *os.File
	// ExtraFiles become fd 3, 4, ...
	ExtraFiles []*os.File
	// Output receives the process's stdout and stderr line by line
	// (stream is "stdout" or "stderr"); nil discards them.
	Output func(stream, line string)
	// Stdout, when set, becomes fd 1 as is (a CGI program's response
	// goes there); Output then gets stderr only.
	Stdout *os.File
	// Credential, when set, runs the process as another user and group.
	Credential *syscall.Credential
	// Limits applied before the program's first instruction.
	Limits Limits
	// CgroupFD, when UseCgroupFD is set, is an open cgroup v2 directory
	// the process is created in (clone3 CLONE_INTO_CGROUP).
	CgroupFD    int
	UseCgroupFD bool
}

// Process is a started process. Its methods are safe for concurrent use.
type Process struct {
	// Pid is the process id, which is also its process group id.
	Pid int

	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has been reaped
	readers sync.WaitGroup
	pipes   []*os.File // read ends of the output pipes; closed by wait
	// state and err are written once before done is closed.
	state *os.ProcessState
	err   error
}

// spawnReq asks the spawner thread to start one command.
type spawnReq struct {
	cmd *exec.Cmd
	err chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// spawner runs every fork on one OS thread that never exits, so that
// Pdeathsig fires only when drover itself dies. It is started once and
// lives as long as the process, by design.
func spawner() {
	runtime.LockOSThread()
	for r := range spawnCh {
		r.err <- r.cmd.Start()
	}
}

// Start starts the process described by spec.
func Start(spec Spec) (*Process, error) {
	if len(spec.Args) == 0 {
		return nil, errors.New("process: empty command")
	}
	path := spec.Path
	if path == "" {
		path = spec.Args[0]
	}
	cmd := &exec.Cmd{
		Path:       path,
		Args:       spec.Args,
		Env:        spec.Env,
		Dir:        spec.Dir,
		ExtraFiles: spec.ExtraFiles,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:     true,
			Pdeathsig:   syscall.SIGKILL,
			Credential:  spec.Credential,
			UseCgroupFD: spec.UseCgroupFD,
			CgroupFD:    spec.CgroupFD,
		},
	}
	if spec.Stdin != nil {
		cmd.Stdin = spec.Stdin
	}
	if err := resolve(cmd, spec); err != nil {
		return nil, err
	}
	if err := spec.Limits.wrap(cmd); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	var childEnds []*os.File
	streams := []string{"stdout", "stderr"}
	if spec.Stdout != nil {
		cmd.Stdout = spec.Stdout
		streams = streams[1:]
	}
	if spec.Output != nil {
		for range streams {
			r, w, err := os.Pipe()
			if err != nil {
				p.closePipes()
				closeAll(childEnds)
				return nil, fmt.Errorf("start %s: output pipe: %w", spec.Args[0], err)
			}
			p.pipes = append(p.pipes, r)
			childEnds = append(childEnds, w)
		}
		if spec.Stdout == nil {
			cmd.Stdout = childEnds[0]
		}
		cmd.Stderr = childEnds[len(childEnds)-1]
	}
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go spawner()
	})
	req := spawnReq{cmd: cmd, err: make(chan error, 1)}
	spawnCh <- req
	err := <-req.err
	// The child holds its own copies; ours would keep the pipes open.
	closeAll(childEnds)
	if err != nil {
		p.closePipes()
		return nil, fmt.Errorf("start %s: %w", spec.Args[0], err)
	}
	p.Pid = cmd.Process.Pid
	for i, r := range p.pipes {
		p.readers.Add(1)
		go p.read(r, streams[i], spec.Output)
	}
	go p.wait()
	return p, nil
}

// resolve finds the program in the worker's PATH (from spec.Env), not
// drover's: the worker must get the program its own environment names.
func resolve(cmd *exec.Cmd, spec Spec) error {
	if spec.Path != "" || containsSlash(spec.Args[0]) {
		return nil
	}
	path, ok := "", false
	for _, kv := range spec.Env {
		if v, found := strings.CutPrefix(kv, "PATH="); found {
			path, ok = v, true
		}
	}
	if !ok {
		path = os.Getenv("PATH")
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		f := filepath.Join(dir, spec.Args[0])
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			cmd.Path = f
			cmd.Err = nil
			return nil
		}
	}
	return fmt.Errorf("start %s: %w", spec.Args[0], exec.ErrNotFound)
}

func containsSlash(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

// wait is the one goroutine that reaps the process; it ends when the
// process does.
// exec's own output pipes are not used: their copying goroutines would
// delay Wait, and with it the killing of the group, for as long as a
// grandchild holds the pipe.
func (p *Process) wait() {
	p.state, p.err = p.cmd.Process.Wait()
	// Anything the worker left in its group goes with it.
	_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
	// Give the readers the tail of the output, but not forever: a
	// grandchild that left the group may hold the pipe.
	readersDone := make(chan struct{})
	go func() { p.readers.Wait(); close(readersDone) }()
	t := time.NewTimer(time.Second)
	select {
	case <-readersDone:
	case <-t.C:
	}
	t.Stop()
	p.closePipes()
	<-readersDone
	close(p.done)
}

// read forwards one output stream line by line until EOF. A line longer
// than the buffer is forwarded in pieces: the reader must never stop
// draining, or the worker would block writing to a full pipe.
func (p *Process) read(r *os.File, stream string, out func(stream, line string)) {
	defer p.readers.Done()
	br := bufio.NewReaderSize(r, 16*1024)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			out(stream, strings.TrimRight(string(line), "\r\n"))
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

func (p *Process) closePipes() { closeAll(p.pipes) }

func closeAll(fs []*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has been reaped.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// State returns the exit state; only valid after Done is closed.
func (p *Process) State() *os.ProcessState { return p.state }

// ExitString describes how the process ended: "exit status 3",
// "signal: killed"; only valid after Done is closed.
func (p *Process) ExitString() string {
	if p.state == nil {
		if p.err != nil {
			return p.err.Error()
		}
		return "unknown"
	}
	return p.state.String()
}

// Signal sends sig to the whole process group.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(-p.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", p.Pid, err)
	}
	return nil
}

// Kill sends SIGKILL to the whole process group.
func (p *Process) Kill() { _ = p.Signal(syscall.SIGKILL) }

// Stop asks the process group to end with SIGTERM and kills it with SIGKILL
// when it has not exited after timeout (or when ctx ends first). It returns
// once the process has been reaped.
func (p *Process) Stop(ctx context.Context, timeout time.Duration) {
	_ = p.Signal(syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	case <-ctx.Done():
	}
	p.Kill()
	<-p.done
}
