package tcpconnect

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// Connects that wait on a SYN nobody answers come from a child in a network
// namespace of its own (e2e.StartPeer): a listener with a backlog of 1 that
// never accepts. Once its accept queue is full the kernel drops every
// further SYN, so all but the first few connects stay in SYN_SENT for as
// long as the child keeps them open.

// fullListener listens on 127.0.0.1 with a backlog of 1 and fills its
// accept queue, so that the SYNs of later connects are dropped. It returns
// the port.
func fullListener() (uint16, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return 0, fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		return 0, fmt.Errorf("listen: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("getsockname: %w", err)
	}
	port := uint16(sa.(*unix.SockaddrInet4).Port)
	// The accept queue is full at backlog+1; tcpi_unacked of a listener
	// is the length of its accept queue.
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return 0, fmt.Errorf("TCP_INFO: %w", err)
		}
		if info.Unacked >= 2 {
			return port, nil
		}
		if time.Now().After(deadline) {
			return 0, errors.New("the accept queue never filled")
		}
		if _, err := connectNonblocking(port); err != nil {
			return 0, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// connectNonblocking starts a connect to 127.0.0.1:port and leaves it
// open: it returns once the SYN is sent.
func connectNonblocking(port uint16) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	err = unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: int(port)})
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		return -1, fmt.Errorf("connect: %w", err)
	}
	return fd, nil
}

// inflight N (child, own network namespace): fills a listener, says
// "ready PORT", waits for "go", makes N connects to it that stay in
// SYN_SENT, says "done", and keeps them until its stdin closes.
func inflight(args []string) error {
	n, err := strconv.Atoi(args[0])
	if err != nil {
		return err
	}
	lim := unix.Rlimit{Cur: uint64(n) + 256, Max: uint64(n) + 256}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("RLIMIT_NOFILE %d: %w", lim.Cur, err)
	}
	port, err := fullListener()
	if err != nil {
		return err
	}
	fmt.Println("ready", port)
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() || in.Text() != "go" {
		return errors.New(`no "go" from the test`)
	}
	for range n {
		if _, err := connectNonblocking(port); err != nil {
			return err
		}
	}
	fmt.Println("done")
	for in.Scan() {
	}
	return nil
}

// dialtimeout (child, own network namespace): fills a listener, says
// "ready PORT", waits for "go", then dials it as a Go program with a 300 ms
// connect timeout does (the SYN is dropped, Go closes the socket at the
// deadline), says "timedout" and waits for its stdin to close.
func dialTimeout([]string) error {
	port, err := fullListener()
	if err != nil {
		return err
	}
	fmt.Println("ready", port)
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() || in.Text() != "go" {
		return errors.New(`no "go" from the test`)
	}
	d := net.Dialer{Timeout: 300 * time.Millisecond}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err == nil {
		c.Close()
		return errors.New("dial of a full listener succeeded")
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		return fmt.Errorf("dial: %w, want a timeout", err)
	}
	fmt.Println("timedout")
	for in.Scan() {
	}
	return nil
}

// runPeer opens tcpconnect on the child's pid and runs it until stop; it
// returns the events to the child's port.
type runPeer struct {
	src    *Source
	port   uint16
	cancel context.CancelFunc
	done   chan error
	events chan Event
}

func startRun(t *testing.T, src *Source, port uint16) *runPeer {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runPeer{src: src, port: port, cancel: cancel, done: make(chan error, 1), events: make(chan Event, 1<<15)}
	go func() {
		r.done <- src.Run(ctx, func(e *Event) {
			if e.Dport != port {
				return
			}
			select {
			case r.events <- *e:
			default:
				t.Errorf("test channel full: event dropped")
			}
		})
		close(r.events)
	}()
	return r
}

// stop ends the run (Ctrl-C or -d in the command) and returns every event
// it delivered, by outcome name.
func (r *runPeer) stop(t *testing.T) (map[string][]Event, int) {
	r.cancel()
	byOutcome := map[string][]Event{}
	n := 0
	for e := range r.events {
		byOutcome[e.Outcome.String()] = append(byOutcome[e.Outcome.String()], e)
		n++
	}
	if err := <-r.done; err != nil {
		t.Fatalf("run: %v", err)
	}
	return byOutcome, n
}

func peerPort(t *testing.T, p *e2e.Peer) uint16 {
	t.Helper()
	port, err := strconv.ParseUint(p.Expect(t, "ready", 10*time.Second), 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(port)
}

func summary(by map[string][]Event) string {
	var parts []string
	for name, es := range by {
		if name == "" {
			name = "(none)"
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, len(es)))
	}
	return strings.Join(parts, ", ")
}

// Issue 8, items 3 and 4: 10000 connects in flight with -L, still waiting
// on their SYN when the run ends. Every one is delivered (those still
// waiting with outcome pending) or counted: none is dropped, and none is
// evicted from the table that holds them.
func TestTenThousandInFlightAllDelivered(t *testing.T) {
	e2e.Require(t)
	const made = 10000
	peer := e2e.StartPeer(t, "inflight", strconv.Itoa(made))
	port := peerPort(t, peer)
	opts := e2e.Options()
	opts.Task.PID = peer.Pid()
	src, err := Open(Config{LocalPort: true}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r := startRun(t, src, port)
	peer.Send(t, "go")
	peer.Expect(t, "done", 2*time.Minute)
	by, delivered := r.stop(t)
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hook %s: made %d: delivered %d (%s), stats %+v", src.Hook.Name, made, delivered, summary(by), st)
	// Only the ring may lose connects here, counted (the kprobe and fexit
	// hooks know the port at once and put each -L event in the ring).
	if uint64(delivered)+st.Lost() != made || st.Lost() != st.RingFull {
		t.Errorf("made %d: delivered %d + lost %d (%+v); want delivered + lost == made, no table losses", made, delivered, st.Lost(), st)
	}
	if src.Hook.Kind == probe.Tracepoint && len(by["pending"]) < made/2 {
		t.Errorf("tracepoint hook: %d connects delivered as pending, want most of the %d in flight", len(by["pending"]), made)
	}
	for _, e := range by["pending"] {
		if e.LatencyUS != 0 || e.Errno != 0 || e.PID != uint32(peer.Pid()) || e.Daddr != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("pending connect %+v: want the child's connect to 127.0.0.1 with no latency or errno", e)
			break
		}
	}
	if err := peer.Close(); err != nil {
		t.Errorf("child: %v", err)
	}
}

// Issue 8, item 3: with --outcome, connects still waiting on their SYN when
// the run ends are delivered with outcome "pending" (JSON too), on every hook.
func TestPendingAtExitDelivered(t *testing.T) {
	e2e.Require(t)
	const made = 5
	peer := e2e.StartPeer(t, "inflight", strconv.Itoa(made))
	port := peerPort(t, peer)
	opts := e2e.Options()
	opts.Task.PID = peer.Pid()
	src, err := Open(Config{LocalPort: true, Outcome: true}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r := startRun(t, src, port)
	peer.Send(t, "go")
	peer.Expect(t, "done", 10*time.Second)
	by, delivered := r.stop(t)
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if delivered != made || st.Lost() != 0 || len(by["pending"]) != made {
		t.Fatalf("made %d: delivered %d (%s), lost %+v; want all %d pending", made, delivered, summary(by), st, made)
	}
	b, err := json.Marshal(by["pending"][0])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"outcome":"pending"`) || strings.Contains(string(b), "latency_us") {
		t.Errorf("JSON %s: want \"outcome\":\"pending\" and no latency", b)
	}
	if err := peer.Close(); err != nil {
		t.Errorf("child: %v", err)
	}
}

// Issue 8, item 4: when the table of connects waiting for their handshake is
// full, a connect is delivered at once with outcome "untracked" (no port or
// end), not dropped and not counted as lost. A table of 50 entries gets 200
// connects in flight.
func TestFullPendingTableDeliversUntracked(t *testing.T) {
	e2e.Require(t)
	const made, size = 200, 50
	sp := spec // a copy whose pending table is small
	sp.Configure = func(cfg Config, cs *ebpf.CollectionSpec) error {
		var m tcpconnectMapSpecs
		if err := cs.Assign(&m); err != nil {
			return err
		}
		m.Pending.MaxEntries = size
		return spec.Configure(cfg, cs)
	}
	peer := e2e.StartPeer(t, "inflight", strconv.Itoa(made))
	port := peerPort(t, peer)
	opts := e2e.Options()
	opts.Task.PID = peer.Pid()
	tsrc, err := tool.Open(&sp, Config{Outcome: true}, opts)
	if err != nil {
		t.Fatal(err)
	}
	src := &Source{Source: tsrc}
	defer src.Close()
	r := startRun(t, src, port)
	peer.Send(t, "go")
	peer.Expect(t, "done", 10*time.Second)
	by, delivered := r.stop(t)
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("made %d: delivered %d (%s), stats %+v", made, delivered, summary(by), st)
	if delivered != made || st.Lost() != 0 {
		t.Errorf("made %d: delivered %d (%s), lost %+v; want every connect delivered and none lost", made, delivered, summary(by), st)
	}
	if n := len(by["pending"]); n == 0 || n > size || len(by["untracked"]) < made-size {
		t.Errorf("%s: want at most %d pending (the table) and the rest untracked", summary(by), size)
	}
	if err := peer.Close(); err != nil {
		t.Errorf("child: %v", err)
	}
}

// Issue 8, item 9: a connect the application gives up on (Go's dial
// timeout closes the socket in SYN_SENT) ends with no error in sk_err: its
// outcome is "aborted", not "error" with errno 0.
func TestAppConnectTimeoutIsAborted(t *testing.T) {
	e2e.Require(t)
	peer := e2e.StartPeer(t, "dialtimeout")
	port := peerPort(t, peer)
	opts := e2e.Options()
	opts.Task.PID = peer.Pid()
	src, err := Open(Config{Outcome: true}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	r := startRun(t, src, port)
	peer.Send(t, "go")
	peer.Expect(t, "timedout", 10*time.Second)
	e := e2e.Wait(t, r.events, timeout, "the aborted connect", func(e Event) bool { return e.Outcome.String() != "established" })
	if e.Outcome.String() != "aborted" || e.Errno != 0 || e.LatencyUS < 200e3 || e.Sport == 0 {
		t.Errorf("got outcome %v errno %d after %.0f µs from port %d, want aborted, no errno, after ~300 ms, with its port", e.Outcome, e.Errno, e.LatencyUS, e.Sport)
	}
	by, _ := r.stop(t)
	if len(by["error"]) > 0 {
		t.Errorf("outcomes %s: want no error without an errno", summary(by))
	}
	if err := peer.Close(); err != nil {
		t.Errorf("child: %v", err)
	}
}

// Issue 8, item 9: a simultaneous open (here a socket connecting to its own
// address) passes through SYN_RECV, with no error, on its way to
// ESTABLISHED: it is established, not "error" with errno 0.
func TestSimultaneousOpenIsEstablished(t *testing.T) {
	e2e.Require(t)
	tr, err := Open(Config{LocalPort: true, Outcome: true}, e2e.Own())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr.Source)
	self := e2e.ClosedPort(t, "127.0.0.1")
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(self)}
	c, err := d.Dial("tcp", self.String())
	if err != nil {
		t.Fatalf("connect %v to itself: %v", self, err)
	}
	defer c.Close()
	e := e2e.Wait(t, events, timeout, "the self-connect", func(e Event) bool { return e.Dport == self.Port() })
	if e.Outcome != Established || e.Errno != 0 || e.Sport != self.Port() {
		t.Errorf("got outcome %v errno %d sport %d, want established from port %d", e.Outcome, e.Errno, e.Sport, self.Port())
	}
}

// -P takes up to 1024 ports (it took 64): 100 ports filter in the kernel.
func TestHundredPortFilter(t *testing.T) {
	e2e.Require(t)
	var servers []netip.AddrPort
	for range 101 {
		servers = append(servers, e2e.Serve(t, "127.0.0.1"))
	}
	opts := e2e.Own()
	for _, s := range servers[:100] {
		opts.Net.Ports = append(opts.Net.Ports, s.Port())
	}
	tr, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr.Source)
	e2e.Dial(t, servers[100]) // not in the filter
	e2e.Dial(t, servers[99])
	e2e.Dial(t, servers[0])
	for _, want := range []netip.AddrPort{servers[99], servers[0]} {
		e := e2e.Wait(t, events, timeout, "a connect", func(Event) bool { return true })
		if e.Dport != want.Port() {
			t.Fatalf("got a connect to port %d, want %d (port %d is not among the 100 of -P)", e.Dport, want.Port(), servers[100].Port())
		}
	}
}

func TestPendingSizeMatchesTheBPFTable(t *testing.T) {
	cs, err := loadTcpconnect()
	if err != nil {
		t.Fatal(err)
	}
	if m := cs.Maps[tcpconnectMapPending]; m.MaxEntries != pendingSize || m.Type != ebpf.Hash {
		t.Errorf("pending: %v of %d entries, want a plain hash of pendingSize (%d): an LRU table evicts silently", m.Type, m.MaxEntries, pendingSize)
	}
}

// A connect with no end prints its outcome and no latency.
func TestPendingRow(t *testing.T) {
	tab := (&flags{cfg: Config{LocalPort: true, Outcome: true}}).table()
	e := Event{Task: event.Task{PID: 7}, Family: 4, Saddr: netip.MustParseAddr("10.0.0.1"),
		Daddr: netip.MustParseAddr("10.0.0.2"), Dport: 443, Outcome: Pending}
	copy(e.Comm[:], "curl")
	want := "7      curl         4  10.0.0.1         0      10.0.0.2         443   pending     -\n"
	if got := string(tab.AppendRow(nil, &e)); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	if s := Aborted.String() + " " + Untracked.String(); s != "aborted untracked" {
		t.Errorf("outcome names: %q", s)
	}
}
