package server

import (
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/drover-pool/drover/internal/config"
	"github.com/drover-pool/drover/internal/pool"
)

// watcher recycles pools when one of their recycle.watch files changes,
// like uWSGI's touch-reload. One inotify instance and one goroutine serve
// every pool; directories are watched rather than files, so that a file
// replaced by an editor (rename over it) or created later still counts.
type watcher struct {
	log *slog.Logger
	w   *fsnotify.Watcher
	wg  sync.WaitGroup

	mu       sync.Mutex              // guards the fields below
	files    map[string][]*pool.Pool // absolute file path → pools
	dirs     map[string]bool
	debounce map[*pool.Pool]*time.Timer
}

func newWatcher(log *slog.Logger) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w := &watcher{log: log, w: fw, files: map[string][]*pool.Pool{}, dirs: map[string]bool{}, debounce: map[*pool.Pool]*time.Timer{}}
	w.wg.Add(1)
	go w.loop()
	return w, nil
}

// watchFiles points the watcher at the recycle.watch files of cfg.
func (s *Server) watchFiles(cfg *config.Config, pools map[string]*pool.Pool) {
	if s.watch == nil {
		return
	}
	files := map[string][]*pool.Pool{}
	for name, pc := range cfg.Pools {
		for _, f := range pc.Recycle.Watch {
			abs, err := filepath.Abs(f)
			if err == nil {
				files[abs] = append(files[abs], pools[name])
			}
		}
	}
	s.watch.set(files)
}

func (w *watcher) set(files map[string][]*pool.Pool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.files = files
	want := map[string]bool{}
	for f := range files {
		want[filepath.Dir(f)] = true
	}
	for d := range want {
		if !w.dirs[d] {
			if err := w.w.Add(d); err != nil {
				w.log.Warn("recycle.watch: cannot watch", "dir", d, "err", err)
				continue
			}
			w.dirs[d] = true
		}
	}
	for d := range w.dirs {
		if !want[d] {
			_ = w.w.Remove(d)
			delete(w.dirs, d)
		}
	}
}

func (w *watcher) loop() {
	defer w.wg.Done()
	for {
		select {
		case ev, ok := <-w.w.Events:
			if !ok {
				return
			}
			if ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Chmod|fsnotify.Rename) == 0 {
				continue
			}
			w.mu.Lock()
			for _, p := range w.files[ev.Name] {
				w.trigger(p)
			}
			w.mu.Unlock()
		case err, ok := <-w.w.Errors:
			if !ok {
				return
			}
			w.log.Warn("recycle.watch", "err", err)
		}
	}
}

// trigger recycles p once for a burst of events (a touch is a create and
// a chmod; an editor's save is several).
func (w *watcher) trigger(p *pool.Pool) {
	if t := w.debounce[p]; t != nil {
		t.Stop()
	}
	w.debounce[p] = time.AfterFunc(100*time.Millisecond, func() {
		w.mu.Lock()
		delete(w.debounce, p)
		w.mu.Unlock()
		p.Recycle("watch")
	})
}

// Close stops watching.
func (w *watcher) Close() {
	w.w.Close()
	w.wg.Wait()
	w.mu.Lock()
	for _, t := range w.debounce {
		t.Stop()
	}
	w.mu.Unlock()
}
