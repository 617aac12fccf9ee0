package tcpaccept

import (
	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common    cli.Common
	net       cli.Net
	timestamp bool
	clock     bool
	cfg       Config
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl tcpaccept              # trace all TCP accepts
  owl tcpaccept -T           # include a TIME (HH:MM:SS) column
  owl tcpaccept -t           # include a TIME(s) column
  owl tcpaccept -p 181       # only process 181
  owl tcpaccept -P 80,81     # only local ports 80 and 81
  owl tcpaccept -4 -o json   # IPv4 only, one JSON object per line`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	fl := cmd.Flags()
	fl.BoolVarP(&f.timestamp, "timestamp", "t", false, "include a TIME(s) column: seconds since the first event")
	fl.BoolVarP(&f.clock, "time", "T", false, "include a TIME column (HH:MM:SS)")
	f.net.AddFlags(cmd, "local")
	return cmd
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	var err error
	if opts.Net, err = f.net.Filter(); err != nil {
		return err
	}
	src, err := Open(f.cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	return cli.Stream(cmd, &f.common, src, f.table(), "TCP accepts")
}

func (f *flags) table() output.Table[Event] {
	var t output.Table[Event]
	if f.clock {
		t = append(t, output.Clock[Event](8))
	}
	if f.timestamp {
		t = append(t, output.Elapsed[Event]())
	}
	return append(t,
		output.PID[Event](6),
		output.Comm[Event](12),
		output.Column[Event]{Name: "IP", Width: 2, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Family) }},
		output.Column[Event]{Name: "RADDR", Width: 16, Append: func(b []byte, e *Event) []byte { return e.Raddr.AppendTo(b) }},
		output.Column[Event]{Name: "RPORT", Width: 5, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Rport) }},
		output.Column[Event]{Name: "LADDR", Width: 16, Append: func(b []byte, e *Event) []byte { return e.Laddr.AppendTo(b) }},
		output.Column[Event]{Name: "LPORT", Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Lport) }},
	)
}
