package fastcgi

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// This file has a FastCGI application written for the tests, byte by
// byte, independent of the client's encoder, and a net.Conn that plays a
// canned response.

type record struct {
	typ     byte
	id      uint16
	content []byte
	padding int
}

func readRecord(r *bufio.Reader) (record, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return record{}, err
	}
	if h[0] != 1 {
		return record{}, fmt.Errorf("version %d", h[0])
	}
	rec := record{typ: h[1], id: binary.BigEndian.Uint16(h[2:]), padding: int(h[6])}
	rec.content = make([]byte, binary.BigEndian.Uint16(h[4:]))
	if _, err := io.ReadFull(r, rec.content); err != nil {
		return record{}, err
	}
	pad := make([]byte, rec.padding)
	if _, err := io.ReadFull(r, pad); err != nil {
		return record{}, err
	}
	if !bytes.Equal(pad, make([]byte, rec.padding)) {
		return record{}, fmt.Errorf("padding %x is not zero", pad)
	}
	return rec, nil
}

// decodePairs decodes the name-value pairs of one record on its own, as
// php-cgi does.
func decodePairs(b []byte, into map[string]string) error {
	readLen := func() (int, error) {
		if len(b) == 0 {
			return 0, errors.New("truncated pair")
		}
		if b[0] < 128 {
			n := int(b[0])
			b = b[1:]
			return n, nil
		}
		if len(b) < 4 {
			return 0, errors.New("truncated pair length")
		}
		n := int(binary.BigEndian.Uint32(b) &^ (1 << 31))
		b = b[4:]
		return n, nil
	}
	for len(b) > 0 {
		nl, err := readLen()
		if err != nil {
			return err
		}
		vl, err := readLen()
		if err != nil {
			return err
		}
		if nl+vl > len(b) {
			return errors.New("pair straddles records")
		}
		into[string(b[:nl])] = string(b[nl : nl+vl])
		b = b[nl+vl:]
	}
	return nil
}

// rawRequest is one request as the fake application received it.
type rawRequest struct {
	keep         bool
	params       map[string]string
	paramRecords int
	stdin        []byte
	stdinRecords []int // content sizes
}

// readRawRequest reads BEGIN_REQUEST, PARAMS and the whole of STDIN.
func readRawRequest(r *bufio.Reader) (*rawRequest, error) {
	rec, err := readRecord(r)
	if err != nil {
		return nil, err
	}
	if rec.typ != typeBeginRequest || rec.id != 1 || len(rec.content) != 8 {
		return nil, fmt.Errorf("first record: type %d id %d len %d", rec.typ, rec.id, len(rec.content))
	}
	if role := binary.BigEndian.Uint16(rec.content); role != 1 {
		return nil, fmt.Errorf("role %d", role)
	}
	req := &rawRequest{keep: rec.content[2]&1 != 0, params: map[string]string{}}
	for params := true; ; {
		rec, err := readRecord(r)
		if err != nil {
			return nil, err
		}
		if rec.id != 1 {
			return nil, fmt.Errorf("request id %d", rec.id)
		}
		switch {
		case params && rec.typ == typeParams:
			if len(rec.content) == 0 {
				params = false
				continue
			}
			req.paramRecords++
			if err := decodePairs(rec.content, req.params); err != nil {
				return nil, err
			}
		case !params && rec.typ == typeStdin:
			req.stdinRecords = append(req.stdinRecords, len(rec.content))
			if len(rec.content) == 0 {
				return req, nil
			}
			req.stdin = append(req.stdin, rec.content...)
		default:
			return nil, fmt.Errorf("unexpected record type %d (params=%v)", rec.typ, params)
		}
	}
}

// rawApp serves canned responses: respond gets each request, fully read,
// and writes the answer.
func rawApp(t *testing.T, respond func(req *rawRequest, w io.Writer)) *app {
	t.Helper()
	l, sock := listenUnix(t)
	a := &app{sock: sock}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := readRawRequest(br)
					if err != nil {
						if err != io.EOF {
							t.Errorf("fake application: %v", err)
						}
						return
					}
					respond(req, c)
					if !req.keep {
						return
					}
				}
			}()
		}
	}()
	return a
}

// rec encodes a record for canned responses; it is independent of the
// client's encoder and pads by pad bytes.
func rec(typ byte, id uint16, content string, pad int) []byte {
	b := []byte{1, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(pad), 0}
	b = append(b, content...)
	return append(b, make([]byte, pad)...)
}

func stdout(s string) []byte { return rec(typeStdout, 1, s, 0) }

func stderrRec(s string) []byte { return rec(typeStderr, 1, s, 0) }

func endRequest(appStatus uint32, protocolStatus byte) []byte {
	var b [8]byte
	binary.BigEndian.PutUint32(b[:], appStatus)
	b[4] = protocolStatus
	return rec(typeEndRequest, 1, string(b[:]), 0)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// fakeConn is a net.Conn whose peer sends data and then closes; what is
// written to it is kept.
type fakeConn struct {
	r *bytes.Reader
	// awaitRequest makes reads wait until a whole request, up to the end
	// of FCGI_STDIN, has been written, as an application that reads all
	// of its input before it answers.
	awaitRequest bool

	mu       sync.Mutex
	cond     sync.Cond
	written  bytes.Buffer
	requests int // writes that ended FCGI_STDIN
	closed   bool
	writeErr error // when set, writes fail with it
}

var endOfStdin = []byte{1, typeStdin, 0, 1, 0, 0, 0, 0}

func newFakeConn(data []byte) *fakeConn {
	c := &fakeConn{r: bytes.NewReader(data)}
	c.cond.L = &c.mu
	return c
}

func (c *fakeConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.awaitRequest && c.requests == 0 && !c.closed {
		c.cond.Wait()
	}
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}

func (c *fakeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.writeErr != nil {
		return 0, c.writeErr
	}
	if bytes.HasSuffix(p, endOfStdin) {
		c.requests++
		c.cond.Broadcast()
	}
	return c.written.Write(p)
}

func (c *fakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.cond.Broadcast()
	return nil
}

func (c *fakeConn) LocalAddr() net.Addr                { return &net.UnixAddr{Name: "fake", Net: "unix"} }
func (c *fakeConn) RemoteAddr() net.Addr               { return &net.UnixAddr{Name: "fake", Net: "unix"} }
func (c *fakeConn) SetDeadline(t time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(t time.Time) error { return nil }
