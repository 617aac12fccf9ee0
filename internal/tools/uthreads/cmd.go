package uthreads

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common cli.Common
	lang   string
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl uthreads -p 185          # threads of Java process 185
  owl uthreads -l java -p 185 -o json
  owl uthreads -l c -p 2020         # pthreads of C program 2020, with start routines`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Use = "uthreads [flags] -p PID"
	cmd.Flags().StringVarP(&f.lang, "language", "l", "", "the process's language: java, or c (also none) for pthreads (default: detected)")
	return cmd
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	pid := opts.Task.PID
	if pid == 0 {
		return cli.Usagef("uthreads needs a process: -p PID")
	}
	lang, err := language(f.lang, pid)
	if err != nil {
		return err
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
	return cli.Stream(cmd, &f.common, src, table(time.Now(), lang == langs.C), fmt.Sprintf("thread events in process %d (language: %s)", pid, lang))
}

// language is -l (none is BCC's name for c), else pid's detected one.
func language(s string, pid int) (langs.Lang, error) {
	if s == "none" {
		s = string(langs.C)
	}
	if s != "" {
		l, err := langs.Parse(s, langs.Java, langs.C)
		if err != nil {
			return "", cli.Usagef("%v", err)
		}
		return l, nil
	}
	l, err := langs.Detect(pid)
	if err != nil {
		return "", &cli.UsageError{Err: err}
	}
	if l != langs.Java && l != langs.C {
		return "", cli.Usagef("process %d is a %s program, which has no thread probes: give -l c to see its pthreads", pid, l)
	}
	return l, nil
}

// table is BCC's uthreads columns.
func table(start time.Time, c bool) output.Table[Event] {
	return output.Table[Event]{
		{Name: "TIME", Width: 8, Append: func(b []byte, e *Event) []byte {
			return fmt.Appendf(b, "%.3f", max(0, e.Time.Time.Sub(start).Seconds()))
		}},
		{Name: "ID", Width: 16, Append: func(b []byte, e *Event) []byte {
			return fmt.Appendf(b, "R=%d/N=%d", e.RuntimeID, e.NativeID)
		}},
		{Name: "TYPE", Width: 8, Append: func(b []byte, e *Event) []byte { return append(b, e.Type...) }},
		{Name: "DESCRIPTION", Append: func(b []byte, e *Event) []byte {
			if c {
				return appendC(b, e)
			}
			return e.Name.Append(b)
		}},
	}
}

// appendC appends a C thread's start routine, "function [file]" ("-"
// when its start was not seen), and at stop its name in parentheses.
func appendC(b []byte, e *Event) []byte {
	if r := e.Routine; r != nil {
		if r.Offset == 0 && r.Symbol != syms.Unknown {
			b = event.AppendEscaped(b, []byte(r.Symbol))
		} else {
			b = append(b, syms.Frame{Symbol: r.Symbol, Offset: r.Offset}.String()...)
		}
		b = append(b, " ["...)
		b = event.AppendEscaped(b, []byte(r.Module))
		b = append(b, ']')
	} else {
		b = append(b, '-')
	}
	if e.Type == "stop" {
		b = append(b, " ("...)
		b = e.Name.Append(b)
		b = append(b, ')')
	}
	return b
}
