package tcpaccept

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tool"
)

const ipprotoMPTCP = 262 // IPPROTO_MPTCP

// listenRaw returns a listening socket of protocol proto (0: TCP, or
// IPPROTO_MPTCP) on host, port chosen by the kernel.
func listenRaw(t *testing.T, host string, proto int) (int, netip.AddrPort) {
	t.Helper()
	addr := netip.MustParseAddr(host)
	var family int
	var sa unix.Sockaddr
	if addr.Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Addr: addr.As4()}
	} else {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Addr: addr.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		if proto == ipprotoMPTCP && (errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.ENOPROTOOPT)) {
			t.Skipf("this kernel has no MPTCP (or net.mptcp.enabled=0): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, sa); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 16); err != nil {
		t.Fatal(err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	switch got := got.(type) {
	case *unix.SockaddrInet4:
		return fd, netip.AddrPortFrom(addr, uint16(got.Port))
	case *unix.SockaddrInet6:
		return fd, netip.AddrPortFrom(addr, uint16(got.Port))
	}
	t.Fatalf("getsockname: %T", got)
	return 0, netip.AddrPort{}
}

func newRing(t *testing.T) *e2e.Ring {
	t.Helper()
	r, err := e2e.NewRing(8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// checkUringTask checks the task of an accept that io_uring completed: this
// process, on the submitting thread tid or in one of the worker threads
// io_uring made for that thread ("iou-wrk-TID"), whose name the event
// carries.
func checkUringTask(t *testing.T, e Event, tid int, worker bool) {
	t.Helper()
	want := e2e.Comm(t)
	if worker {
		want = fmt.Sprintf("iou-wrk-%d", tid)
	}
	if e.PID != uint32(os.Getpid()) || e.Comm.String() != want {
		t.Errorf("task: got pid %d comm %q, want %d %q", e.PID, e.Comm, os.Getpid(), want)
	}
	if !worker && e.TID != uint32(tid) {
		t.Errorf("task: got tid %d, want the submitting thread %d", e.TID, tid)
	}
}

// dial connects to server over TCP or MPTCP, closes, and returns the
// client's address.
func dial(t *testing.T, server netip.AddrPort, mptcp bool) netip.AddrPort {
	t.Helper()
	var d net.Dialer
	d.SetMultipathTCP(mptcp)
	c, err := d.Dial("tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.TCPAddr).AddrPort()
}

// An IORING_OP_ACCEPT makes no accept syscall; each way io_uring can run it
// must still give one event with the accepting process and the
// connection's endpoints.
func TestUringAccept(t *testing.T) {
	e2e.Require(t)
	cases := []struct {
		name   string
		host   string
		proto  int
		queued bool // the connection waits in the backlog before the accept: done inline
		sqe    func(*e2e.SQE)
		// Done by an io-wq worker thread: IOSQE_ASYNC with a connection
		// waiting (without one the worker arms a poll, and task work on the
		// submitting thread finishes the accept).
		worker bool
		direct bool // installed as a direct descriptor (fixed-file slot)
	}{
		{name: "armed", host: "127.0.0.1"}, // no connection yet: poll, then task work
		{name: "queued", host: "::1", queued: true},
		{name: "async", host: "127.0.0.1", queued: true, sqe: func(s *e2e.SQE) { s.Flags |= e2e.SQEAsync }, worker: true},
		// No SOCK_CLOEXEC: a direct descriptor is in no fd table.
		{name: "direct", host: "::1", sqe: func(s *e2e.SQE) { s.FileIndex, s.OpFlags = e2e.FileIndexAlloc, 0 }, direct: true},
		{name: "mptcp", host: "127.0.0.1", proto: ipprotoMPTCP},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lfd, server := listenRaw(t, c.host, c.proto)
			ring := newRing(t)
			if c.direct {
				if err := ring.RegisterSparseFiles(4); err != nil {
					t.Fatal(err)
				}
			}
			tr, err := Open(Config{}, e2e.Own())
			if err != nil {
				t.Fatal(err)
			}
			events := e2e.Collect(t, tr)
			// Task work runs on the submitting thread: keep it ours.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tid := unix.Gettid()
			var client netip.AddrPort
			if c.queued {
				client = dial(t, server, c.proto == ipprotoMPTCP)
			}
			sqe := ring.Accept(lfd, 1)
			if c.sqe != nil {
				c.sqe(&sqe)
			}
			if err := ring.Submit(sqe); err != nil {
				t.Fatal(err)
			}
			if !c.queued {
				client = dial(t, server, c.proto == ipprotoMPTCP)
			}
			cqe, err := ring.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if err := cqe.Err(); err != nil {
				t.Fatalf("io_uring accept: %v", err)
			}
			if !c.direct {
				if c.proto != 0 {
					checkProtocol(t, int(cqe.Res), c.proto)
				}
				unix.Close(int(cqe.Res))
			}
			e := e2e.Wait(t, events, timeout, "the io_uring accept", func(e Event) bool { return e.Lport == server.Port() })
			checkEndpoints(t, e, server, client)
			checkUringTask(t, e, tid, c.worker)
			noMore(t, events, server.Port())
			checkForgotten(t, tr)
		})
	}
}

// A multishot accept posts a completion per connection without its request
// (io_uring_complete's req is NULL for all but the last).
func TestUringMultishotAccept(t *testing.T) {
	e2e.Require(t)
	lfd, server := listenRaw(t, "127.0.0.1", 0)
	ring := newRing(t)
	tr, err := Open(Config{}, e2e.Own())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr)
	sqe := ring.Accept(lfd, 7)
	sqe.Ioprio = e2e.AcceptMultishot
	if err := ring.Submit(sqe); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		client := e2e.Dial(t, server)
		cqe, err := ring.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if err := cqe.Err(); err != nil || cqe.Flags&e2e.CQEFMore == 0 {
			t.Fatalf("connection %d: completion %+v (%v), want a new fd and more to come", i, cqe, err)
		}
		unix.Close(int(cqe.Res))
		e := e2e.Wait(t, events, timeout, "the multishot accept", func(e Event) bool { return e.Lport == server.Port() })
		checkAccept(t, e, server, client)
	}
	noMore(t, events, server.Port())
	// Closing the ring cancels the accept: its last completion.
	ring.Close()
	checkForgotten(t, tr)
}

// checkForgotten checks that no io_uring accept is left in the table of
// accepts in flight once they have all completed: entries left behind
// would fill it and end as evictions (pending_partial).
func checkForgotten(t *testing.T, tr *tool.Source[Event]) {
	t.Helper()
	m := tr.Coll.Maps[tcpacceptMapUringAccepts]
	deadline := time.Now().Add(2 * time.Second)
	for {
		var k tcpacceptUringKey
		err := m.NextKey(nil, &k)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("accept %+v still in flight in the table", k)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkProtocol checks that fd is a socket of protocol proto.
func checkProtocol(t *testing.T, fd, proto int) {
	t.Helper()
	got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil || got != proto {
		t.Fatalf("accepted socket of protocol %d (%v), want %d", got, err, proto)
	}
}

// A server arms its accepts once, at start: accepts armed before tracing
// began must be seen, multishot ones (whose completions carry no request)
// included.
func TestUringAcceptArmedBeforeStart(t *testing.T) {
	e2e.Require(t)
	for _, multishot := range []bool{false, true} {
		t.Run(fmt.Sprintf("multishot=%v", multishot), func(t *testing.T) {
			lfd, server := listenRaw(t, "127.0.0.1", 0)
			ring := newRing(t)
			sqe := ring.Accept(lfd, 3)
			if multishot {
				sqe.Ioprio = e2e.AcceptMultishot
				// One connection before tracing: the accept has run and
				// waits, armed, for the next.
				if err := ring.Submit(sqe); err != nil {
					t.Fatal(err)
				}
				dial(t, server, false)
				cqe, err := ring.Wait()
				if err != nil || cqe.Err() != nil {
					t.Fatalf("first accept: %+v %v", cqe, err)
				}
				unix.Close(int(cqe.Res))
			} else if err := ring.Submit(sqe); err != nil {
				t.Fatal(err)
			}
			tr, err := Open(Config{}, e2e.Own())
			if err != nil {
				t.Fatal(err)
			}
			events := e2e.Collect(t, tr)
			n := 1
			if multishot {
				n = 2
			}
			for range n {
				client := dial(t, server, false)
				cqe, err := ring.Wait()
				if err != nil || cqe.Err() != nil {
					t.Fatalf("accept: %+v %v", cqe, err)
				}
				unix.Close(int(cqe.Res))
				e := e2e.Wait(t, events, timeout, "the accept armed before tracing", func(e Event) bool { return e.Lport == server.Port() })
				checkEndpoints(t, e, server, client)
			}
			noMore(t, events, server.Port())
			ring.Close()
			checkForgotten(t, tr)
		})
	}
}

// noMore fails if another accept on port arrives soon: each connection
// must be reported once.
func noMore(t *testing.T, events <-chan Event, port uint16) {
	t.Helper()
	deadline := time.After(200 * time.Millisecond)
	for {
		select {
		case e := <-events:
			if e.Lport == port {
				t.Errorf("accept reported twice: %+v", e)
			}
		case <-deadline:
			return
		}
	}
}

// An MPTCP accept returns an MPTCP socket (sk_protocol IPPROTO_MPTCP), with
// the connection's addresses; its first TCP subflow must not be reported
// as a second accept.
func TestMPTCPAccept(t *testing.T) {
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
			server := l.Addr().(*net.TCPAddr).AddrPort()
			tr, err := Open(Config{}, e2e.Own())
			if err != nil {
				t.Fatal(err)
			}
			events := e2e.Collect(t, tr)
			var d net.Dialer
			d.SetMultipathTCP(true)
			c, err := d.Dial("tcp", server.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			client := c.LocalAddr().(*net.TCPAddr).AddrPort()
			a, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			if mp, err := a.(*net.TCPConn).MultipathTCP(); err != nil || !mp {
				t.Skipf("the connection fell back to TCP (MPTCP %v, %v): nothing MPTCP to test", mp, err)
			}
			e := e2e.Wait(t, events, timeout, "the MPTCP accept", func(e Event) bool { return e.Lport == server.Port() })
			checkAccept(t, e, server, client)
			e2e.CheckTask(t, &e.Task)
			noMore(t, events, server.Port())
		})
	}
}

// Where the syscall and io_uring tracepoints exist, the first hook must
// load: its io_uring programs use CO-RE and two tracepoint names, and a
// failure would silently fall back to a hook that misses accepts already
// blocked when tracing starts.
func TestTracepointHookLoads(t *testing.T) {
	e2e.Require(t)
	if os.Getenv("OWL_HOOKS") != "" {
		t.Skip("OWL_HOOKS forces another hook")
	}
	for _, tp := range []string{"syscalls/sys_exit_accept4", "io_uring/io_uring_complete"} {
		if _, err := os.Stat("/sys/kernel/tracing/events/" + tp); err != nil {
			t.Skipf("no tracepoint %s: %v", tp, err)
		}
	}
	tr, err := Open(Config{}, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if h := hooks(Config{})[0]; tr.Hook.Name != h.Name {
		t.Fatalf("hook %q, want %q; tried: %v", tr.Hook.Name, h.Name, tr.Tried)
	}
}
