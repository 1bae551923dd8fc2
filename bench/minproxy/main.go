// Command minproxy is the benchmark's yardstick for what any proxy
// written in Go costs on the machine: one goroutine per client
// connection, a dedicated upstream connection for each, and no work
// beyond finding the end of each head and copying Content-Length bodies.
// It has no pool, no routing, no timeouts and no header rewriting, and
// it serves nothing but bench/proxy.sh's hello worker; it is not a
// product. bench/proxy.sh prints drover's req/s against it as well as
// against nginx: the gap to minproxy is drover's own work, the gap from
// minproxy to nginx is Go's runtime on this machine.
//
//	minproxy LISTEN UPSTREAM
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: minproxy LISTEN UPSTREAM")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "minproxy:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "minproxy:", err)
			os.Exit(1)
		}
		go serve(c, os.Args[2])
	}
}

func serve(c net.Conn, upstream string) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	cr, cw := bufio.NewReader(c), bufio.NewWriter(c)
	ur, uw := bufio.NewReader(u), bufio.NewWriter(u)
	for {
		if !relay(cr, uw) || !relay(ur, cw) {
			return
		}
	}
}

// relay copies one message (head and Content-Length body) from r to w.
func relay(r *bufio.Reader, w *bufio.Writer) bool {
	length := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return false
		}
		w.Write(line)
		if len(line) <= 2 {
			break
		}
		if name, value, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Content-Length")) {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(value)))
		}
	}
	if _, err := io.CopyN(w, r, int64(length)); err != nil {
		return false
	}
	return w.Flush() == nil
}
