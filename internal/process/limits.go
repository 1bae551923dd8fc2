package process

import "os/exec"

// Limits are resource limits and scheduling attributes that must be in
// force before the program's first instruction.
type Limits struct {
	// AddressSpace is RLIMIT_AS in bytes; 0 = unlimited.
	AddressSpace int64
	// OpenFiles is RLIMIT_NOFILE; 0 = inherited.
	OpenFiles int
	// Nice is the scheduling niceness; 0 = inherited.
	Nice int
	// CPUs is the CPU affinity set; empty = all.
	CPUs []int
	// NoNewPrivs sets PR_SET_NO_NEW_PRIVS.
	NoNewPrivs bool
}

func (l Limits) empty() bool {
	return l.AddressSpace == 0 && l.OpenFiles == 0 && l.Nice == 0 && len(l.CPUs) == 0 && !l.NoNewPrivs
}

// wrap arranges for the limits to be applied before cmd's program runs.
func (l Limits) wrap(cmd *exec.Cmd) error {
	if l.empty() {
		return nil
	}
	return errNoLimits
}
