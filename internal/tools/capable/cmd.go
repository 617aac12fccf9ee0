package capable

import (
	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common cli.Common
	extra  bool
	cfg    Config
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl capable              # trace capability checks
  owl capable -v           # include checks that do not audit (fexit/kprobe hooks)
  owl capable -p 181 -K    # process 181, with kernel stacks
  owl capable -K -U --unique  # each capability, verdict and stack once
  owl capable -x -S        # TID, INSETID and SYSCALL columns
  owl capable -u 1000 -o json`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	fl := cmd.Flags()
	fl.BoolVarP(&f.cfg.Verbose, "verbose", "v", false, "include checks that do not audit (fexit and kprobe hooks; the tracepoint shows all)")
	fl.BoolVarP(&f.cfg.KStack, "kernel-stack", "K", false, "print the kernel stack of each check")
	fl.BoolVarP(&f.cfg.UStack, "user-stack", "U", false, "print the user stack of each check")
	fl.BoolVarP(&f.extra, "extra", "x", false, "include TID and INSETID columns")
	fl.BoolVar(&f.cfg.Unique, "unique", false, "print each pid, capability and verdict (with -p) or each capability, verdict and stack once")
	fl.BoolVarP(&f.cfg.Syscall, "syscall", "S", false, "include the syscall during which the check happened (ia32:NAME for a 32-bit one)")
	return cmd
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	cfg := f.cfg
	cfg.UniqueByPID = cfg.Unique && opts.Task.PID != 0
	src, err := Open(cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, f.table())
	if cfg.KStack || cfg.UStack {
		out.SetTrailer(appendStacks)
	}
	return cli.Run(cmd, &f.common, src, out, cli.Loop[Event]{What: "capability checks", Emit: func(e *Event) { out.Event(e) }})
}

func (f *flags) table() output.Table[Event] {
	t := output.Table[Event]{
		output.Clock[Event](9),
		output.UID[Event](6),
		output.PID[Event](6),
	}
	if f.extra {
		t = append(t, output.TID[Event](6))
	}
	t = append(t,
		output.Comm[Event](16),
		output.Column[Event]{Name: "CAP", Width: 4, Append: func(b []byte, e *Event) []byte { return output.Int(b, e.Cap) }},
		output.Column[Event]{Name: "NAME", Width: 20, Append: func(b []byte, e *Event) []byte { return append(b, e.CapName...) }},
		output.Column[Event]{Name: "AUDIT", Width: 5, Append: func(b []byte, e *Event) []byte { return appendFlag(b, e.Audit) }},
	)
	if f.extra {
		t = append(t, output.Column[Event]{Name: "INSETID", Width: 7, Append: func(b []byte, e *Event) []byte { return appendFlag(b, e.InSetID) }})
	}
	t = append(t, output.Column[Event]{Name: "VERDICT", Width: 7, Append: func(b []byte, e *Event) []byte { return append(b, e.Verdict...) }})
	if f.cfg.Syscall {
		t = append(t, output.Column[Event]{Name: "SYSCALL", Append: func(b []byte, e *Event) []byte {
			if e.Syscall == "" {
				return append(b, '-')
			}
			if e.IA32 {
				b = append(b, "ia32:"...)
			}
			return append(b, e.Syscall...)
		}})
	}
	return t
}

// appendFlag prints 1 or 0 like BCC, - when the hook cannot tell.
func appendFlag(b []byte, v *bool) []byte {
	switch {
	case v == nil:
		return append(b, '-')
	case *v:
		return append(b, '1')
	}
	return append(b, '0')
}

// appendStacks prints the stacks indented under the event, kernel first,
// then a blank line, as the book's tools do.
func appendStacks(b []byte, e *Event) []byte {
	for _, st := range [][]syms.Frame{e.KStack, e.UStack} {
		for _, fr := range st {
			b = append(b, "        "...)
			b = append(b, fr.String()...)
			b = append(b, '\n')
		}
	}
	return append(b, '\n')
}
