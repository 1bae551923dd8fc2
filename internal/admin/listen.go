package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Listener is the running admin listener.
type Listener struct {
	srv    *http.Server
	ln     net.Listener
	path   string // the unix socket's path, removed on shutdown
	cancel context.CancelFunc
	done   chan struct{}
}

// Listen opens the admin address ("host:port" or "unix:/path") and serves
// h on it. A unix socket is created with mode 0600 before anyone can
// connect: it is bound under a temporary name, restricted, then renamed
// into place; a stale socket left by a previous run is replaced.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Listener, error) {
	l := &Listener{done: make(chan struct{})}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		ln, err := listenUnix(path)
		if err != nil {
			return nil, err
		}
		l.ln, l.path = ln, path
	} else {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		l.ln = ln
	}
	// Long polls and event streams watch their request's context, which
	// derives from this one: Shutdown cancels it so they end at once.
	base, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(l.done)
		if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener", "err", err)
		}
	}()
	return l, nil
}

func listenUnix(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process is listening there", path)
		}
		os.Remove(path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d.tmp", filepath.Base(path), os.Getpid()))
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, err
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	return ln, nil
}

// Addr is the listening address, in the config's syntax.
func (l *Listener) Addr() string {
	if l.path != "" {
		return "unix:" + l.path
	}
	return l.ln.Addr().String()
}

// Shutdown stops the listener: open streams end, requests in progress get
// until ctx ends to finish.
func (l *Listener) Shutdown(ctx context.Context) {
	l.cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		l.srv.Close()
	}
	<-l.done
	if l.path != "" {
		os.Remove(l.path)
	}
}
