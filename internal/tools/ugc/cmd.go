package ugc

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/ucalls"
)

type flags struct {
	common  cli.Common
	lang    string
	millis  bool
	minimum int
	filter  string
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl ugc -p 185              # GCs of process 185 (language detected)
  owl ugc -l ruby -p 1344 -m  # Ruby GC stages, times in ms
  owl ugc -M 10 -p 185        # only GCs longer than 10 ms
  owl ugc -F full -p 185      # only Java's full collections`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Use = "ugc [flags] -p PID"
	cmd.Flags().StringVarP(&f.lang, "language", "l", "", "the process's language: java, python or ruby (default: detected)")
	cmd.Flags().BoolVarP(&f.millis, "milliseconds", "m", false, "print times in milliseconds (default: microseconds)")
	cmd.Flags().IntVarP(&f.minimum, "minimum", "M", 0, "print only GCs longer than `MS` milliseconds")
	cmd.Flags().StringVarP(&f.filter, "filter", "F", "", "print only GCs whose description contains `TEXT`")
	return cmd
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	pid := opts.Task.PID
	if pid == 0 {
		return cli.Usagef("ugc needs a process: -p PID")
	}
	if f.minimum < 0 || f.minimum > 1<<30 {
		return cli.Usagef("-M %d: want 0 or more milliseconds", f.minimum)
	}
	lang, err := ucalls.Language(f.lang, pid)
	if err != nil {
		return err
	}
	cfg, err := Resolve(lang, pid)
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	cfg.Min = time.Duration(f.minimum) * time.Millisecond
	src, err := Open(cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	out := output.NewWriter[Event](cmd.OutOrStdout(), f.common.Format, table(f.millis, time.Now()))
	return cli.Run(cmd, &f.common, src, out, cli.Loop[Event]{
		What: fmt.Sprintf("garbage collections in %s process %d", lang, pid),
		Emit: func(e *Event) {
			if f.filter == "" || strings.Contains(string(e.Description), f.filter) {
				out.Event(e)
			}
		},
	})
}

// table is BCC's ugc columns: START (seconds since tracing began), the
// time taken and the description.
func table(millis bool, start time.Time) output.Table[Event] {
	unit, div := "TIME (us)", 1e3
	if millis {
		unit, div = "TIME (ms)", 1e6
	}
	return output.Table[Event]{
		{Name: "START", Width: 8, Append: func(b []byte, e *Event) []byte {
			return fmt.Appendf(b, "%.3f", max(0, e.Time.Time.Sub(start).Seconds()))
		}},
		{Name: unit, Width: 9, Append: func(b []byte, e *Event) []byte {
			return fmt.Appendf(b, "%.2f", float64(e.ElapsedNs)/div)
		}},
		{Name: "DESCRIPTION", Append: func(b []byte, e *Event) []byte { return e.Description.Append(b) }},
	}
}
