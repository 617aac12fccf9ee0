package tcpreset

import (
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/probe"
)

const summary = "Trace TCP resets sent (port-scan detector)"

// Tool is tcpreset's registry entry.
var Tool = cli.Tool{
	Name:    "tcpreset",
	Summary: summary,
	Command: command,
	Probe:   Probe,
}

type flags struct {
	common  cli.Common
	summary int
}

func command() *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "tcpreset [flags]",
		Short: summary,
		Long: `Trace TCP resets (RST) sent by this host, IPv4 and IPv6. A closed port
answers a SYN with a reset, so a port scan shows as many resets to one remote
address over many local ports: -s prints that per remote address.

Hooks, in order of preference: the tracepoint tcp:tcp_send_reset (Linux 6.10+,
which also gives the kernel's reason, e.g. NO_SOCKET for a closed port), then
fentry, then kprobes on tcp_v4_send_reset, tcp_v6_send_reset and
tcp_send_active_reset (no reason: REASON is -).
STATE is the TCP state of the socket that sent the reset, - when none did.

JSON fields: time, laddr, lport, raddr, rport, family (4|6), state, reason
(state and reason are null when unknown). With -s: time, raddr, resets, ports.`,
		Example: `  owl tcpreset               # one line per reset sent
  owl tcpreset -s 5          # every 5 s, resets and distinct local ports per remote address
  owl tcpreset -o json -d 60 # JSON lines for one minute`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd, &f) },
	}
	f.common.AddFlags(cmd, false)
	cmd.Flags().IntVarP(&f.summary, "summary", "s", 0, "every `SECONDS`, print per remote address the resets and distinct local ports instead of each reset")
	return cmd
}

func run(cmd *cobra.Command, f *flags) error {
	if err := f.common.Validate(); err != nil {
		return err
	}
	if f.summary < 0 {
		return cli.Usagef("summary interval %d: must be positive", f.summary)
	}
	t, err := New(Config{Hook: f.common.Hook})
	if err != nil {
		return err
	}
	defer t.Close()
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, table)
	if f.summary > 0 {
		return runSummary(cmd, f, t)
	}
	return cli.Stream(cmd, &f.common, t, out, "TCP resets", func(e *Event) { out.Event(e) })
}

var table = output.Table[Event]{
	{Name: "TIME", Width: 8, Append: func(b []byte, e *Event) []byte { return output.Clock(b, e.Time) }},
	{Name: "LADDR", Width: 16, Append: func(b []byte, e *Event) []byte { return e.Laddr.AppendTo(b) }},
	{Name: "LPORT", Width: 5, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Lport) }},
	{Name: "RADDR", Width: 16, Append: func(b []byte, e *Event) []byte { return e.Raddr.AppendTo(b) }},
	{Name: "RPORT", Width: 5, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Rport) }},
	{Name: "STATE", Width: 11, Append: func(b []byte, e *Event) []byte { return appendOrDash(b, e.State.String()) }},
	{Name: "REASON", Append: func(b []byte, e *Event) []byte { return appendOrDash(b, string(e.Reason)) }},
}

func appendOrDash(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return append(b, s...)
}

// Remote is one line of -s: what one remote address received in an interval.
type Remote struct {
	Time   time.Time  `json:"time"`
	Raddr  netip.Addr `json:"raddr"`
	Resets uint64     `json:"resets"`
	Ports  int        `json:"ports"` // distinct local ports
}

// summarizer counts resets per remote address; the reader adds, a ticker
// prints, so both hold mu.
type summarizer struct {
	mu     sync.Mutex
	remote map[netip.Addr]*remoteCount
}

type remoteCount struct {
	resets uint64
	ports  map[uint16]struct{}
}

func (s *summarizer) add(e *Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.remote[e.Raddr]
	if r == nil {
		r = &remoteCount{ports: map[uint16]struct{}{}}
		s.remote[e.Raddr] = r
	}
	r.resets++
	r.ports[e.Lport] = struct{}{}
}

// take returns the interval's lines, most ports first, and starts a new one.
func (s *summarizer) take(now time.Time) []Remote {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := make([]Remote, 0, len(s.remote))
	for addr, r := range s.remote {
		rows = append(rows, Remote{Time: now, Raddr: addr, Resets: r.resets, Ports: len(r.ports)})
	}
	s.remote = map[netip.Addr]*remoteCount{}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Ports != rows[j].Ports {
			return rows[i].Ports > rows[j].Ports
		}
		return rows[i].Raddr.Less(rows[j].Raddr)
	})
	return rows
}

var summaryTable = output.Table[Remote]{
	{Name: "TIME", Width: 8, Append: func(b []byte, r *Remote) []byte { return output.Clock(b, r.Time) }},
	{Name: "RADDR", Width: 39, Append: func(b []byte, r *Remote) []byte { return r.Raddr.AppendTo(b) }},
	{Name: "RESETS", Width: 8, Append: func(b []byte, r *Remote) []byte { return output.Uint(b, r.Resets) }},
	{Name: "PORTS", Append: func(b []byte, r *Remote) []byte { return output.Int(b, r.Ports) }},
}

func runSummary(cmd *cobra.Command, f *flags, t *probe.Tracer[Event]) error {
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, summaryTable)
	out.Header()
	out.Flush()
	s := &summarizer{remote: map[netip.Addr]*remoteCount{}}
	report := func(now time.Time) {
		for _, r := range s.take(now) {
			out.Event(&r)
		}
		out.Flush()
	}
	tick := time.NewTicker(time.Duration(f.summary) * time.Second)
	defer tick.Stop()
	done := make(chan struct{})
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for {
			select {
			case now := <-tick.C:
				report(now)
			case <-done:
				return
			}
		}
	}()
	err := cli.Trace(cmd, &f.common, t, "TCP resets", s.add, nil)
	close(done)
	<-printed
	report(time.Now())
	if err != nil {
		return err
	}
	return cli.Finish(cmd, t.Session, out)
}
