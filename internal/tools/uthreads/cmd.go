package uthreads

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common cli.Common
	lang   string
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl uthreads -p 185          # threads of Java process 185
  owl uthreads -l java -p 185 -o json`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Use = "uthreads [flags] -p PID"
	cmd.Flags().StringVarP(&f.lang, "language", "l", "", "the process's language: java (default: detected)")
	return cmd
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	pid := opts.Task.PID
	if pid == 0 {
		return cli.Usagef("uthreads needs a process: -p PID")
	}
	lang := langs.Java
	var err error
	if f.lang != "" {
		if lang, err = langs.Parse(f.lang, langs.Java); err != nil {
			return cli.Usagef("%v", err)
		}
	} else if lang, err = langs.Detect(pid); err != nil {
		return &cli.UsageError{Err: err}
	}
	cfg, err := Resolve(lang, pid)
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	src, err := Open(cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	return cli.Stream(cmd, &f.common, src, table(time.Now()), fmt.Sprintf("thread events in process %d (language: %s)", pid, lang))
}

// table is BCC's uthreads columns.
func table(start time.Time) output.Table[Event] {
	return output.Table[Event]{
		{Name: "TIME", Width: 8, Append: func(b []byte, e *Event) []byte {
			return fmt.Appendf(b, "%.3f", max(0, e.Time.Time.Sub(start).Seconds()))
		}},
		{Name: "ID", Width: 16, Append: func(b []byte, e *Event) []byte {
			return fmt.Appendf(b, "R=%d/N=%d", e.RuntimeID, e.NativeID)
		}},
		{Name: "TYPE", Width: 8, Append: func(b []byte, e *Event) []byte { return append(b, e.Type...) }},
		{Name: "DESCRIPTION", Append: func(b []byte, e *Event) []byte { return e.Name.Append(b) }},
	}
}
