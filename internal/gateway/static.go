package gateway

import (
	"fmt"
	"net/http"
	"os"
	"path"
	"strings"
)

// Static serves a directory. It is confined with os.Root, so neither ".."
// nor a symlink can reach outside the directory, and it lists directories
// only when asked to.
type Static struct {
	root    *os.Root
	files   http.Handler
	listing bool
}

// NewStatic opens dir for serving.
func NewStatic(dir string, listing bool) (*Static, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("static directory: %w", err)
	}
	return &Static{root: root, files: http.FileServerFS(root.FS()), listing: listing}, nil
}

func (s *Static) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !s.listing {
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		if name == "" {
			name = "."
		}
		if fi, err := s.root.Stat(name); err == nil && fi.IsDir() {
			if _, err := s.root.Stat(path.Join(name, "index.html")); err != nil {
				http.NotFound(w, r)
				return
			}
		}
	}
	s.files.ServeHTTP(w, r)
}

// Close releases the directory.
func (s *Static) Close() error { return s.root.Close() }
