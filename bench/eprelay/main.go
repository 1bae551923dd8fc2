// Command eprelay is bench/proxy.sh's second yardstick: what Go costs on
// this machine without the goroutine-per-connection model. It is a byte
// relay on epoll event loops, one per P, each on its own locked OS thread
// with its own SO_REUSEPORT listener, in the way nginx's workers run: each
// client gets its own upstream connection, and whatever one side sends is
// written to the other. It parses nothing, so it is correct only for a
// client that waits for each answer before it asks again (wrk does), and
// it closes a pair whose write comes up short rather than wait for room.
// It is not a product; drover's proxy is measured against it and against
// bench/minproxy to tell apart what drover's own work costs and what the
// runtime model costs.
//
//	eprelay LISTEN UPSTREAM        (both IPv4 host:port)
package main

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: eprelay LISTEN UPSTREAM")
		os.Exit(2)
	}
	listen, err := netip.ParseAddrPort(os.Args[1])
	must("listen address", err)
	upstream, err := netip.ParseAddrPort(os.Args[2])
	must("upstream address", err)
	up := &unix.SockaddrInet4{Port: int(upstream.Port()), Addr: upstream.Addr().As4()}
	for range runtime.GOMAXPROCS(0) {
		lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		must("socket", err)
		must("SO_REUSEADDR", unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
		must("SO_REUSEPORT", unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1))
		must("bind", unix.Bind(lfd, &unix.SockaddrInet4{Port: int(listen.Port()), Addr: listen.Addr().As4()}))
		must("listen", unix.Listen(lfd, 1024))
		go loop(lfd, up)
	}
	select {}
}

func must(what string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "eprelay: %s: %v\n", what, err)
		os.Exit(1)
	}
}

// loop serves the clients its listener accepts until the process ends.
func loop(lfd int, up unix.Sockaddr) {
	runtime.LockOSThread()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	must("epoll_create1", err)
	must("epoll_ctl", unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}))
	peer := map[int]int{} // each fd's other end
	events := make([]unix.EpollEvent, 128)
	buf := make([]byte, 64<<10)
	add := func(fd int) {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		_ = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)})
	}
	closePair := func(fd int) {
		p := peer[fd]
		for _, f := range []int{fd, p} {
			_ = unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, f, nil)
			_ = unix.Close(f)
			delete(peer, f)
		}
	}
	for {
		n, err := unix.EpollWait(ep, events, -1)
		if err == unix.EINTR {
			continue
		}
		must("epoll_wait", err)
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				for {
					cfd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
					if err != nil {
						break
					}
					// A blocking connect, once per client: the relay's
					// cost per request is what it is there to show.
					ufd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
					if err == nil {
						if err = unix.Connect(ufd, up); err == nil {
							err = unix.SetNonblock(ufd, true)
						}
						if err != nil {
							_ = unix.Close(ufd)
						}
					}
					if err != nil {
						_ = unix.Close(cfd)
						continue
					}
					peer[cfd], peer[ufd] = ufd, cfd
					add(cfd)
					add(ufd)
				}
				continue
			}
			p, ok := peer[fd]
			if !ok {
				continue
			}
			m, err := unix.Read(fd, buf)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if m <= 0 {
				closePair(fd)
				continue
			}
			if w, err := unix.Write(p, buf[:m]); err != nil || w < m {
				closePair(fd)
			}
		}
	}
}
