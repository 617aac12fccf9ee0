package tcpaccept

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
)

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{
		// accept ADDR: listen on ADDR, accept one connection (as another process).
		"accept": func(args []string) error {
			l, err := net.Listen("tcp", args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			// Tell the parent the port, then block in accept.
			fmt.Println(l.Addr().(*net.TCPAddr).Port)
			c, err := l.Accept()
			if err != nil {
				return err
			}
			return c.Close()
		},
	})
}

const timeout = 5 * time.Second

func TestAccept(t *testing.T) {
	e2e.Require(t)
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			tr, err := Open(Config{}, e2e.Own())
			if err != nil {
				t.Fatal(err)
			}
			events := e2e.Collect(t, tr)
			server := e2e.Serve(t, host)
			client := e2e.Dial(t, server)
			e := e2e.Wait(t, events, timeout, "accept", func(e Event) bool { return e.Lport == server.Port() })
			checkAccept(t, e, server, client)
			e2e.CheckTask(t, &e.Task)
		})
	}
}

func checkAccept(t *testing.T, e Event, server, client netip.AddrPort) {
	t.Helper()
	if e.PID != uint32(os.Getpid()) || e.Comm.String() != e2e.Comm(t) {
		t.Errorf("task: got pid %d comm %q, want %d %q", e.PID, e.Comm, os.Getpid(), e2e.Comm(t))
	}
	checkEndpoints(t, e, server, client)
}

func checkEndpoints(t *testing.T, e Event, server, client netip.AddrPort) {
	t.Helper()
	if e.Raddr != client.Addr() || e.Rport != client.Port() {
		t.Errorf("remote: got %v:%d, want the client socket %v", e.Raddr, e.Rport, client)
	}
	if e.Laddr != server.Addr() || e.Lport != server.Port() {
		t.Errorf("local: got %v:%d, want the listener %v", e.Laddr, e.Lport, server)
	}
	wantFamily := uint8(4)
	if server.Addr().Is6() {
		wantFamily = 6
	}
	if e.Family != wantFamily {
		t.Errorf("family: got %d, want %d", e.Family, wantFamily)
	}
}

// An accept(2) already blocked in the kernel when tracing starts must be
// seen when it returns. Go's net package never blocks in accept (it polls),
// so a raw blocking socket is used.
func TestAcceptBlockedBeforeStart(t *testing.T) {
	e2e.Require(t)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	server := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))

	tids := make(chan int)
	accepted := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- unix.Gettid()
		nfd, _, err := unix.Accept4(fd, 0)
		if err == nil {
			unix.Close(nfd)
		}
		accepted <- err
	}()
	if err := e2e.InSyscall(<-tids, unix.SYS_ACCEPT4, unix.SYS_ACCEPT); err != nil {
		t.Fatal(err)
	}

	tr, err := Open(Config{}, e2e.Own())
	if err != nil {
		t.Fatal(err)
	}
	if tr.Hook.Kind != probe.Tracepoint {
		// A return probe attached while the call runs never fires for it.
		e2e.Dial(t, server)
		<-accepted
		tr.Close()
		t.Skipf("%s cannot see an accept that began before it attached; only the syscall tracepoints can", tr.Hook.Name)
	}
	events := e2e.Collect(t, tr)
	client := e2e.Dial(t, server)
	if err := <-accepted; err != nil {
		t.Fatalf("accept: %v", err)
	}
	e := e2e.Wait(t, events, timeout, "the blocked accept", func(e Event) bool { return e.Lport == server.Port() })
	checkAccept(t, e, server, client)
}

// -p filters in the kernel: an accept by another process, made before ours,
// never arrives.
func TestPIDFilter(t *testing.T) {
	e2e.Require(t)
	mine := e2e.Serve(t, "127.0.0.1")
	tr, err := Open(Config{}, e2e.Own())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr)

	child := e2e.Child("accept", "127.0.0.1:0")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var childPort uint16
	if _, err := fmt.Fscan(out, &childPort); err != nil {
		t.Fatalf("read child's port: %v", err)
	}
	e2e.Dial(t, netip.AddrPortFrom(mine.Addr(), childPort))
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	e2e.Dial(t, mine)
	e := e2e.Wait(t, events, timeout, "any accept", func(Event) bool { return true })
	if e.PID != uint32(os.Getpid()) || e.Lport != mine.Port() {
		t.Fatalf("first event: pid %d port %d; want pid %d port %d (the child %d accepted on %d first)",
			e.PID, e.Lport, os.Getpid(), mine.Port(), child.Process.Pid, childPort)
	}
}

// -P filters local ports in the kernel, and -4/-6 families.
func TestPortAndFamilyFilters(t *testing.T) {
	e2e.Require(t)
	wanted := e2e.Serve(t, "::1")
	other := e2e.Serve(t, "::1")
	v4 := e2e.Serve(t, "127.0.0.1")
	opts := e2e.Options()
	opts.Net = probe.NetFilter{Family: 6, Ports: []uint16{wanted.Port(), v4.Port()}}
	tr, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr)
	e2e.Dial(t, other)
	e2e.Dial(t, v4)
	e2e.Dial(t, wanted)
	e := e2e.Wait(t, events, timeout, "any accept", func(Event) bool { return true })
	if e.Lport != wanted.Port() || e.Family != 6 {
		t.Fatalf("first event: port %d family %d; want %d over IPv6 (other port %d, IPv4 port %d)",
			e.Lport, e.Family, wanted.Port(), other.Port(), v4.Port())
	}
}

func TestTable(t *testing.T) {
	e := Event{Task: event.Task{PID: 4242, KtimeNs: 5e9, Time: event.Time{Time: time.Date(2024, 1, 2, 11, 23, 35, 0, time.Local)}},
		Family: 4, Raddr: netip.MustParseAddr("10.0.0.2"), Rport: 45876, Laddr: netip.MustParseAddr("10.0.0.1"), Lport: 80}
	copy(e.Comm[:], "a-very-long-command")
	tab := (&flags{clock: true, timestamp: true}).table()
	got := string(tab.AppendHeader(nil)) + string(tab.AppendRow(nil, &e))
	want := "TIME     TIME(s)   PID    COMM         IP RADDR            RPORT LADDR            LPORT\n" +
		"11:23:35 0.000     4242   a-very-long- 4  10.0.0.2         45876 10.0.0.1         80\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// The per-event path (decode a ring record, format a text row into a reused
// buffer) must not allocate.
func TestEventPathDoesNotAllocate(t *testing.T) {
	raw := make([]byte, unsafe.Sizeof(tcpacceptEvent{}))
	r, _ := probe.View[tcpacceptEvent](raw)
	r.Family, r.Lport, r.Task.Pid = 10, 443, 77
	copy(r.Task.Comm[:], "nginx")
	s := &probe.Session{}
	tab := (&flags{clock: true, timestamp: true}).table()
	var e Event
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		decode(s, raw, &e)
		buf = tab.AppendRow(buf[:0], &e)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per event, want 0", allocs)
	}
}

func TestHeader(t *testing.T) {
	want := "PID    COMM         IP RADDR            RPORT LADDR            LPORT\n"
	if got := string((&flags{}).table().AppendHeader(nil)); got != want {
		t.Errorf("got %q, want BCC's %q", got, want)
	}
	if got := string((&flags{clock: true}).table().AppendHeader(nil)); !strings.HasPrefix(got, "TIME     PID") {
		t.Errorf("-T header: got %q", got)
	}
}

// A connection reset by the client before the server accepts it has given
// up its port binding in the kernel; the local port must still be right.
func TestAcceptAfterClientReset(t *testing.T) {
	e2e.Require(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
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
	c, err := net.Dial("tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	client := c.LocalAddr().(*net.TCPAddr).AddrPort()
	c.(*net.TCPConn).SetLinger(0) // close sends a reset
	c.Close()
	time.Sleep(50 * time.Millisecond) // let the reset reach the queued connection
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	e := e2e.Wait(t, events, timeout, "the accept", func(e Event) bool { return e.Rport == client.Port() })
	checkAccept(t, e, server, client)
}
