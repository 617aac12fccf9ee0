package tcpconnect

import (
	"net/netip"
	"sort"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/probe"
)

const summary = "Trace active TCP connects"

// Tool is tcpconnect's registry entry.
var Tool = cli.Tool{
	Name:    "tcpconnect",
	Summary: summary,
	Command: command,
	Probe:   Probe,
}

type flags struct {
	common    cli.Common
	timestamp bool
	printUID  bool
	lport     bool
	count     bool
	outcome   bool
	uid       int
	ports     string
	family    cli.Family
}

func command() *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "tcpconnect [flags]",
		Short: summary,
		Long: `Trace active TCP connects (connect(2) to a TCP socket), IPv4 and IPv6.

Hooks, in order of preference: the tracepoint sock:inet_sock_set_state
(CLOSE->SYN_SENT, in the connecting task), then fexit, then kprobes on
tcp_v4_connect and tcp_v6_connect. On the tracepoint the local port is not chosen yet: -L and
--outcome hold each event until its handshake ends, so the port is real.

JSON fields: time, pid, comm, uid, family (4|6), saddr, sport (0 when not
known), daddr, dport; with --outcome also outcome and latency_us.`,
		Example: `  owl tcpconnect              # trace all TCP connects
  owl tcpconnect -t           # include a timestamp column
  owl tcpconnect -p 181       # only process 181
  owl tcpconnect -P 80,81     # only destination ports 80 and 81
  owl tcpconnect -6 -L        # IPv6 only, with the local port
  owl tcpconnect -U -u 1000   # show UIDs, only UID 1000
  owl tcpconnect -c -d 10     # count connects per source/destination/port for 10 s
  owl tcpconnect --outcome    # add each handshake's result and latency
  owl tcpconnect -o json      # one JSON object per line`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd, &f) },
	}
	f.common.AddFlags(cmd, true)
	fl := cmd.Flags()
	fl.BoolVarP(&f.timestamp, "timestamp", "t", false, "include a TIME(s) column: seconds since the first event")
	fl.BoolVarP(&f.printUID, "print-uid", "U", false, "include a UID column")
	fl.BoolVarP(&f.lport, "lport", "L", false, "include the local port (LPORT); events wait for the port to be chosen")
	fl.BoolVarP(&f.count, "count", "c", false, "count connects per source, destination and port; print the counts at the end")
	fl.BoolVar(&f.outcome, "outcome", false, "add the handshake's result (established, refused, timeout, error) and latency in µs")
	fl.IntVarP(&f.uid, "uid", "u", -1, "trace this UID only")
	fl.StringVarP(&f.ports, "port", "P", "", "trace these destination `PORTS` only (comma-separated)")
	f.family.AddFlags(cmd)
	return cmd
}

func (f *flags) config() (Config, error) {
	cfg := Config{PID: f.common.PID, UID: f.uid, LocalPort: f.lport, Outcome: f.outcome, Hook: f.common.Hook}
	if err := f.common.Validate(); err != nil {
		return cfg, err
	}
	var err error
	if cfg.Family, err = f.family.Value(); err != nil {
		return cfg, err
	}
	if f.uid < -1 {
		return cfg, cli.Usagef("uid %d: must be positive", f.uid)
	}
	cfg.Ports, err = cli.ParsePorts(f.ports)
	return cfg, err
}

func run(cmd *cobra.Command, f *flags) error {
	cfg, err := f.config()
	if err != nil {
		return err
	}
	t, err := New(cfg)
	if err != nil {
		return err
	}
	defer t.Close()
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, f.table())
	if f.count {
		return runCount(cmd, f, t, out)
	}
	return cli.Stream(cmd, &f.common, t, out, "TCP connects", func(e *Event) { out.Event(e) })
}

func (f *flags) table() output.Table[Event] {
	var t output.Table[Event]
	if f.timestamp {
		t = append(t, output.SinceFirst(func(e *Event) uint64 { return e.KtimeNs }))
	}
	if f.printUID {
		t = append(t, output.Column[Event]{Name: "UID", Width: 6, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.UID) }})
	}
	t = append(t,
		output.Column[Event]{Name: "PID", Width: 6, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.PID) }},
		output.Column[Event]{Name: "COMM", Width: 12, Trunc: true, Append: func(b []byte, e *Event) []byte { return append(b, e.Comm.Bytes()...) }},
		output.Column[Event]{Name: "IP", Width: 2, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Family) }},
		output.Column[Event]{Name: "SADDR", Width: 16, Append: func(b []byte, e *Event) []byte { return e.Saddr.AppendTo(b) }},
	)
	if f.lport {
		t = append(t, output.Column[Event]{Name: "LPORT", Width: 6, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Sport) }})
	}
	t = append(t,
		output.Column[Event]{Name: "DADDR", Width: 16, Append: func(b []byte, e *Event) []byte { return e.Daddr.AppendTo(b) }},
		output.Column[Event]{Name: "DPORT", Width: 5, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Dport) }},
	)
	if f.outcome {
		t = append(t,
			output.Column[Event]{Name: "OUTCOME", Width: 11, Append: func(b []byte, e *Event) []byte { return append(b, e.Outcome.String()...) }},
			output.Column[Event]{Name: "LAT(us)", Append: func(b []byte, e *Event) []byte { return output.Uint(b, uint64(e.LatencyUS)) }},
		)
	}
	return t
}

// countKey is what -c counts by, as BCC does.
type countKey struct {
	Saddr netip.Addr `json:"saddr"`
	Daddr netip.Addr `json:"daddr"`
	Dport uint16     `json:"dport"`
}

type countRow struct {
	countKey
	Count uint64 `json:"count"`
}

func runCount(cmd *cobra.Command, f *flags, t *probe.Tracer[Event], out *output.Writer[Event]) error {
	counts := map[countKey]uint64{}
	err := cli.Trace(cmd, &f.common, t, "TCP connects", func(e *Event) {
		counts[countKey{Saddr: e.Saddr, Daddr: e.Daddr, Dport: e.Dport}]++
	}, nil)
	if err != nil {
		return err
	}
	rows := make([]countRow, 0, len(counts))
	for k, n := range counts {
		rows = append(rows, countRow{countKey: k, Count: n})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Count > rows[j].Count })
	if out.Format() == output.JSON {
		for _, r := range rows {
			out.Value(r)
		}
	} else {
		out.Raw(countTable.AppendHeader([]byte{'\n'}))
		var b []byte
		for i := range rows {
			b = countTable.AppendRow(b[:0], &rows[i])
			out.Raw(b)
		}
	}
	return cli.Finish(cmd, t.Session, out)
}

var countTable = output.Table[countRow]{
	{Name: "LADDR", Width: 25, Append: func(b []byte, r *countRow) []byte { return r.Saddr.AppendTo(b) }},
	{Name: "RADDR", Width: 25, Append: func(b []byte, r *countRow) []byte { return r.Daddr.AppendTo(b) }},
	{Name: "RPORT", Width: 20, Append: func(b []byte, r *countRow) []byte { return output.Uint(b, r.Dport) }},
	{Name: "CONNECTS", Append: func(b []byte, r *countRow) []byte { return output.Uint(b, r.Count) }},
}
