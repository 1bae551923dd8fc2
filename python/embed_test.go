package python

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteShim(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runtime")
	path, err := WriteShim(dir)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, ShimName) {
		t.Fatalf("path %q", path)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, Shim) {
		t.Fatalf("content differs (%v)", err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}

	// Unchanged content: the file is left alone.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(path, old, old)
	if _, err := WriteShim(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); !fi.ModTime().Equal(old) {
		t.Error("identical shim rewritten")
	}

	// Stale content is replaced, and no temporary file is left behind.
	os.WriteFile(path, []byte("stale"), 0o600)
	if _, err := WriteShim(dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, Shim) {
		t.Error("stale shim not replaced")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want 1", len(entries))
	}
}

func TestShimCompiles(t *testing.T) {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		bin, err := exec.LookPath(py)
		if err != nil {
			continue
		}
		path, err := WriteShim(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())", path).CombinedOutput()
		if err != nil {
			t.Errorf("%s cannot parse the shim: %v\n%s", bin, err, out)
		}
		out, err = exec.Command(bin, path, "--help").CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("Wire format")) {
			t.Errorf("%s %s --help: %v\n%s", bin, path, err, out)
		}
	}
}
