package stackcount

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/funccount"
	"github.com/owlbpf/owl/internal/uprobe"
)

type flags struct {
	common     cli.Common
	interval   int
	timestamp  bool
	perPID     bool
	kernelOnly bool
	userOnly   bool
	delimited  bool
	folded     bool
	offset     bool
	verbose    bool
	max        int
	stacks     int
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl stackcount ./app:work              # stacks leading to work
  owl stackcount -f ./app:work > out.folded   # folded, for flamegraph.pl
  owl stackcount -p 181 c:malloc         # malloc's callers in process 181
  owl stackcount -P -D 5 'c:str*'        # per process, for 5 seconds
  owl stackcount -K t:sched:sched_switch # kernel stacks only
  owl stackcount -d t:syscalls:sys_enter_getppid  # kernel and user stacks, "--" between
  owl stackcount -Ti 5 -p 181 'main.*'   # Go functions of 181, every 5 seconds`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Use = "stackcount [flags] PATTERN..."
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cli.Usagef("give at least one PATTERN ([PATH_OR_LIB:]FUNCTION or t:GROUP:NAME)")
		}
		return nil
	}
	// BCC's stackcount has -d for its delimiter and -D for the duration:
	// owl's common -d (duration) becomes -D here.
	moveShorthand(cmd, "duration", "D")
	fl := cmd.Flags()
	fl.IntVarP(&f.interval, "interval", "i", 0, "print the stacks counted in each `SECONDS` interval as well as on exit")
	fl.BoolVarP(&f.timestamp, "timestamp", "T", false, "print the time before each report")
	fl.BoolVarP(&f.perPID, "perpid", "P", false, "count the stacks of each process (and comm) apart")
	fl.BoolVarP(&f.kernelOnly, "kernel-stacks-only", "K", false, "kernel stacks only (tracepoints)")
	fl.BoolVarP(&f.userOnly, "user-stacks-only", "U", false, "user stacks only")
	fl.BoolVarP(&f.delimited, "delimited", "d", false, `print "--" between kernel and user stacks ("-" with -f)`)
	fl.BoolVarP(&f.folded, "folded", "f", false, "print folded stacks (frame;frame;frame count) for flame graphs")
	fl.BoolVarP(&f.offset, "offset", "s", false, "print the offset of each frame in its function (func+0x1a)")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print the address of each frame")
	fl.IntVar(&f.max, "max", uprobe.DefaultMax, "refuse patterns matching more than `N` functions")
	fl.IntVar(&f.stacks, "stacks", DefaultStacks, "size of each stack table: distinct kernel and user `STACKS` kept")
	return cmd
}

// moveShorthand gives flag name the shorthand short. pflag cannot change a
// shorthand once the flag is in a set, so the set is rebuilt from the same
// flags (the values and Common's "given" checks stay theirs).
func moveShorthand(cmd *cobra.Command, name, short string) {
	var all []*pflag.Flag
	cmd.Flags().VisitAll(func(f *pflag.Flag) { all = append(all, f) })
	cmd.ResetFlags()
	for _, f := range all {
		if f.Name == name {
			f.Shorthand = short
		}
		cmd.Flags().AddFlag(f)
	}
}

// config checks the flags and expands the patterns (cmd's arguments).
func (f *flags) config(cmd *cobra.Command, pid int) (Config, error) {
	if f.kernelOnly && f.userOnly {
		return Config{}, cli.Usagef("-K and -U exclude each other (both stacks are the default)")
	}
	if f.max < 1 || f.max > funccount.MaxCounters {
		return Config{}, cli.Usagef("--max %d: want 1 to %d", f.max, funccount.MaxCounters)
	}
	if f.stacks < 1 || f.stacks > MaxStacks {
		return Config{}, cli.Usagef("--stacks %d: want 1 to %d", f.stacks, MaxStacks)
	}
	probes, err := funccount.Resolve(cmd.Flags().Args(), uprobe.Options{PID: pid, Max: f.max})
	if err != nil {
		return Config{}, &cli.UsageError{Err: err}
	}
	if f.kernelOnly && len(probes.Tracepoints) == 0 {
		return Config{}, cli.Usagef("-K: only tracepoints (t:GROUP:NAME) have kernel stacks; a user function has none")
	}
	return Config{Probes: probes, KStack: !f.userOnly, UStack: !f.kernelOnly, PerPID: f.perPID, Stacks: f.stacks}, nil
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	every, err := cli.Seconds(cmd, "interval", f.interval)
	if err != nil {
		return err
	}
	cfg, err := f.config(cmd, opts.Task.PID)
	if err != nil {
		return err
	}
	src, err := Open(cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	out := output.NewWriter[Stack](cmd.OutOrStdout(), f.common.Format, nil)
	p := printer{
		folded:    f.folded,
		timestamp: f.timestamp,
		offset:    f.offset,
		verbose:   f.verbose,
		comm:      f.perPID && opts.Task.PID == 0,
		delimiter: f.delimited && cfg.kernelStacks() && cfg.UStack,
	}
	report := func(now time.Time) error {
		stacks, err := src.Stacks(now)
		if err != nil {
			return err
		}
		if out.Format() == output.JSON {
			for i := range stacks {
				if err := out.Value(&stacks[i]); err != nil {
					return err
				}
			}
			return nil
		}
		out.Raw(p.appendReport(nil, stacks, now))
		return nil
	}
	what := fmt.Sprintf("%d functions for %s", cfg.Probes.Len(), quoted(cmd.Flags().Args()))
	return cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Stack]{
		What:     what,
		NoHeader: true,
		Report:   report,
		Every:    every,
	})
}

// quoted writes the patterns as BCC does, "a" "b".
func quoted(patterns []string) string {
	q := make([]string, len(patterns))
	for i, p := range patterns {
		q[i] = strconv.Quote(p)
	}
	return strings.Join(q, " ")
}

// printer prints reports as BCC's stackcount does.
type printer struct {
	folded    bool
	timestamp bool
	offset    bool // -s: func+0x1a
	verbose   bool // -v: the address before each frame
	comm      bool // "comm [pid]" under each stack (-P without -p)
	delimiter bool // "--" between kernel and user frames (-d, both stacks)
}

const (
	missedKernel = "[Missed Kernel Stack]"
	missedUser   = "[Missed User Stack]"
)

// appendReport appends one report: a blank line (not folded), the time
// with -T, then each stack.
func (p *printer) appendReport(b []byte, stacks []Stack, now time.Time) []byte {
	if !p.folded {
		b = append(b, '\n')
	}
	if p.timestamp {
		b = append(output.AppendClock(b, now), '\n')
	}
	for i := range stacks {
		if p.folded {
			b = p.appendFolded(b, &stacks[i])
		} else {
			b = p.appendStack(b, &stacks[i])
		}
	}
	return b
}

// appendStack appends a stack in lines: kernel frames innermost first,
// "--" with -d, user frames, "comm [pid]" with -P, the count and a blank
// line.
func (p *printer) appendStack(b []byte, st *Stack) []byte {
	for _, f := range st.KStack {
		b = p.appendFrame(append(b, "  "...), f)
	}
	if st.KStackMissed {
		b = append(append(b, "  "...), missedKernel+"\n"...)
	}
	if p.delimiter {
		b = append(b, "    --\n"...)
	}
	for _, f := range st.UStack {
		b = p.appendFrame(append(b, "  "...), f)
	}
	if st.UStackMissed {
		b = append(append(b, "  "...), missedUser+"\n"...)
	}
	if p.comm && st.PID != nil {
		b = st.Comm.Append(append(b, "    "...))
		b = fmt.Appendf(b, " [%d]\n", *st.PID)
	}
	return fmt.Appendf(b, "    %d\n\n", st.Count)
}

// appendFrame appends one frame line: "%-16x " with -v, then the name.
func (p *printer) appendFrame(b []byte, f syms.Frame) []byte {
	if p.verbose {
		b = fmt.Appendf(b, "%-16x ", f.Addr)
	}
	return append(appendName(b, f, p.offset), '\n')
}

// appendName appends a frame's function, escaped, with its offset when
// asked; an unknown one as "[unknown]", with the module when known.
func appendName(b []byte, f syms.Frame, offset bool) []byte {
	if f.Symbol == "" || f.Symbol == syms.Unknown {
		b = append(b, syms.Unknown...)
		if f.Module != "" {
			b = event.AppendEscaped(append(b, " ("...), []byte(f.Module))
			b = append(b, ')')
		}
		return b
	}
	if f.Lang != "" {
		return append(b, f.String()...)
	}
	b = event.AppendEscaped(b, []byte(f.Symbol))
	if offset {
		b = fmt.Appendf(b, "+0x%x", f.Offset)
	}
	return b
}

// appendFolded appends a stack as one folded line, outermost frame first
// as flame graph tools read them: the comm with -P, the user frames, "-"
// with -d, the kernel frames, then a space and the count. Names are
// escaped, so no frame holds a newline; a ';' in a name stays as it is.
func (p *printer) appendFolded(b []byte, st *Stack) []byte {
	start := len(b)
	sep := func() {
		if len(b) > start {
			b = append(b, ';')
		}
	}
	if st.Comm != nil {
		b = st.Comm.Append(b)
	}
	if st.UStackMissed {
		sep()
		b = append(b, missedUser...)
	}
	for i := len(st.UStack) - 1; i >= 0; i-- {
		sep()
		b = appendName(b, st.UStack[i], p.offset)
	}
	if p.delimiter {
		sep()
		b = append(b, '-')
	}
	if st.KStackMissed {
		sep()
		b = append(b, missedKernel...)
	}
	for i := len(st.KStack) - 1; i >= 0; i-- {
		sep()
		b = appendName(b, st.KStack[i], p.offset)
	}
	return fmt.Appendf(b, " %d\n", st.Count)
}
