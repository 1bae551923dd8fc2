package process

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Limits are resource limits and scheduling attributes that must be in
// force before the program's first instruction.
//
// Go cannot set rlimits between fork and exec, and applying them to a
// running worker would be too late, so a process with Limits is started
// through a helper stage: drover re-executes itself (/proc/self/exe, which
// survives an upgrade of the binary on disk) with the limits in an
// environment variable; the helper, still root if drover is, applies them,
// drops to the worker's identity and execs the real program. Init is that
// helper's entry point.
type Limits struct {
	// AddressSpace is RLIMIT_AS in bytes; 0 = unlimited.
	AddressSpace int64 `json:"as,omitempty"`
	// OpenFiles is RLIMIT_NOFILE; 0 = inherited.
	OpenFiles int `json:"nofile,omitempty"`
	// Nice is the scheduling niceness; 0 = inherited.
	Nice int `json:"nice,omitempty"`
	// CPUs is the CPU affinity set; empty = all.
	CPUs []int `json:"cpus,omitempty"`
	// NoNewPrivs sets PR_SET_NO_NEW_PRIVS: neither the worker nor anything
	// it runs can gain privileges through setuid binaries.
	NoNewPrivs bool `json:"nnp,omitempty"`
}

func (l Limits) empty() bool {
	return l.AddressSpace == 0 && l.OpenFiles == 0 && l.Nice == 0 && len(l.CPUs) == 0 && !l.NoNewPrivs
}

// helperEnv carries the helper's instructions; the helper removes it
// before the worker runs.
const helperEnv = "DROVER_EXEC_HELPER"

// helperSpec is what the helper stage is told.
type helperSpec struct {
	Path   string   `json:"path"`
	Limits Limits   `json:"limits"`
	Cred   *credent `json:"cred,omitempty"`
	PPID   int      `json:"ppid"`
}

type credent struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups"`
}

// wrap rewrites cmd to go through the helper stage when there are limits.
// The identity switch moves into the helper too, so that it happens after
// the limits (a negative nice needs root) and before the program runs.
func (l Limits) wrap(cmd *exec.Cmd) error {
	if l.empty() {
		return nil
	}
	hs := helperSpec{Path: cmd.Path, Limits: l, PPID: os.Getpid()}
	if c := cmd.SysProcAttr.Credential; c != nil {
		hs.Cred = &credent{UID: c.Uid, GID: c.Gid, Groups: c.Groups}
		cmd.SysProcAttr.Credential = nil
	}
	b, err := json.Marshal(hs)
	if err != nil {
		return err
	}
	cmd.Path = "/proc/self/exe"
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(append([]string(nil), env...), helperEnv+"="+string(b))
	return nil
}

// Init must be called first thing in main (and in TestMain of tests that
// start processes with Limits). In an ordinary drover it returns at once;
// in the helper stage it applies the limits and execs the worker, and
// never returns.
func Init() {
	v, ok := os.LookupEnv(helperEnv)
	if !ok {
		return
	}
	runtime.LockOSThread()
	if err := runHelper(v); err != nil {
		fmt.Fprintf(os.Stderr, "drover: exec helper: %v\n", err)
		os.Exit(127)
	}
}

func runHelper(v string) error {
	var hs helperSpec
	if err := json.Unmarshal([]byte(v), &hs); err != nil {
		return fmt.Errorf("bad instructions: %w", err)
	}
	os.Unsetenv(helperEnv)
	l := hs.Limits
	if l.AddressSpace > 0 {
		lim := &unix.Rlimit{Cur: uint64(l.AddressSpace), Max: uint64(l.AddressSpace)}
		if err := unix.Setrlimit(unix.RLIMIT_AS, lim); err != nil {
			return fmt.Errorf("address_space %d: %w", l.AddressSpace, err)
		}
	}
	if l.OpenFiles > 0 {
		lim := &unix.Rlimit{Cur: uint64(l.OpenFiles), Max: uint64(l.OpenFiles)}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, lim); err != nil {
			return fmt.Errorf("open_files %d: %w", l.OpenFiles, err)
		}
	}
	if l.Nice != 0 {
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, l.Nice); err != nil {
			return fmt.Errorf("nice %d: %w", l.Nice, err)
		}
	}
	if len(l.CPUs) > 0 {
		var set unix.CPUSet
		for _, c := range l.CPUs {
			set.Set(c)
		}
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("cpu_affinity %v: %w", l.CPUs, err)
		}
	}
	if c := hs.Cred; c != nil {
		if err := unix.Setgroups(intSlice(c.Groups)); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := unix.Setresgid(int(c.GID), int(c.GID), int(c.GID)); err != nil {
			return fmt.Errorf("setgid %d: %w", c.GID, err)
		}
		if err := unix.Setresuid(int(c.UID), int(c.UID), int(c.UID)); err != nil {
			return fmt.Errorf("setuid %d: %w", c.UID, err)
		}
		// A change of credentials clears the parent-death signal.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
			return fmt.Errorf("pdeathsig: %w", err)
		}
		if os.Getppid() != hs.PPID {
			return fmt.Errorf("drover (pid %d) died during start", hs.PPID)
		}
	}
	if l.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	err := syscall.Exec(hs.Path, os.Args, os.Environ())
	return fmt.Errorf("exec %s: %w", hs.Path, err)
}

func intSlice(u []uint32) []int {
	out := make([]int, len(u))
	for i, x := range u {
		out[i] = int(x)
	}
	return out
}

// CPUList formats a CPU set the way /proc/PID/status shows
// Cpus_allowed_list, for messages and tests.
func CPUList(cpus []int) string {
	s := ""
	for i, c := range cpus {
		if i > 0 {
			s += ","
		}
		s += strconv.Itoa(c)
	}
	return s
}
