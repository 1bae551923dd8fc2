package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// readyRule is a parsed `ready` setting.
type readyRule struct {
	notify  bool
	network string // "tcp" or "unix" for a connect probe; "" with notify false: ready when spawned
	addr    string
}

func parseReady(s string) (readyRule, error) {
	switch {
	case s == "":
		return readyRule{}, nil
	case s == "notify":
		return readyRule{notify: true}, nil
	case strings.HasPrefix(s, "tcp:"):
		addr := s[len("tcp:"):]
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return readyRule{}, fmt.Errorf("ready %q: %w", s, err)
		}
		return readyRule{network: "tcp", addr: addr}, nil
	case strings.HasPrefix(s, "unix:") && len(s) > len("unix:"):
		return readyRule{network: "unix", addr: s[len("unix:"):]}, nil
	}
	return readyRule{}, fmt.Errorf("ready %q: want \"\", \"notify\", \"tcp:HOST:PORT\" or \"unix:/path\"", s)
}

// Why a readiness wait ended without the service being ready.
var (
	errExited  = errors.New("exited before it was ready")
	errStopped = errors.New("stop requested")
)

// Pauses between connect probes: short at first, because most services
// listen within milliseconds, growing so that a slow starter is not
// hammered.
const (
	probeFirstPause = 10 * time.Millisecond
	probeMaxPause   = 500 * time.Millisecond
	probeDialLimit  = time.Second
)

// waitDial returns nil once a connection to network/addr succeeds, errExited
// when the process is gone first (whatever answers then is not our
// service), errStopped when stop is closed first.
func waitDial(network, addr string, exited, stop <-chan struct{}) error {
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		// Ends a dial in progress the instant the wait is abandoned.
		defer close(watched)
		select {
		case <-exited:
		case <-stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	defer func() { cancel(); <-watched }()
	var d net.Dialer
	pause := probeFirstPause
	for {
		dctx, dcancel := context.WithTimeout(ctx, probeDialLimit)
		c, err := d.DialContext(dctx, network, addr)
		dcancel()
		if err == nil {
			_ = c.Close()
		}
		// Exit and stop win over a successful connect: whatever answers
		// after our process is gone is not our service.
		select {
		case <-exited:
			return errExited
		case <-stop:
			return errStopped
		default:
		}
		if err == nil {
			return nil
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-exited:
			t.Stop()
			return errExited
		case <-stop:
			t.Stop()
			return errStopped
		}
		pause = min(pause*2, probeMaxPause)
	}
}

// notifier is drover's end of the sd_notify protocol: a unixgram socket
// whose path the service finds in $NOTIFY_SOCKET, as under systemd, so that
// a service written for systemd's Type=notify runs unchanged. The socket
// lives in a fresh private directory per process start: only drover and
// the service's user can reach it, and a datagram left over from the
// previous process can never make the next one look ready.
type notifier struct {
	conn  *net.UnixConn
	dir   string
	path  string
	ready chan struct{} // closed on the first READY=1
	done  chan struct{} // closed when the reader has returned
}

// newNotifier creates the socket under base ("" is the system temporary
// directory) and, when the service runs as another user, hands the
// directory and socket to that user so that it may send.
func newNotifier(base string, cred *syscall.Credential) (*notifier, error) {
	dir, err := os.MkdirTemp(base, "notify-")
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	n := &notifier{dir: dir, path: filepath.Join(dir, "sock"), ready: make(chan struct{}), done: make(chan struct{})}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	if cred != nil {
		for _, p := range []string{dir, n.path} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				n.Close()
				return nil, fmt.Errorf("notify socket: %w", err)
			}
		}
	}
	go n.read()
	return n, nil
}

// read consumes datagrams for the life of the process. It keeps reading
// after READY=1 so that a service that also sends STATUS= or WATCHDOG=1
// never finds the socket gone.
func (n *notifier) read() {
	defer close(n.done)
	var once sync.Once
	buf := make([]byte, 4096)
	for {
		k, _, err := n.conn.ReadFromUnix(buf)
		if err != nil {
			return // closed
		}
		if hasReady(buf[:k]) {
			once.Do(func() { close(n.ready) })
		}
	}
}

// Close closes the socket, waits for the reader and removes the directory.
func (n *notifier) Close() {
	_ = n.conn.Close()
	<-n.done
	_ = os.RemoveAll(n.dir)
}

// hasReady reports whether a notification datagram holds the line READY=1
// (a datagram is newline-separated VAR=VALUE assignments).
func hasReady(msg []byte) bool {
	for line := range bytes.SplitSeq(msg, []byte("\n")) {
		if string(bytes.TrimRight(line, "\r")) == "READY=1" {
			return true
		}
	}
	return false
}
