package backend

import (
	"context"
	"fmt"
	"net"
	"os"
)

// fdSocket is a listening unix socket that drover creates and hands to an
// instance as fd 0, as spawn-fcgi does: the instance is listening before
// its first instruction, so php-cgi, libfcgi programs such as mapserv and
// drover's WSGI shim run unchanged, and readiness is not a guess.
type fdSocket struct {
	path string
	file *os.File // drover's copy of the listening fd; closed by Started
}

func newFDSocket(path string) (*fdSocket, error) {
	_ = os.Remove(path)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	// The socket file must outlive drover's copy of the listener: the
	// instance owns it from now on.
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	l.Close()
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return &fdSocket{path: path, file: f}, nil
}

// dial connects to the instance.
func (s *fdSocket) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", s.path)
}

// handed is called once the child holds its own copy of the socket.
func (s *fdSocket) handed() {
	if s.file != nil {
		s.file.Close()
		s.file = nil
	}
}

func (s *fdSocket) remove() error {
	s.handed()
	if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
