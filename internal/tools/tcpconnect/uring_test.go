package tcpconnect

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
)

// An IORING_OP_CONNECT makes no connect syscall; the kernel's TCP connect
// still moves the socket from CLOSE to SYN_SENT in the task that runs the
// request: the submitting thread, or (IOSQE_ASYNC) an io-wq worker thread
// of the same process, named "iou-wrk-TID" after the thread it serves.
func TestUringConnect(t *testing.T) {
	e2e.Require(t)
	for _, c := range []struct {
		host  string
		async bool
	}{{"127.0.0.1", false}, {"::1", false}, {"127.0.0.1", true}} {
		t.Run(fmt.Sprintf("%s/async=%v", c.host, c.async), func(t *testing.T) {
			server := e2e.Serve(t, c.host)
			family := unix.AF_INET
			if server.Addr().Is6() {
				family = unix.AF_INET6
			}
			fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			ring, err := e2e.NewRing(4)
			if err != nil {
				t.Fatal(err)
			}
			defer ring.Close()
			tr, err := Open(Config{LocalPort: true, Outcome: true}, e2e.Own())
			if err != nil {
				t.Fatal(err)
			}
			events := e2e.Collect(t, tr.Source)

			// The request runs on this thread (or its worker): keep it.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tid := unix.Gettid()
			sqe := ring.Connect(fd, server, 1)
			if c.async {
				sqe.Flags |= e2e.SQEAsync
			}
			cqe, err := ring.Do(sqe)
			if err != nil {
				t.Fatal(err)
			}
			if err := cqe.Err(); err != nil {
				t.Fatalf("io_uring connect: %v", err)
			}
			local := localAddr(t, fd)

			e := e2e.Wait(t, events, timeout, "the io_uring connect", func(e Event) bool { return e.Dport == server.Port() })
			comm := e2e.Comm(t)
			if c.async {
				comm = fmt.Sprintf("iou-wrk-%d", tid)
			}
			if e.PID != uint32(os.Getpid()) || e.Comm.String() != comm {
				t.Errorf("task: got pid %d comm %q, want %d %q", e.PID, e.Comm, os.Getpid(), comm)
			}
			if !c.async && e.TID != uint32(tid) {
				t.Errorf("task: got tid %d, want the submitting thread %d", e.TID, tid)
			}
			checkConnect(t, e, local, server)
			noMore(t, events, server.Port())
		})
	}
}

// An MPTCP connect (both peers IPPROTO_MPTCP) is a TCP connect of its
// first subflow: one event with the connection's endpoints, not two.
func TestMPTCPConnect(t *testing.T) {
	e2e.Require(t)
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			var lc net.ListenConfig
			lc.SetMultipathTCP(true)
			l, err := lc.Listen(context.Background(), "tcp", net.JoinHostPort(host, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
			server := l.Addr().(*net.TCPAddr).AddrPort()
			tr, err := Open(Config{LocalPort: true, Outcome: true}, e2e.Own())
			if err != nil {
				t.Fatal(err)
			}
			events := e2e.Collect(t, tr.Source)
			var d net.Dialer
			d.SetMultipathTCP(true)
			c, err := d.Dial("tcp", server.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if mp, err := c.(*net.TCPConn).MultipathTCP(); err != nil || !mp {
				t.Skipf("the connection fell back to TCP (MPTCP %v, %v): nothing MPTCP to test", mp, err)
			}
			local := c.LocalAddr().(*net.TCPAddr).AddrPort()
			e := e2e.Wait(t, events, timeout, "the MPTCP connect", func(e Event) bool { return e.Dport == server.Port() })
			e2e.CheckTask(t, &e.Task)
			checkConnect(t, e, local, server)
			noMore(t, events, server.Port())
		})
	}
}

func localAddr(t *testing.T, fd int) netip.AddrPort {
	t.Helper()
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
	}
	t.Fatalf("getsockname: %T", sa)
	return netip.AddrPort{}
}

func checkConnect(t *testing.T, e Event, local, server netip.AddrPort) {
	t.Helper()
	wantFamily := uint8(4)
	if server.Addr().Is6() {
		wantFamily = 6
	}
	if e.Family != wantFamily || e.Saddr != local.Addr() || e.Sport != local.Port() ||
		e.Daddr != server.Addr() || e.Dport != server.Port() {
		t.Errorf("got %d %v:%d -> %v:%d, want %d %v -> %v", e.Family, e.Saddr, e.Sport, e.Daddr, e.Dport, wantFamily, local, server)
	}
	if e.Outcome != Established {
		t.Errorf("outcome %v, want established", e.Outcome)
	}
}

// noMore fails if another connect to port arrives soon: each connection
// must be reported once.
func noMore(t *testing.T, events <-chan Event, port uint16) {
	t.Helper()
	deadline := time.After(200 * time.Millisecond)
	for {
		select {
		case e := <-events:
			if e.Dport == port {
				t.Errorf("connect reported twice: %+v", e)
			}
		case <-deadline:
			return
		}
	}
}
