package eperm

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common   cli.Common
	cfg      Config
	interval int
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl eperm                # count failures until Ctrl-C
  owl eperm -i 5           # print the counts every 5 seconds
  owl eperm -e             # print each failure
  owl eperm -p 181 -d 10   # process 181 for 10 seconds`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Flags().BoolVarP(&f.cfg.Stream, "events", "e", false, "print each failure instead of counts")
	cmd.Flags().IntVarP(&f.interval, "interval", "i", 0, "print the counts every `SECONDS` as well as on exit")
	return cmd
}

const what = "EPERM and EACCES failures"

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	every, err := cli.Seconds(cmd, "interval", f.interval)
	if err != nil {
		return err
	}
	if f.cfg.Stream && every > 0 {
		return cli.Usagef("-i prints counts; it does not go with -e")
	}
	src, err := Open(f.cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	if f.cfg.Stream {
		return cli.Stream(cmd, &f.common, src.Source, eventTable, what)
	}
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, countTable)
	return cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Event]{
		What:     what,
		NoHeader: true,
		Report:   func(now time.Time) error { return report(out, src, now) },
		Every:    every,
	})
}

// report prints the counts so far: in text under the time and a header,
// in JSON one object per line.
func report(out *output.Writer[Count], src *Source, now time.Time) error {
	counts, err := src.Counts(now)
	if err != nil {
		return err
	}
	if out.Format() == output.JSON {
		for i := range counts {
			if err := out.Value(&counts[i]); err != nil {
				return err
			}
		}
		return nil
	}
	b := now.AppendFormat([]byte{'\n'}, "15:04:05\n")
	b = countTable.AppendHeader(b)
	for i := range counts {
		b = countTable.AppendRow(b, &counts[i])
	}
	out.Raw(b)
	return nil
}

var eventTable = output.Table[Event]{
	output.Clock[Event](8),
	output.PID[Event](6),
	output.Comm[Event](16),
	{Name: "SYSCALL", Width: 16, Append: func(b []byte, e *Event) []byte { return appendSyscall(b, e.Syscall, e.IA32) }},
	{Name: "ERRNO", Append: func(b []byte, e *Event) []byte { return append(b, e.Errno...) }},
}

var countTable = output.Table[Count]{
	{Name: "PID", Width: 6, Append: func(b []byte, c *Count) []byte { return output.Uint(b, c.PID) }},
	{Name: "COMM", Width: 16, Append: func(b []byte, c *Count) []byte { return c.Comm.AppendMax(b, 16) }},
	{Name: "SYSCALL", Width: 16, Append: func(b []byte, c *Count) []byte { return appendSyscall(b, c.Syscall, c.IA32) }},
	{Name: "ERRNO", Width: 7, Append: func(b []byte, c *Count) []byte { return append(b, c.Errno...) }},
	{Name: "COUNT", Append: func(b []byte, c *Count) []byte { return output.Uint(b, c.Count) }},
}

// appendSyscall appends the name, as ia32:NAME for a 32-bit syscall.
func appendSyscall(b []byte, name string, ia32 bool) []byte {
	if ia32 {
		b = append(b, "ia32:"...)
	}
	return append(b, name...)
}
