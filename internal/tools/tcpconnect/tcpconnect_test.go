package tcpconnect

import (
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/probe"
)

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{
		// dial ADDR: connect once from another process.
		"dial": func(args []string) error {
			c, err := net.Dial("tcp", args[0])
			if err != nil {
				return err
			}
			return c.Close()
		},
	})
}

const timeout = 5 * time.Second

func TestConnectOutcomeAndLocalPort(t *testing.T) {
	e2e.Require(t)
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			tr, err := New(Config{PID: os.Getpid(), UID: -1, LocalPort: true, Outcome: true})
			if err != nil {
				t.Fatal(err)
			}
			events := e2e.Collect(t, tr)
			open := e2e.Serve(t, host)
			closed := e2e.ClosedPort(t, host)

			local := e2e.Dial(t, open)
			if _, err := net.Dial("tcp", closed.String()); err == nil {
				t.Fatalf("connect to closed port %v succeeded", closed)
			}

			e := e2e.Wait(t, events, timeout, "connect to open port", func(e Event) bool { return e.Dport == open.Port() })
			wantFamily := uint8(4)
			if open.Addr().Is6() {
				wantFamily = 6
			}
			if e.PID != uint32(os.Getpid()) || e.Comm.String() != e2e.Comm(t) || e.UID != uint32(os.Getuid()) {
				t.Errorf("task: got pid %d comm %q uid %d, want %d %q %d", e.PID, e.Comm, e.UID, os.Getpid(), e2e.Comm(t), os.Getuid())
			}
			if e.Family != wantFamily || e.Daddr != open.Addr() || e.Saddr != local.Addr() {
				t.Errorf("addresses: got family %d %v -> %v, want %d %v -> %v", e.Family, e.Saddr, e.Daddr, wantFamily, local.Addr(), open.Addr())
			}
			if e.Sport != local.Port() {
				t.Errorf("local port: got %d, want %d (the client socket's)", e.Sport, local.Port())
			}
			if e.Outcome != Established || e.LatencyUS <= 0 {
				t.Errorf("outcome: got %v after %.1f µs, want established with a latency", e.Outcome, e.LatencyUS)
			}
			if time.Since(e.Time).Abs() > time.Minute {
				t.Errorf("time %v is not now", e.Time)
			}

			r := e2e.Wait(t, events, timeout, "connect to closed port", func(e Event) bool { return e.Dport == closed.Port() })
			if r.Outcome != Refused || r.Errno != 111 || r.Sport == 0 {
				t.Errorf("closed port: got outcome %v errno %d sport %d, want refused, ECONNREFUSED and a port", r.Outcome, r.Errno, r.Sport)
			}
		})
	}
}

func TestConnectWithoutWaiting(t *testing.T) {
	e2e.Require(t)
	tr, err := New(Config{PID: os.Getpid(), UID: -1})
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr)
	open := e2e.Serve(t, "127.0.0.1")
	e2e.Dial(t, open)
	e := e2e.Wait(t, events, timeout, "connect", func(e Event) bool { return e.Dport == open.Port() })
	if e.Outcome != OutcomeNone || e.Daddr != open.Addr() || e.Family != 4 {
		t.Errorf("got %+v, want a plain IPv4 connect event to %v", e, open)
	}
}

// The pid filter runs in the kernel: a connect by another process made
// before ours must never arrive.
func TestPIDFilter(t *testing.T) {
	e2e.Require(t)
	tr, err := New(Config{PID: os.Getpid(), UID: -1})
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr)
	open := e2e.Serve(t, "127.0.0.1")
	child := e2e.Child("dial", open.String())
	if err := child.Run(); err != nil {
		t.Fatalf("child dial: %v", err)
	}
	e2e.Dial(t, open)
	e := e2e.Wait(t, events, timeout, "a connect to the listener", func(e Event) bool { return e.Dport == open.Port() })
	if e.PID != uint32(os.Getpid()) {
		t.Fatalf("first event is from pid %d (the child is %d), want only pid %d", e.PID, child.Process.Pid, os.Getpid())
	}
}

func TestPortAndFamilyFilters(t *testing.T) {
	e2e.Require(t)
	p1 := e2e.Serve(t, "::1")
	p2 := e2e.Serve(t, "::1")
	p4 := e2e.Serve(t, "127.0.0.1")
	tr, err := New(Config{PID: os.Getpid(), UID: -1, Family: 6, Ports: []uint16{p2.Port(), p4.Port()}})
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr)
	e2e.Dial(t, p1) // other port
	e2e.Dial(t, p4) // wanted port, other family
	e2e.Dial(t, p2)
	e := e2e.Wait(t, events, timeout, "any connect", func(Event) bool { return true })
	if e.Dport != p2.Port() || e.Family != 6 {
		t.Fatalf("first event is to port %d family %d, want %d over IPv6 (filtered out: %d, IPv4 %d)", e.Dport, e.Family, p2.Port(), p1.Port(), p4.Port())
	}
}

func TestTable(t *testing.T) {
	f := flags{timestamp: true, printUID: true, lport: true}
	e := Event{PID: 4242, UID: 1000, Family: 4, Saddr: netip.MustParseAddr("10.0.0.1"), Sport: 51234,
		Daddr: netip.MustParseAddr("10.0.0.2"), Dport: 443, KtimeNs: 5e9}
	copy(e.Comm[:], "a-very-long-command")
	tab := f.table()
	got := string(tab.AppendHeader(nil)) + string(tab.AppendRow(nil, &e))
	want := "TIME(s)   UID    PID    COMM         IP SADDR            LPORT  DADDR            DPORT\n" +
		"0.000     1000   4242   a-very-long- 4  10.0.0.1         51234  10.0.0.2         443\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if bcc := "PID    COMM         IP SADDR            DADDR            DPORT\n"; string((&flags{}).table().AppendHeader(nil)) != bcc {
		t.Errorf("default header differs from BCC's %q", bcc)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    flags
	}{
		{"both families", flags{family: bothFamilies(), uid: -1}},
		{"port out of range", flags{ports: "70000", uid: -1}},
		{"port not a number", flags{ports: "http", uid: -1}},
		{"no such pid", flags{common: cli.Common{PID: 1 << 30}, uid: -1}},
	} {
		f := tc.f
		if f.common.Output == "" {
			f.common.Output = "text"
		}
		if _, err := f.config(); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	f := flags{ports: "80, 443", uid: -1}
	f.common.Output = "text"
	cfg, err := f.config()
	if err != nil || len(cfg.Ports) != 2 || cfg.Ports[1] != 443 {
		t.Errorf("ports 80, 443: got %v %v", cfg.Ports, err)
	}
}

// The per-event path (decode a ring record, format a text row into a reused
// buffer) must not allocate.
func TestEventPathDoesNotAllocate(t *testing.T) {
	raw := make([]byte, unsafe.Sizeof(tcpconnectEvent{}))
	r, _ := probe.View[tcpconnectEvent](raw)
	r.Family, r.Dport, r.Pid = 10, 443, 77
	copy(r.Comm[:], "curl")
	s := &probe.Session{}
	tab := (&flags{timestamp: true, printUID: true, lport: true, outcome: true}).table()
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

func bothFamilies() (f cli.Family) {
	cmd := &cobra.Command{}
	f.AddFlags(cmd)
	cmd.Flags().Parse([]string{"-4", "-6"})
	return f
}
