// Command sampleapp is a misbehaving-on-request HTTP worker for drover's
// tests and demo. It listens where drover tells it (DROVER_SOCKET, else
// PORT, else -listen) and can be told, per request, to sleep, hang, crash,
// leak memory, spawn a child, or report its pid, environment and limits.
//
// Start-up behaviour comes from the environment:
//
//	SAMPLE_STARTUP_DELAY=1s   wait before listening (slow start)
//	SAMPLE_CRASH_AT_START=1   exit 3 at once (crash loop)
//	SAMPLE_CRASH_IF_EXISTS=F  exit 3 at once while file F exists
//	SAMPLE_NEVER_READY=1      never listen
//	SAMPLE_IGNORE_TERM=1      ignore SIGTERM
//	SAMPLE_LISTEN=tcp|unix    force one of the two addresses
//	SAMPLE_SLEEP_PARAM=ms     "/" sleeps ?ms= milliseconds and answers its pid
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	leaked   [][]byte
	leakMu   sync.Mutex
	frozen   atomic.Bool
	requests atomic.Int64
)

func main() {
	listenFlag := flag.String("listen", "127.0.0.1:8000", "address when drover gives none")
	flag.Parse()
	if d, err := time.ParseDuration(os.Getenv("SAMPLE_STARTUP_DELAY")); err == nil {
		time.Sleep(d)
	}
	if f := os.Getenv("SAMPLE_CRASH_IF_EXISTS"); f != "" {
		if _, err := os.Stat(f); err == nil {
			fmt.Fprintln(os.Stderr, "sampleapp: crashing at start:", f, "exists")
			os.Exit(3)
		}
	}
	if os.Getenv("SAMPLE_CRASH_AT_START") != "" {
		fmt.Fprintln(os.Stderr, "sampleapp: crashing at start as asked")
		os.Exit(3)
	}
	if os.Getenv("SAMPLE_IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM)
	}
	if os.Getenv("SAMPLE_NEVER_READY") != "" {
		select {}
	}
	network, addr := "tcp", *listenFlag
	if s := os.Getenv("DROVER_SOCKET"); s != "" && os.Getenv("SAMPLE_LISTEN") != "tcp" {
		network, addr = "unix", s
	} else if p := os.Getenv("PORT"); p != "" {
		addr = "127.0.0.1:" + p
	}
	l, err := net.Listen(network, addr)
	if err != nil {
		log.Fatalf("sampleapp: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(handle)}
	log.Fatal(srv.Serve(l))
}

func handle(w http.ResponseWriter, r *http.Request) {
	seq := requests.Add(1)
	q := r.URL.Query()
	pid := strconv.Itoa(os.Getpid())
	w.Header().Set("X-Pid", pid)
	switch r.URL.Path {
	case "/", "/hello":
		if ms := q.Get(os.Getenv("SAMPLE_SLEEP_PARAM")); ms != "" {
			// The pooling test's common protocol across kinds: sleep
			// ?ms= milliseconds, answer the pid.
			n, _ := strconv.Atoi(ms)
			time.Sleep(time.Duration(n) * time.Millisecond)
			io.WriteString(w, pid+"\n")
			return
		}
		io.WriteString(w, "hello\n")
	case "/pid":
		io.WriteString(w, pid+"\n")
	case "/sleep":
		d, _ := time.ParseDuration(q.Get("d"))
		if m := q.Get("mark"); m != "" {
			// Tell the test this request has reached the instance.
			os.WriteFile(m, []byte(pid), 0o644)
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		io.WriteString(w, pid+"\n")
	case "/hang":
		select {}
	case "/crash":
		os.Exit(3)
	case "/spawn":
		// A grandchild that would outlive a careless supervisor.
		cmd := exec.Command("sleep", "1000")
		if err := cmd.Start(); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d\n", cmd.Process.Pid)
		if q.Get("then") == "hang" {
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			select {}
		}
	case "/env":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(os.Environ())
	case "/headers":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"host": r.Host, "headers": r.Header, "remote": r.RemoteAddr, "uri": r.RequestURI})
	case "/limits":
		b, _ := os.ReadFile("/proc/self/limits")
		w.Write(b)
	case "/alloc":
		// Touch mb MiB; with RLIMIT_AS in force the allocation fails.
		mb, _ := strconv.Atoi(q.Get("mb"))
		b, err := syscall.Mmap(-1, 0, mb<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			http.Error(w, "alloc failed: "+err.Error(), http.StatusInsufficientStorage)
			return
		}
		syscall.Munmap(b)
		io.WriteString(w, "allocated\n")
	case "/grow":
		mb, _ := strconv.Atoi(q.Get("mb"))
		b := make([]byte, mb<<20)
		for i := range b {
			b[i] = byte(i)
		}
		leakMu.Lock()
		leaked = append(leaked, b)
		leakMu.Unlock()
		io.WriteString(w, pid+"\n")
	case "/burn":
		// Spin on a CPU for d.
		d, _ := time.ParseDuration(q.Get("d"))
		end := time.Now().Add(d)
		x := 0
		for time.Now().Before(end) {
			x++
		}
		fmt.Fprintf(w, "%s %d\n", pid, x%2)
	case "/freeze":
		// From now on this instance stops answering (health pings too).
		frozen.Store(true)
		io.WriteString(w, "frozen\n")
	case "/health":
		if frozen.Load() {
			select {}
		}
		io.WriteString(w, "ok\n")
	case "/upload":
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "%d %s\n", n, hex.EncodeToString(h.Sum(nil)))
	case "/download":
		// size bytes of a repeating pattern, streamed.
		size, _ := strconv.ParseInt(q.Get("size"), 10, 64)
		if q.Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i)
		}
		for size > 0 {
			n := min(int64(len(buf)), size)
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			size -= n
		}
	case "/stream":
		// n lines, one every d, flushed as produced.
		n, _ := strconv.Atoi(q.Get("n"))
		d, _ := time.ParseDuration(q.Get("d"))
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "line %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(d)
		}
	case "/trailers":
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "body\n")
		w.Header().Set("X-Checksum", "abc123")
	case "/ws":
		upgrade(w, r)
	case "/untilclose", "/garbage":
		// An answer whose body ends with the connection (HTTP/1.0
		// style), or one that is not HTTP at all.
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		if r.URL.Path == "/garbage" {
			brw.WriteString("NOT HTTP AT ALL\r\n\r\n")
		} else {
			n, _ := strconv.Atoi(q.Get("n"))
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Pid: " + pid + "\r\n\r\n")
			brw.WriteString(strings.Repeat("x", n))
		}
		brw.Flush()
		conn.Close()
	case "/seq":
		// The order in which this instance began serving requests.
		fmt.Fprintf(w, "%d\n", seq)
	case "/count":
		fmt.Fprintf(w, "%d\n", requests.Load())
	default:
		http.NotFound(w, r)
	}
}

// upgrade switches to a line echo protocol, enough to show that drover
// passes Upgrade through.
func upgrade(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "echo") {
		http.Error(w, "want Upgrade: echo", 400)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	brw.Flush()
	sc := bufio.NewScanner(brw)
	for sc.Scan() {
		fmt.Fprintf(conn, "echo: %s\n", sc.Text())
	}
}
