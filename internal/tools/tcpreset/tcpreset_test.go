package tcpreset

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"regexp"
	"strings"
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
			tr, err := Open(Config{}, e2e.Options())
			if err != nil {
				t.Fatal(err)
			}
			skipIfBlindToClosedPorts(t, tr)
			events := e2e.Collect(t, tr.Source)
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
// distinct ports, counted in the kernel; the next call starts a new
// interval.
func TestScanSummary(t *testing.T) {
	e2e.Require(t)
	tr, err := Open(Config{Summary: true}, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	skipIfBlindToClosedPorts(t, tr)
	if tr.HasReader() {
		t.Error("count-only mode opened a ring reader")
	}
	events := e2e.Collect(t, tr.Source)
	if _, err := tr.Remotes(time.Now()); err != nil {
		t.Fatal(err)
	}
	src := uniqueLoopback()
	ports := map[uint16]bool{}
	for len(ports) < 50 {
		p := e2e.ClosedPort(t, "127.0.0.1").Port()
		if !ports[p] {
			ports[p] = true
			refused(t, src, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p))
		}
	}
	// A second reset to one of the ports: one more reset, no more ports.
	for p := range ports {
		refused(t, src, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p))
		break
	}
	// The reset is sent before connect returns ECONNREFUSED, so it is
	// counted by now.
	lines := remotesOf(t, tr, src)
	if len(lines) != 1 || lines[0].Resets != 51 || lines[0].Ports != 50 {
		t.Fatalf("summary for %v: got %+v, want one line with 51 resets on 50 ports", src, lines)
	}
	if again := remotesOf(t, tr, src); len(again) != 0 {
		t.Errorf("second call: got %+v, want nothing new for %v", again, src)
	}
	for p := range ports {
		refused(t, src, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p))
		break
	}
	if third := remotesOf(t, tr, src); len(third) != 1 || third[0].Resets != 1 || third[0].Ports != 1 {
		t.Errorf("third call: got %+v, want 1 reset on 1 port", third)
	}
	select {
	case e := <-events:
		t.Errorf("count-only mode streamed %+v", e)
	default:
	}
}

func remotesOf(t *testing.T, tr *Source, src netip.Addr) []Remote {
	t.Helper()
	rows, err := tr.Remotes(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var lines []Remote
	for _, r := range rows {
		if r.Raddr == src {
			lines = append(lines, r)
		}
	}
	return lines
}

// skipIfBlindToClosedPorts skips when the tracepoint was forced on a kernel
// before 6.10, where it never fires for closed ports (the chain itself would
// not choose it there).
func skipIfBlindToClosedPorts(t *testing.T, tr *Source) {
	t.Helper()
	if tr.Hook.Kind == probe.Tracepoint {
		if err := tracepointSeesClosedPorts(); err != nil {
			tr.Close()
			t.Skipf("forced %s: %v", tr.Hook.Name, err)
		}
	}
}

func TestTally(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::2")
	key := func(addr netip.Addr, port uint16) tcpresetResetKey {
		k := tcpresetResetKey{Raddr: addr.As16(), Family: 10, Lport: port}
		if addr.Is4() {
			k.Family = 2
			k.Raddr = [16]byte{}
			a4 := addr.As4()
			copy(k.Raddr[:], a4[:])
		}
		return k
	}
	tl := tally{}
	read := func(counts map[tcpresetResetKey]uint64) []Remote {
		rows := map[netip.Addr]*Remote{}
		for k, n := range counts {
			tl.add(rows, time.Time{}, k, n)
		}
		return sorted(rows)
	}
	got := read(map[tcpresetResetKey]uint64{key(a, 1): 2, key(a, 2): 1, key(b, 9): 1})
	if len(got) != 2 || got[0].Raddr != a || got[0].Resets != 3 || got[0].Ports != 2 || got[1].Raddr != b || got[1].Ports != 1 {
		t.Errorf("first interval: got %+v", got)
	}
	if again := read(map[tcpresetResetKey]uint64{key(a, 1): 2, key(a, 2): 1, key(b, 9): 1}); len(again) != 0 {
		t.Errorf("unchanged counts: got %+v, want nothing", again)
	}
	got = read(map[tcpresetResetKey]uint64{key(a, 1): 2, key(a, 2): 4, key(b, 9): 1})
	if len(got) != 1 || got[0].Raddr != a || got[0].Resets != 3 || got[0].Ports != 1 {
		t.Errorf("third interval: got %+v, want 3 resets on 1 port of %v", got, a)
	}
}

// Resets have no task: asking to filter on one is an error, not a filter
// that silently does nothing. They have endpoints: -4/-6/-P apply.
func TestNoTaskFilter(t *testing.T) {
	if _, err := Open(Config{}, e2e.Own()); err == nil {
		t.Error("Open with a pid filter: no error")
	}
	if info := spec.Info(); info.Task || !info.Net {
		t.Errorf("info: task %v net %v, want net only", info.Task, info.Net)
	}
}

// -P: resets sent from the listed local port are traced, from another
// closed port not.
func TestPortFilter(t *testing.T) {
	e2e.Require(t)
	src := uniqueLoopback()
	wanted, other := e2e.ClosedPort(t, "127.0.0.1"), e2e.ClosedPort(t, "127.0.0.1")
	opts := e2e.Options()
	opts.Net.Ports = []uint16{wanted.Port()}
	tr, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	skipIfBlindToClosedPorts(t, tr)
	events := e2e.Collect(t, tr.Source)
	// The reset from the other port comes first: had it passed the
	// filter, it would arrive before the wanted one.
	refused(t, src, other)
	client := refused(t, src, wanted)
	e2e.Wait(t, events, timeout, "the reset from "+wanted.String(), func(e Event) bool {
		if e.Raddr == src && e.Lport == other.Port() {
			t.Errorf("-P %d: a reset from port %d", wanted.Port(), e.Lport)
		}
		return e.Lport == wanted.Port() && e.Rport == client.Port()
	})
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
	tr, err := Open(Config{}, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr.Source)
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

// owl tcpreset -s: the header once at the start, then per remote address
// the resets and ports counted in the kernel, in text and in JSON.
func TestSummaryCommand(t *testing.T) {
	e2e.Require(t)
	// The command picks its hook as owl does; see which one that is.
	src, err := Open(Config{Summary: true}, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	skipIfBlindToClosedPorts(t, src)
	src.Close()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			cmd := command()
			var stdout strings.Builder
			stderr := &e2e.SyncBuffer{}
			cmd.SetOut(&stdout)
			cmd.SetErr(stderr)
			cmd.SetArgs([]string{"-s", "60", "-d", "1", "-o", format})
			done := make(chan error, 1)
			go func() { done <- cmd.Execute() }()
			// Attaching kprobes or fentry took over 5 s in the qemu
			// guests (TCG on a busy host).
			deadline := time.Now().Add(6 * timeout)
			for !strings.Contains(stderr.String(), "Tracing TCP resets") {
				if time.Now().After(deadline) {
					t.Fatalf("never announced tracing; stderr %q", stderr.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			src := uniqueLoopback()
			for range 5 {
				refused(t, src, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), e2e.ClosedPort(t, "127.0.0.1").Port()))
			}
			if err := <-done; err != nil {
				t.Fatalf("run: %v (stderr %q)", err, stderr.String())
			}
			out := stdout.String()
			if format == "text" {
				if !strings.HasPrefix(out, "TIME     RADDR                                   RESETS   PORTS\n") {
					t.Errorf("output %q: want the header first", out)
				}
				if !regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d ` + regexp.QuoteMeta(src.String()) + ` +5 +5$`).MatchString(out) {
					t.Errorf("output %q: want a line for %v with 5 resets on 5 ports", out, src)
				}
				return
			}
			want := `"raddr":"` + src.String() + `","resets":5,"ports":5}`
			if !strings.Contains(out, want) || !strings.Contains(out, `{"lost":0,`) {
				t.Errorf("output %q: want a line ending %s and the lost line", out, want)
			}
		})
	}
}
