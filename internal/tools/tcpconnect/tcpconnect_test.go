package tcpconnect

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
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
		"inflight":    inflight,
		"dialtimeout": dialTimeout,
	})
}

const timeout = 5 * time.Second

func TestConnectOutcomeAndLocalPort(t *testing.T) {
	e2e.Require(t)
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			tr, err := Open(Config{LocalPort: true, Outcome: true}, e2e.Own())
			if err != nil {
				t.Fatal(err)
			}
			events := e2e.Collect(t, tr.Source)
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
			if time.Since(e.Time.Time).Abs() > time.Minute {
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
	tr, err := Open(Config{}, e2e.Own())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr.Source)
	open := e2e.Serve(t, "127.0.0.1")
	e2e.Dial(t, open)
	e := e2e.Wait(t, events, timeout, "connect", func(e Event) bool { return e.Dport == open.Port() })
	if e.Outcome != OutcomeNone || e.Daddr != open.Addr() || e.Family != 4 {
		t.Errorf("got %+v, want a plain IPv4 connect event to %v", e, open)
	}
	e2e.CheckTask(t, &e.Task)
}

// The pid filter runs in the kernel: a connect by another process made
// before ours must never arrive.
func TestPIDFilter(t *testing.T) {
	e2e.Require(t)
	tr, err := Open(Config{}, e2e.Own())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr.Source)
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
	opts := e2e.Own()
	opts.Net = probe.NetFilter{Family: 6, Ports: []uint16{p2.Port(), p4.Port()}}
	tr, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr.Source)
	e2e.Dial(t, p1) // other port
	e2e.Dial(t, p4) // wanted port, other family
	e2e.Dial(t, p2)
	e := e2e.Wait(t, events, timeout, "any connect", func(Event) bool { return true })
	if e.Dport != p2.Port() || e.Family != 6 {
		t.Fatalf("first event is to port %d family %d, want %d over IPv6 (filtered out: %d, IPv4 %d)", e.Dport, e.Family, p2.Port(), p1.Port(), p4.Port())
	}
}

func TestTable(t *testing.T) {
	f := flags{timestamp: true, printUID: true, cfg: Config{LocalPort: true}}
	e := Event{Task: event.Task{PID: 4242, UID: 1000, KtimeNs: 5e9}, Family: 4, Saddr: netip.MustParseAddr("10.0.0.1"), Sport: 51234,
		Daddr: netip.MustParseAddr("10.0.0.2"), Dport: 443}
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

// The per-event path (decode a ring record, format a text row into a reused
// buffer) must not allocate.
func TestEventPathDoesNotAllocate(t *testing.T) {
	raw := make([]byte, unsafe.Sizeof(tcpconnectEvent{}))
	r, _ := probe.View[tcpconnectEvent](raw)
	r.Family, r.Dport, r.Task.Pid = 10, 443, 77
	copy(r.Task.Comm[:], "curl")
	s := &probe.Session{}
	tab := (&flags{timestamp: true, printUID: true, cfg: Config{LocalPort: true, Outcome: true}}).table()
	var e Event
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		decode(s, nil, raw, &e)
		buf = tab.AppendRow(buf[:0], &e)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per event, want 0", allocs)
	}
}

// Every event made is delivered or counted by cause. A one-page ring is
// overfilled while nothing reads it: delivered + ring_full == made.
func TestTinyRingCountsEveryDrop(t *testing.T) {
	e2e.Require(t)
	opts := e2e.Own()
	opts.RingBytes = 4096 // ~36 events of 112 bytes
	src, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	server := e2e.Serve(t, "127.0.0.1")
	const made = 300
	for range made {
		e2e.Dial(t, server)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run then drains what the ring holds and returns
	var delivered uint64
	if err := src.Run(ctx, func(e *Event) {
		if e.Dport == server.Port() {
			delivered++
		}
	}); err != nil {
		t.Fatal(err)
	}
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RingFull == 0 || delivered+st.RingFull != made || st.Lost() != st.RingFull {
		t.Errorf("made %d: delivered %d, counted %+v; want delivered + ring_full == made, ring_full > 0", made, delivered, st)
	}
}

// A count table of four entries gets connects to ten destinations:
// counted + map_full == made.
func TestTinyCountMapCountsEveryDrop(t *testing.T) {
	e2e.Require(t)
	sp := spec // a copy whose count table is tiny
	sp.Configure = func(cfg Config, cs *ebpf.CollectionSpec) error {
		var m tcpconnectMapSpecs
		if err := cs.Assign(&m); err != nil {
			return err
		}
		m.Counts.MaxEntries = 4
		return spec.Configure(cfg, cs)
	}
	src, err := tool.Open(&sp, Config{Count: true}, e2e.Own())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.HasReader() {
		t.Error("count mode opened a ring buffer reader")
	}
	const servers, each = 10, 3
	for range servers {
		server := e2e.Serve(t, "127.0.0.1")
		for range each {
			e2e.Dial(t, server)
		}
	}
	counts, err := (&Source{Source: src}).Counts()
	if err != nil {
		t.Fatal(err)
	}
	var counted uint64
	for _, c := range counts {
		counted += c.Count
	}
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(counts) != 4 || st.MapFull == 0 || counted+st.MapFull != servers*each {
		t.Errorf("made %d: %d keys counted %d, stats %+v; want 4 keys and counted + map_full == made", servers*each, len(counts), counted, st)
	}
}
