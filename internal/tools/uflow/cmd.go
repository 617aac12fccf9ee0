package uflow

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/ucalls"
)

type flags struct {
	common        cli.Common
	lang          string
	class, method string
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl uflow -p 185                    # calls of process 185 (language detected)
  owl uflow -l java -M step -p 185    # only methods whose name starts with step
  owl uflow -C '<stdin>' -p 180       # only Python functions typed at the REPL`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Use = "uflow [flags] -p PID"
	cmd.Flags().StringVarP(&f.lang, "language", "l", "", "the process's language: java, python or ruby (default: detected)")
	cmd.Flags().StringVarP(&f.class, "class", "C", "", "print only methods of classes (Python: files) starting with `PREFIX`")
	cmd.Flags().StringVarP(&f.method, "method", "M", "", "print only methods whose name starts with `PREFIX`")
	return cmd
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	pid := opts.Task.PID
	if pid == 0 {
		return cli.Usagef("uflow needs a process: -p PID")
	}
	if len(f.class) > MaxPrefix || len(f.method) > MaxPrefix {
		return cli.Usagef("-C/-M: %v", ErrPrefix)
	}
	lang, err := ucalls.Language(f.lang, pid)
	if err != nil {
		return err
	}
	cfg, err := Resolve(lang, pid)
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	cfg.ClassPrefix, cfg.MethodPrefix = f.class, f.method
	src, err := Open(cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	return cli.Stream(cmd, &f.common, src, table(time.Now()), fmt.Sprintf("method calls in %s process %d", lang, pid))
}

// table is BCC's uflow columns but CPU: PID, TID, TIME(us) since tracing
// began, and the method indented by depth.
func table(start time.Time) output.Table[Event] {
	return output.Table[Event]{
		output.PID[Event](6),
		output.TID[Event](6),
		{Name: "TIME(us)", Width: 8, Append: func(b []byte, e *Event) []byte {
			return fmt.Appendf(b, "%.3f", max(0, float64(e.Time.Time.Sub(start).Nanoseconds())/1e3))
		}},
		{Name: "METHOD", Append: func(b []byte, e *Event) []byte { return appendMethod(b, e) }},
	}
}

func appendMethod(b []byte, e *Event) []byte {
	for i := uint32(1); i < e.Depth && i < 200; i++ {
		b = append(b, "  "...)
	}
	if e.Return {
		b = append(b, "<- "...)
	} else {
		b = append(b, "-> "...)
	}
	b = append(e.Class.Append(b), '.')
	b = e.Method.Append(b)
	if e.Return && !e.Unpaired {
		b = fmt.Appendf(b, " [%.3f us]", float64(e.ElapsedNs)/1e3)
	}
	return b
}
