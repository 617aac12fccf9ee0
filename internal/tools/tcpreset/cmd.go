package tcpreset

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common  cli.Common
	net     cli.Net
	summary int
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl tcpreset               # one line per reset sent
  owl tcpreset -s 5          # every 5 s, resets and distinct local ports per remote address
  owl tcpreset -o json -d 60 # JSON lines for one minute
  owl tcpreset -4 -P 22,443  # IPv4 resets sent from local ports 22 and 443 only`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Flags().IntVarP(&f.summary, "summary", "s", 0, "every `SECONDS`, print per remote address the resets and distinct local ports instead of each reset (counted in the kernel)")
	f.net.AddFlags(cmd, "local")
	return cmd
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	every, err := cli.Seconds(cmd, "summary", f.summary)
	if err != nil {
		return err
	}
	if opts.Net, err = f.net.Filter(); err != nil {
		return err
	}
	src, err := Open(Config{Summary: every > 0}, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	if every == 0 {
		return cli.Stream(cmd, &f.common, src.Source, table, "TCP resets")
	}
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, summaryTable)
	var b []byte
	return cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Event]{What: "TCP resets", Every: every, Report: func(now time.Time) error {
		rows, err := src.Remotes(now)
		if err != nil {
			return err
		}
		for i := range rows {
			if out.Format() == output.JSON {
				out.Value(&rows[i])
				continue
			}
			b = summaryTable.AppendRow(b[:0], &rows[i])
			out.Raw(b)
		}
		return nil
	}})
}

var table = output.Table[Event]{
	{Name: "TIME", Width: 8, Append: func(b []byte, e *Event) []byte { return output.AppendClock(b, e.Time.Time) }},
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

// summaryTable is -s: its header is printed once at the start, then lines
// every interval.
var summaryTable = output.Table[Remote]{
	{Name: "TIME", Width: 8, Append: func(b []byte, r *Remote) []byte { return output.AppendClock(b, r.Time.Time) }},
	{Name: "RADDR", Width: 39, Append: func(b []byte, r *Remote) []byte { return r.Raddr.AppendTo(b) }},
	{Name: "RESETS", Width: 8, Append: func(b []byte, r *Remote) []byte { return output.Uint(b, r.Resets) }},
	{Name: "PORTS", Append: func(b []byte, r *Remote) []byte { return output.Int(b, r.Ports) }},
}
