package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTree lays out what a delegated cgroup v2 subtree looks like to
// drover: its own group with controllers it may hand down.
func fakeTree(t *testing.T, controllers string) (root, self string) {
	t.Helper()
	root = t.TempDir()
	base := filepath.Join(root, "system.slice", "drover.service")
	os.MkdirAll(base, 0o755)
	os.WriteFile(filepath.Join(root, ".fake-cgroup2"), nil, 0o644)
	os.WriteFile(filepath.Join(base, "cgroup.controllers"), []byte(controllers+"\n"), 0o644)
	os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), nil, 0o644)
	os.WriteFile(filepath.Join(base, "cgroup.procs"), []byte("4242\n"), 0o644)
	self = filepath.Join(t.TempDir(), "cgroup")
	os.WriteFile(self, []byte("0::/system.slice/drover.service\n"), 0o644)
	return root, self
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestNewGroupWritesLimits(t *testing.T) {
	root, self := fakeTree(t, "cpuset cpu io memory pids")
	h, err := DetectAt(root, self)
	if err != nil {
		t.Fatal(err)
	}
	g, err := h.NewGroup("tiles", Limits{Memory: 512 << 20, CPUPercent: 150, Pids: 64})
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(root, "system.slice", "drover.service")
	checks := map[string]string{
		filepath.Join(base, "drover", "cgroup.procs"):   "4242", // drover moved to a leaf
		filepath.Join(base, "cgroup.subtree_control"):   "+cpu +memory +pids",
		filepath.Join(base, "pool-tiles", "memory.max"): "536870912",
		filepath.Join(base, "pool-tiles", "cpu.max"):    "150000 100000",
		filepath.Join(base, "pool-tiles", "pids.max"):   "64",
	}
	for file, want := range checks {
		if got := read(t, file); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if g.Path != filepath.Join(base, "pool-tiles") {
		t.Errorf("group path %s", g.Path)
	}
	fd, err := g.FD()
	if err != nil || fd < 0 {
		t.Fatalf("FD: %d %v", fd, err)
	}
	g.Close()
}

func TestMissingController(t *testing.T) {
	root, self := fakeTree(t, "cpu pids")
	h, err := DetectAt(root, self)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.NewGroup("tiles", Limits{Memory: 1 << 30})
	var u *Unavailable
	if !errors.As(err, &u) || !strings.Contains(err.Error(), "memory controller is not delegated") || !strings.Contains(err.Error(), "Delegate=yes") {
		t.Fatalf("got %v, want the memory controller named and what to do", err)
	}
}

func TestNoV2Group(t *testing.T) {
	root, _ := fakeTree(t, "memory")
	self := filepath.Join(t.TempDir(), "cgroup")
	os.WriteFile(self, []byte("4:memory:/\n1:name=systemd:/\n"), 0o644)
	if _, err := DetectAt(root, self); err == nil || !strings.Contains(err.Error(), "no cgroup v2 group") {
		t.Fatalf("got %v", err)
	}
}

// TestRealKernel uses this machine's cgroup tree when one is delegated to
// the test; otherwise it says why it cannot run.
func TestRealKernel(t *testing.T) {
	h, err := Detect()
	if err != nil {
		t.Skipf("real cgroup v2 test cannot run on this machine: %v", err)
	}
	if err := h.Check(Limits{Memory: 64 << 20, Pids: 16}); err != nil {
		t.Skipf("real cgroup v2 test cannot run on this machine: %v", err)
	}
	t.Logf("cgroup v2 delegated at %s%s", h.Root, h.Base)
}
