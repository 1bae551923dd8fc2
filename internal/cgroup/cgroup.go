// Package cgroup puts a pool's instances in a cgroup v2 group of their own,
// below the group drover runs in, with the pool's memory, CPU and pids
// limits. Instances are placed in the group at fork (clone3 with
// CLONE_INTO_CGROUP, through SysProcAttr.CgroupFD), so no instruction of
// theirs runs outside it.
//
// drover only uses a hierarchy that was delegated to it (systemd's
// Delegate=yes, or a container runtime's cgroup namespace): it never
// creates groups elsewhere. When the kernel offers cgroup v1 only, or the
// controllers are not delegated, Detect says so and what to do, and a pool
// that asks for cgroup limits is refused rather than silently unlimited.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits are one pool's cgroup limits; zero values are "no limit".
type Limits struct {
	Memory     int64   // memory.max in bytes
	CPUPercent float64 // cpu.max quota: 150 = 1.5 CPUs
	Pids       int     // pids.max
}

// Controllers returns the controllers these limits need.
func (l Limits) Controllers() []string {
	var c []string
	if l.CPUPercent > 0 {
		c = append(c, "cpu")
	}
	if l.Memory > 0 {
		c = append(c, "memory")
	}
	if l.Pids > 0 {
		c = append(c, "pids")
	}
	return c
}

// Hierarchy is drover's delegated part of the cgroup v2 tree.
type Hierarchy struct {
	// Root is the cgroup2 mount point (normally /sys/fs/cgroup).
	Root string
	// Base is drover's own group, relative to Root ("/" for the root).
	Base string
	// available are the controllers Base can give its children.
	available []string
}

// Unavailable explains why cgroup limits cannot be used here.
type Unavailable struct{ Reason string }

func (e *Unavailable) Error() string {
	return "cgroup v2 limits are not available to drover: " + e.Reason +
		"; run drover with a delegated cgroup v2 subtree (systemd: Delegate=yes in its unit) or remove the pool's limits.memory, limits.cpu (with cpu_action = \"throttle\") and limits.pids"
}

// Detect finds drover's group on this machine.
func Detect() (*Hierarchy, error) {
	return DetectAt("/sys/fs/cgroup", "/proc/self/cgroup")
}

// DetectAt finds drover's group given the cgroup2 mount point and the
// path of a /proc/PID/cgroup file; tests point it at a fake tree.
func DetectAt(root, selfCgroup string) (*Hierarchy, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err == nil && st.Type != unix.CGROUP2_SUPER_MAGIC && !isFake(root) {
		return nil, &Unavailable{Reason: root + " is not a cgroup v2 mount (this kernel offers the v1 layout)"}
	}
	base, err := ownGroup(selfCgroup)
	if err != nil {
		return nil, &Unavailable{Reason: err.Error()}
	}
	h := &Hierarchy{Root: root, Base: base}
	b, err := os.ReadFile(filepath.Join(h.dir(), "cgroup.controllers"))
	if err != nil {
		return nil, &Unavailable{Reason: "cannot read drover's group: " + err.Error()}
	}
	h.available = strings.Fields(string(b))
	if err := unix.Access(filepath.Join(h.dir(), "cgroup.subtree_control"), unix.W_OK); err != nil {
		return nil, &Unavailable{Reason: "drover's group " + base + " is not writable by drover (not delegated)"}
	}
	return h, nil
}

// isFake reports a test tree: it carries a marker file, so that tests can
// use a plain directory where a cgroup2 mount would be.
func isFake(root string) bool {
	_, err := os.Stat(filepath.Join(root, ".fake-cgroup2"))
	return err == nil
}

// ownGroup reads the "0::/path" line of a /proc/PID/cgroup file.
func ownGroup(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, nil
		}
	}
	return "", errors.New("drover is in no cgroup v2 group (no 0:: line in " + file + ")")
}

func (h *Hierarchy) dir() string { return filepath.Join(h.Root, h.Base) }

// Check reports whether the controllers that l needs are delegated.
func (h *Hierarchy) Check(l Limits) error {
	for _, c := range l.Controllers() {
		if !slices.Contains(h.available, c) {
			return &Unavailable{Reason: "the " + c + " controller is not delegated to drover's group " + h.Base}
		}
	}
	return nil
}

// Group is one pool's group.
type Group struct {
	Path string // absolute directory
	fd   int
}

// NewGroup creates (or reuses) the pool's group below drover's and writes
// its limits. cgroup v2 lets a group with processes have no children with
// controllers, so drover first moves itself into a leaf "drover" group.
func (h *Hierarchy) NewGroup(pool string, l Limits) (*Group, error) {
	if err := h.Check(l); err != nil {
		return nil, err
	}
	if err := h.leaveRoot(); err != nil {
		return nil, err
	}
	if ctl := l.Controllers(); len(ctl) > 0 {
		enable := "+" + strings.Join(ctl, " +")
		if err := write(filepath.Join(h.dir(), "cgroup.subtree_control"), enable); err != nil {
			return nil, fmt.Errorf("enable controllers %s: %w", enable, err)
		}
	}
	g := &Group{Path: filepath.Join(h.dir(), "pool-"+pool), fd: -1}
	if err := os.Mkdir(g.Path, 0o755); err != nil && !os.IsExist(err) {
		return nil, fmt.Errorf("create group: %w", err)
	}
	if err := g.SetLimits(l); err != nil {
		return nil, err
	}
	return g, nil
}

// leaveRoot moves drover's own processes into Base/drover.
func (h *Hierarchy) leaveRoot() error {
	procs, err := os.ReadFile(filepath.Join(h.dir(), "cgroup.procs"))
	if err != nil || len(strings.TrimSpace(string(procs))) == 0 {
		return nil
	}
	leaf := filepath.Join(h.dir(), "drover")
	if err := os.Mkdir(leaf, 0o755); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create drover's leaf group: %w", err)
	}
	for _, pid := range strings.Fields(string(procs)) {
		if err := write(filepath.Join(leaf, "cgroup.procs"), pid); err != nil {
			return fmt.Errorf("move pid %s into %s: %w", pid, leaf, err)
		}
	}
	return nil
}

// SetLimits writes memory.max, cpu.max and pids.max ("max" when unset).
func (g *Group) SetLimits(l Limits) error {
	mem, cpu, pids := "max", "max 100000", "max"
	if l.Memory > 0 {
		mem = strconv.FormatInt(l.Memory, 10)
	}
	if l.CPUPercent > 0 {
		// cpu.max is "quota period" in µs: 150% of a 100ms period.
		cpu = strconv.FormatInt(int64(l.CPUPercent*1000), 10) + " 100000"
	}
	if l.Pids > 0 {
		pids = strconv.Itoa(l.Pids)
	}
	for _, f := range []struct {
		file, value string
		set         bool
	}{{"memory.max", mem, l.Memory > 0}, {"cpu.max", cpu, l.CPUPercent > 0}, {"pids.max", pids, l.Pids > 0}} {
		if !f.set {
			continue
		}
		if err := write(filepath.Join(g.Path, f.file), f.value); err != nil {
			return fmt.Errorf("set %s = %s: %w", f.file, f.value, err)
		}
	}
	return nil
}

// FD opens the group directory for SysProcAttr.CgroupFD; the Group keeps
// it open until Close.
func (g *Group) FD() (int, error) {
	if g.fd >= 0 {
		return g.fd, nil
	}
	fd, err := unix.Open(g.Path, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open group %s: %w", g.Path, err)
	}
	g.fd = fd
	return fd, nil
}

// Close closes the group's descriptor and removes the group once it is
// empty (the kernel refuses while processes remain).
func (g *Group) Close() error {
	if g.fd >= 0 {
		unix.Close(g.fd)
		g.fd = -1
	}
	if err := os.Remove(g.Path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func write(path, value string) error {
	return os.WriteFile(path, []byte(value), 0o644)
}
