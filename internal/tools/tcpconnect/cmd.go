package tcpconnect

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common    cli.Common
	net       cli.Net
	timestamp bool
	printUID  bool
	cfg       Config
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl tcpconnect              # trace all TCP connects
  owl tcpconnect -t           # include a timestamp column
  owl tcpconnect -p 181       # only process 181
  owl tcpconnect -P 80,81     # only destination ports 80 and 81
  owl tcpconnect -6 -L        # IPv6 only, with the local port
  owl tcpconnect -U -u 1000   # show UIDs, only UID 1000
  owl tcpconnect -c -d 10     # count connects per source/destination/port for 10 s
  owl tcpconnect --outcome    # add each handshake's result and latency
  owl tcpconnect --ustack -p 181  # with the user stack of each connect (Python frames too)
  owl tcpconnect -o json      # one JSON object per line`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	fl := cmd.Flags()
	fl.BoolVarP(&f.timestamp, "timestamp", "t", false, "include a TIME(s) column: seconds since the first event")
	fl.BoolVarP(&f.printUID, "print-uid", "U", false, "include a UID column")
	fl.BoolVarP(&f.cfg.LocalPort, "lport", "L", false, "include the local port (LPORT); events wait for the port to be chosen")
	fl.BoolVarP(&f.cfg.Count, "count", "c", false, "count connects per source, destination and port; print the counts at the end")
	fl.BoolVar(&f.cfg.Outcome, "outcome", false, "add the handshake's result (established, refused, timeout, error, aborted; pending at the end) and latency in µs")
	fl.BoolVar(&f.cfg.UStack, "ustack", false, "print the user stack of each connect (-U is BCC's UID column); not with -c")
	f.net.AddFlags(cmd, "destination")
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if f.cfg.UStack && f.cfg.Count {
			return cli.Usagef("--ustack: not with -c (counts have no stacks)")
		}
		return nil
	}
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
	if !f.cfg.Count {
		out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, f.table())
		if f.cfg.UStack {
			out.SetTrailer(appendStack)
		}
		var untracked uint64
		err := cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Event]{What: "TCP connects", Emit: func(e *Event) {
			if e.Outcome == Untracked {
				untracked++
			}
			out.Event(e)
		}})
		if untracked > 0 {
			// Delivered, so not lost, but their rows lack LPORT (-L) or
			// OUTCOME (--outcome).
			fmt.Fprintf(cmd.ErrOrStderr(), "owl: %d connects printed without their end (outcome untracked): over %d were waiting for a handshake at once\n", untracked, pendingSize)
		}
		return err
	}
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, countTable)
	return cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Event]{What: "TCP connects", NoHeader: true, Report: func(time.Time) error {
		counts, err := src.Counts()
		if err != nil {
			return err
		}
		if out.Format() == output.JSON {
			for _, c := range counts {
				out.Value(c)
			}
			return nil
		}
		out.Raw(countTable.AppendHeader([]byte{'\n'}))
		var b []byte
		for i := range counts {
			b = countTable.AppendRow(b[:0], &counts[i])
			out.Raw(b)
		}
		return nil
	}})
}

func (f *flags) table() output.Table[Event] {
	var t output.Table[Event]
	if f.timestamp {
		t = append(t, output.Elapsed[Event]())
	}
	if f.printUID {
		t = append(t, output.UID[Event](6))
	}
	t = append(t,
		output.PID[Event](6),
		output.Comm[Event](12),
		output.Column[Event]{Name: "IP", Width: 2, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Family) }},
		output.Column[Event]{Name: "SADDR", Width: 16, Append: func(b []byte, e *Event) []byte { return e.Saddr.AppendTo(b) }},
	)
	if f.cfg.LocalPort {
		t = append(t, output.Column[Event]{Name: "LPORT", Width: 6, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Sport) }})
	}
	t = append(t,
		output.Column[Event]{Name: "DADDR", Width: 16, Append: func(b []byte, e *Event) []byte { return e.Daddr.AppendTo(b) }},
		output.Column[Event]{Name: "DPORT", Width: 5, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Dport) }},
	)
	if f.cfg.Outcome {
		t = append(t,
			output.Column[Event]{Name: "OUTCOME", Width: 11, Append: func(b []byte, e *Event) []byte { return append(b, e.Outcome.String()...) }},
			output.Column[Event]{Name: "LAT(us)", Append: func(b []byte, e *Event) []byte {
				if e.Outcome == Pending || e.Outcome == Untracked {
					return append(b, '-') // no end, so no latency
				}
				return output.Uint(b, uint64(e.LatencyUS))
			}},
		)
	}
	return t
}

var countTable = output.Table[Count]{
	{Name: "LADDR", Width: 25, Append: func(b []byte, r *Count) []byte { return r.Saddr.AppendTo(b) }},
	{Name: "RADDR", Width: 25, Append: func(b []byte, r *Count) []byte { return r.Daddr.AppendTo(b) }},
	{Name: "RPORT", Width: 20, Append: func(b []byte, r *Count) []byte { return output.Uint(b, r.Dport) }},
	{Name: "CONNECTS", Append: func(b []byte, r *Count) []byte { return output.Uint(b, r.Count) }},
}

// appendStack prints the user stack indented under the event, then a
// blank line, as capable -U does.
func appendStack(b []byte, e *Event) []byte {
	for _, fr := range e.UStack {
		b = append(b, "        "...)
		b = append(b, fr.String()...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}
