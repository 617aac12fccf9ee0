package tcpreset

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/probe"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

const timeout = 5 * time.Second

// refused connects from src (port chosen by the kernel) to dst, which must
// refuse, and returns the client's address.
func refused(t *testing.T, src netip.Addr, dst netip.AddrPort) netip.AddrPort {
	t.Helper()
	var family int
	var local, remote unix.Sockaddr
	if src.Is6() {
		family, local, remote = unix.AF_INET6, &unix.SockaddrInet6{Addr: src.As16()}, &unix.SockaddrInet6{Addr: dst.Addr().As16(), Port: int(dst.Port())}
	} else {
		family, local, remote = unix.AF_INET, &unix.SockaddrInet4{Addr: src.As4()}, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, local); err != nil {
		t.Fatalf("bind %v: %v", src, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, remote); !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("connect %v: got %v, want ECONNREFUSED", dst, err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(src, uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(src, uint16(a.Port))
	}
	t.Fatalf("sockaddr %T", sa)
	return netip.AddrPort{}
}

// uniqueLoopback is a 127/8 address no other test uses, so events can be
// told apart by remote address even when packages run in parallel.
func uniqueLoopback() netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(1 + rand.IntN(254)), byte(rand.IntN(256)), byte(2 + rand.IntN(250))})
}

func TestResetToClosedPort(t *testing.T) {
	e2e.Require(t)
	for _, tc := range []struct{ src, dst string }{
		{uniqueLoopback().String(), "127.0.0.1"},
		{"::1", "::1"},
	} {
		t.Run(tc.dst, func(t *testing.T) {
			tr, err := New(Config{})
			if err != nil {
				t.Fatal(err)
			}
			skipIfBlindToClosedPorts(t, tr)
			events := e2e.Collect(t, tr)
			dst := netip.AddrPortFrom(netip.MustParseAddr(tc.dst), e2e.ClosedPort(t, tc.dst).Port())
			client := refused(t, netip.MustParseAddr(tc.src), dst)
			e := e2e.Wait(t, events, timeout, "reset from "+dst.String(), func(e Event) bool {
				return e.Lport == dst.Port() && e.Rport == client.Port()
			})
			if e.Laddr != dst.Addr() || e.Raddr != client.Addr() {
				t.Errorf("addresses: got %v -> %v, want %v -> %v", e.Laddr, e.Raddr, dst.Addr(), client.Addr())
			}
			// Only the 6.10+ tracepoint gives reasons.
			wantReason := Reason("")
			if tr.Hook.Kind == probe.Tracepoint {
				wantReason = "NO_SOCKET"
			}
			if e.Reason != wantReason || e.State != 0 {
				t.Errorf("got reason %q state %v, want %q and no socket state (hook %s)", e.Reason, e.State, wantReason, tr.Hook.Name)
			}
			if want := map[bool]uint8{false: 4, true: 6}[dst.Addr().Is6()]; e.Family != want {
				t.Errorf("family %d, want %d", e.Family, want)
			}
		})
	}
}

// A scan of 50 closed ports from one address is one summary line with 50
// distinct ports.
func TestScanSummary(t *testing.T) {
	e2e.Require(t)
	tr, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	skipIfBlindToClosedPorts(t, tr)
	events := e2e.Collect(t, tr)
	src := uniqueLoopback()
	ports := map[uint16]bool{}
	for len(ports) < 50 {
		p := e2e.ClosedPort(t, "127.0.0.1").Port()
		if !ports[p] {
			ports[p] = true
			refused(t, src, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p))
		}
	}
	s := &summarizer{remote: map[netip.Addr]*remoteCount{}}
	for n := 0; n < 50; {
		e := e2e.Wait(t, events, timeout, "the scan's resets", func(Event) bool { return true })
		s.add(&e)
		if e.Raddr == src {
			n++
		}
	}
	var lines []Remote
	for _, r := range s.take(time.Now()) {
		if r.Raddr == src {
			lines = append(lines, r)
		}
	}
	if len(lines) != 1 || lines[0].Resets != 50 || lines[0].Ports != 50 {
		t.Fatalf("summary for %v: got %+v, want one line with 50 resets on 50 ports", src, lines)
	}
}

// skipIfBlindToClosedPorts skips when the tracepoint was forced on a kernel
// before 6.10, where it never fires for closed ports (the chain itself would
// not choose it there).
func skipIfBlindToClosedPorts(t *testing.T, tr *probe.Tracer[Event]) {
	t.Helper()
	if tr.Hook.Kind == probe.Tracepoint {
		if err := tracepointSeesClosedPorts(); err != nil {
			tr.Close()
			t.Skipf("forced %s: %v", tr.Hook.Name, err)
		}
	}
}

func TestSummarizer(t *testing.T) {
	s := &summarizer{remote: map[netip.Addr]*remoteCount{}}
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::2")
	for _, e := range []Event{{Raddr: a, Lport: 1}, {Raddr: a, Lport: 1}, {Raddr: a, Lport: 2}, {Raddr: b, Lport: 9}} {
		s.add(&e)
	}
	got := s.take(time.Time{})
	if len(got) != 2 || got[0].Raddr != a || got[0].Resets != 3 || got[0].Ports != 2 || got[1].Ports != 1 {
		t.Errorf("got %+v", got)
	}
	if again := s.take(time.Time{}); len(again) != 0 {
		t.Errorf("take did not start a new interval: %+v", again)
	}
}

func TestTableAndJSONNames(t *testing.T) {
	e := Event{Laddr: netip.MustParseAddr("127.0.0.1"), Lport: 22, Raddr: netip.MustParseAddr("127.0.0.9"), Rport: 5555, Family: 4}
	row := string(table.AppendRow(nil, &e))
	if want := "127.0.0.1        22    127.0.0.9        5555  -           -\n"; row[9:] != want {
		t.Errorf("row %q, want ...%q", row, want)
	}
	if want := "TIME     LADDR            LPORT RADDR            RPORT STATE       REASON\n"; string(table.AppendHeader(nil)) != want {
		t.Errorf("header %q", table.AppendHeader(nil))
	}
	if b, _ := State(10).MarshalJSON(); string(b) != `"LISTEN"` {
		t.Errorf("state 10: %s", b)
	}
	if b, _ := State(0).MarshalJSON(); string(b) != "null" {
		t.Errorf("state 0: %s", b)
	}
}

// A socket closed with SO_LINGER 0 aborts its connection with a reset of
// its own (tcp_send_active_reset): local is the closing client.
func TestActiveReset(t *testing.T) {
	e2e.Require(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			held <- c
		}
	}()
	tr, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := (<-held)
	defer server.Close()
	client := c.LocalAddr().(*net.TCPAddr).AddrPort()
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	e := e2e.Wait(t, events, timeout, "the client's reset", func(e Event) bool {
		return e.Lport == client.Port() && e.Laddr == client.Addr()
	})
	if want := l.Addr().(*net.TCPAddr).AddrPort(); e.Raddr != want.Addr() || e.Rport != want.Port() || e.Family != 4 {
		t.Errorf("remote %v:%d family %d, want the server %v (hook %s)", e.Raddr, e.Rport, e.Family, want, tr.Hook.Name)
	}
}
