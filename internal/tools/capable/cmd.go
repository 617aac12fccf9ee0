package capable

import (
	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/syms"
)

const summary = "Trace security capability checks"

// Tool is capable's registry entry.
var Tool = cli.Tool{
	Name:    "capable",
	Summary: summary,
	Command: command,
	Probe:   Probe,
}

type flags struct {
	common  cli.Common
	verbose bool
	kstack  bool
	ustack  bool
	extra   bool
	unique  bool
	syscall bool
	uid     int
}

func command() *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "capable [flags]",
		Short: summary,
		Long: `Trace security capability checks (cap_capable): which process asked for
which capability, and whether it was granted (VERDICT allow/deny).

Hooks, in order of preference: the tracepoint capability:cap_capable (Linux
6.14+), then fexit, then a kprobe and kretprobe on cap_capable. The tracepoint does not
give cap_capable's opts, so with it AUDIT and INSETID print - (null in JSON)
and every check is shown, as if -v were given: owl does not invent values.
With the fexit and kprobe hooks, checks that do not audit are hidden unless -v.

-K and -U print the kernel and user stacks under each event; user frames are
symbolized from the ELF symbols of the mapping they fall in, the Go pclntab,
or /tmp/perf-PID.map (JIT), else [unknown] with the module. User stacks need
frame pointers in the traced code.

JSON fields: time, uid, pid, tid, comm, cap, cap_name, audit, insetid,
verdict, syscall (with -S, else null), kstack[], ustack[] (frames: addr,
symbol, offset, module).`,
		Example: `  owl capable              # trace capability checks
  owl capable -v           # include checks that do not audit (fexit/kprobe hooks)
  owl capable -p 181 -K    # process 181, with kernel stacks
  owl capable -K -U --unique  # each capability and stack once
  owl capable -x -S        # TID, INSETID and SYSCALL columns
  owl capable -u 1000 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd, &f) },
	}
	f.common.AddFlags(cmd, true)
	fl := cmd.Flags()
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "include checks that do not audit (fexit and kprobe hooks; the tracepoint shows all)")
	fl.BoolVarP(&f.kstack, "kernel-stack", "K", false, "print the kernel stack of each check")
	fl.BoolVarP(&f.ustack, "user-stack", "U", false, "print the user stack of each check")
	fl.BoolVarP(&f.extra, "extra", "x", false, "include TID and INSETID columns")
	fl.BoolVar(&f.unique, "unique", false, "print each pid and capability (with -p) or each capability and stack once")
	fl.BoolVarP(&f.syscall, "syscall", "S", false, "include the syscall during which the check happened")
	fl.IntVarP(&f.uid, "uid", "u", -1, "trace this UID only")
	return cmd
}

func run(cmd *cobra.Command, f *flags) error {
	if err := f.common.Validate(); err != nil {
		return err
	}
	if f.uid < -1 {
		return cli.Usagef("uid %d: must be positive", f.uid)
	}
	t, err := New(Config{PID: f.common.PID, UID: f.uid, Verbose: f.verbose, KStack: f.kstack,
		UStack: f.ustack, Syscall: f.syscall, Hook: f.common.Hook})
	if err != nil {
		return err
	}
	defer t.Close()
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, f.table())
	if f.kstack || f.ustack {
		out.SetTrailer(appendStacks)
	}
	seen := unique{}
	return cli.Stream(cmd, &f.common, t, out, "capability checks", func(e *Event) {
		if !f.unique || seen.first(e, f.common.PID != 0) {
			out.Event(e)
		}
	})
}

// unique remembers what --unique printed: pid and capability with -p, else
// capability and stacks (the kernel gives the same id to the same stack).
type unique map[uniqueKey]bool

type uniqueKey struct {
	pid            uint32
	cap            int32
	kstack, ustack int32
}

// first reports whether e is the first of its kind, and remembers it.
func (u unique) first(e *Event, byPID bool) bool {
	k := uniqueKey{cap: e.Cap, kstack: e.kstack, ustack: e.ustack}
	if byPID {
		k = uniqueKey{pid: e.PID, cap: e.Cap}
	}
	if u[k] {
		return false
	}
	u[k] = true
	return true
}

func (f *flags) table() output.Table[Event] {
	t := output.Table[Event]{
		{Name: "TIME", Width: 9, Append: func(b []byte, e *Event) []byte { return output.Clock(b, e.Time) }},
		{Name: "UID", Width: 6, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.UID) }},
		{Name: "PID", Width: 6, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.PID) }},
	}
	if f.extra {
		t = append(t, output.Column[Event]{Name: "TID", Width: 6, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.TID) }})
	}
	t = append(t,
		output.Column[Event]{Name: "COMM", Width: 16, Trunc: true, Append: func(b []byte, e *Event) []byte { return append(b, e.Comm.Bytes()...) }},
		output.Column[Event]{Name: "CAP", Width: 4, Append: func(b []byte, e *Event) []byte { return output.Int(b, e.Cap) }},
		output.Column[Event]{Name: "NAME", Width: 20, Append: func(b []byte, e *Event) []byte { return append(b, e.CapName...) }},
		output.Column[Event]{Name: "AUDIT", Width: 5, Append: func(b []byte, e *Event) []byte { return appendFlag(b, e.Audit) }},
	)
	if f.extra {
		t = append(t, output.Column[Event]{Name: "INSETID", Width: 7, Append: func(b []byte, e *Event) []byte { return appendFlag(b, e.InSetID) }})
	}
	t = append(t, output.Column[Event]{Name: "VERDICT", Width: 7, Append: func(b []byte, e *Event) []byte { return append(b, e.Verdict...) }})
	if f.syscall {
		t = append(t, output.Column[Event]{Name: "SYSCALL", Append: func(b []byte, e *Event) []byte {
			if e.Syscall == "" {
				return append(b, '-')
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
