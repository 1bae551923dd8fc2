package admin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// GeneratedTokenFile is the name, in server.runtime_dir, of the token
// drover generates when the admin listener is on loopback TCP and no token
// is configured. The CLI reads it from there.
const GeneratedTokenFile = "admin.token"

// TokenConfig is where the admin token comes from.
type TokenConfig struct {
	Addr       string // server.admin
	File       string // server.admin_token_file
	Env        string // $DROVER_ADMIN_TOKEN; overrides File
	RuntimeDir string // server.runtime_dir, for a generated token
}

// Token is the admin token in force.
type Token struct {
	// Value is the token; "" on a unix socket without a configured token
	// means no token is required.
	Value string
	// Generated is the file a generated token was written to, "" when
	// the token came from the configuration.
	Generated string
}

// IsUnix reports whether an admin address is a unix socket.
func IsUnix(addr string) bool { return strings.HasPrefix(addr, "unix:") }

// ResolveToken decides the admin token:
//
//   - DROVER_ADMIN_TOKEN, else the contents of admin_token_file;
//   - on a unix socket none is needed: the socket is 0600, so only
//     drover's user (and root) can connect, and a token would add nothing;
//   - on loopback TCP without one, a random token is generated and
//     written to runtime_dir/admin.token (0600): every local user could
//     otherwise reach the API, and the CLI of drover's own user finds it
//     there without setup;
//   - on any other TCP address without one, it is an error: the API
//     would be open to the network.
func ResolveToken(c TokenConfig) (Token, error) {
	if IsUnix(c.Addr) {
		return Token{}, nil
	}
	if v := strings.TrimSpace(c.Env); v != "" {
		return Token{Value: v}, nil
	}
	if c.File != "" {
		b, err := os.ReadFile(c.File)
		if err != nil {
			return Token{}, fmt.Errorf("admin_token_file: %w", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return Token{}, fmt.Errorf("admin_token_file %s is empty", c.File)
		}
		return Token{Value: v}, nil
	}
	if !IsLoopback(c.Addr) {
		return Token{}, fmt.Errorf("%q is not a loopback address and no admin token is set: set server.admin_token_file or DROVER_ADMIN_TOKEN, or listen on 127.0.0.1 or a unix socket", c.Addr)
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails on Linux
	v := hex.EncodeToString(b)
	file := filepath.Join(c.RuntimeDir, GeneratedTokenFile)
	if err := writeSecret(file, v+"\n"); err != nil {
		return Token{}, fmt.Errorf("writing generated admin token: %w", err)
	}
	return Token{Value: v, Generated: file}, nil
}

// writeSecret writes a 0600 file atomically, so that a reader never sees
// a half-written token and the mode is right from the first byte.
func writeSecret(path, data string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".admin-token-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// IsLoopback reports whether a TCP admin address only accepts local
// connections. An empty host (all interfaces) or a host name other than
// localhost is not loopback: a name may resolve to anything.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// authorize checks an API call's origin and token.
func (h *Handler) authorize(r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := sameOrigin(r); err != nil {
			return err
		}
	}
	if h.o.Token == "" {
		return nil
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return errorf(http.StatusUnauthorized, "missing token: send Authorization: Bearer TOKEN")
	}
	got, found := strings.CutPrefix(auth, "Bearer ")
	if !found || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(h.o.Token)) != 1 {
		return errorf(http.StatusUnauthorized, "invalid token")
	}
	return nil
}

// sameOrigin refuses a state-changing request sent by a page of another
// origin. Browsers always send Origin on such requests; command-line
// clients send none and are judged by their token alone.
func sameOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return &httpError{Code: http.StatusForbidden, Msg: "cross-origin request refused: Origin " + origin + " is not this admin listener"}
	}
	return nil
}
