// Package python carries drover's WSGI shim, drover_wsgi.py, inside the
// drover binary.
//
// Pools of kind "wsgi" run the shim under the pool's own interpreter, so it
// is plain Python 3 using only the standard library: nothing has to be
// installed into a user's virtualenv. drover writes it out with WriteShim at
// start-up and runs it as
//
//	python3 drover_wsgi.py --app module:callable [--pythonpath P]... [--dir D]
//
// with a listening unix socket as fd 0 and DROVER_READY_FD naming a pipe the
// shim writes "READY\n" to once the application imported. The request and
// response wire format is documented in the shim itself and in package
// internal/backend/uwsgi, whose Transport (with KeepAlive) speaks it.
package python

import (
	"bytes"
	_ "embed" // for //go:embed
	"fmt"
	"os"
	"path/filepath"
)

// Shim is the source of drover_wsgi.py. It is embedded rather than
// installed next to the binary so that the shim drover runs always matches
// the Go side of its wire format.
//
//go:embed drover_wsgi.py
var Shim []byte

// ShimName is the file name WriteShim writes the shim under.
const ShimName = "drover_wsgi.py"

// WriteShim writes Shim to dir/drover_wsgi.py (creating dir if needed) and
// returns that path. It is idempotent: a file that already holds exactly Shim
// is left alone, and otherwise the new content is written to a temporary
// file and renamed over the old one, so instances starting concurrently
// never run a half-written shim.
func WriteShim(dir string) (path string, err error) {
	path = filepath.Join(dir, ShimName)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, Shim) {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("python: create shim directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".drover_wsgi-*.py")
	if err != nil {
		return "", fmt.Errorf("python: write shim: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(Shim); err == nil {
		// Readable by instances that run as another user.
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("python: write shim: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("python: install shim: %w", err)
	}
	return path, nil
}
