package tcpaccept

import (
	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
)

const summary = "Trace passive TCP accepts"

// Tool is tcpaccept's registry entry.
var Tool = cli.Tool{
	Name:    "tcpaccept",
	Summary: summary,
	Command: command,
	Probe:   Probe,
}

type flags struct {
	common    cli.Common
	timestamp bool
	clock     bool
	ports     string
	family    cli.Family
}

func command() *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "tcpaccept [flags]",
		Short: summary,
		Long: `Trace passive TCP accepts (accept(2)/accept4(2) returning a TCP socket),
IPv4 and IPv6, in the accepting process.

Hooks, in order of preference: the tracepoints syscalls:sys_exit_accept4 and
sys_exit_accept (the new fd is resolved to its socket through the task's file
table), then fexit, then a kretprobe on inet_csk_accept. With the
tracepoints, accepts that were already blocked when owl started are seen too
(return probes attached during a call never see it return).

JSON fields: time, pid, comm, uid, family (4|6), raddr, rport, laddr, lport.`,
		Example: `  owl tcpaccept              # trace all TCP accepts
  owl tcpaccept -T           # include a TIME (HH:MM:SS) column
  owl tcpaccept -t           # include a TIME(s) column
  owl tcpaccept -p 181       # only process 181
  owl tcpaccept -P 80,81     # only local ports 80 and 81
  owl tcpaccept -4 -o json   # IPv4 only, one JSON object per line`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd, &f) },
	}
	f.common.AddFlags(cmd, true)
	fl := cmd.Flags()
	fl.BoolVarP(&f.timestamp, "timestamp", "t", false, "include a TIME(s) column: seconds since the first event")
	fl.BoolVarP(&f.clock, "time", "T", false, "include a TIME column (HH:MM:SS)")
	fl.StringVarP(&f.ports, "port", "P", "", "trace these local `PORTS` only (comma-separated)")
	f.family.AddFlags(cmd)
	return cmd
}

func (f *flags) config() (Config, error) {
	cfg := Config{PID: f.common.PID, Hook: f.common.Hook}
	if err := f.common.Validate(); err != nil {
		return cfg, err
	}
	var err error
	if cfg.Family, err = f.family.Value(); err != nil {
		return cfg, err
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
	return cli.Stream(cmd, &f.common, t, out, "TCP accepts", func(e *Event) { out.Event(e) })
}

func (f *flags) table() output.Table[Event] {
	var t output.Table[Event]
	if f.clock {
		t = append(t, output.Column[Event]{Name: "TIME", Width: 8, Append: func(b []byte, e *Event) []byte { return output.Clock(b, e.Time) }})
	}
	if f.timestamp {
		t = append(t, output.SinceFirst(func(e *Event) uint64 { return e.KtimeNs }))
	}
	return append(t,
		output.Column[Event]{Name: "PID", Width: 6, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.PID) }},
		output.Column[Event]{Name: "COMM", Width: 12, Trunc: true, Append: func(b []byte, e *Event) []byte { return append(b, e.Comm.Bytes()...) }},
		output.Column[Event]{Name: "IP", Width: 2, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Family) }},
		output.Column[Event]{Name: "RADDR", Width: 16, Append: func(b []byte, e *Event) []byte { return e.Raddr.AppendTo(b) }},
		output.Column[Event]{Name: "RPORT", Width: 5, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Rport) }},
		output.Column[Event]{Name: "LADDR", Width: 16, Append: func(b []byte, e *Event) []byte { return e.Laddr.AppendTo(b) }},
		output.Column[Event]{Name: "LPORT", Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Lport) }},
	)
}
