package trace

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/uprobe"
)

type flags struct {
	common  cli.Common
	cfg     Config
	elapsed bool // -t
	clock   bool // -T
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl trace 'c:open "%s", arg1' 'r:c:open ret=%d, retval'   # open() paths and results
  owl trace 'r:./app:work "%d -> %d", arg1, retval'   # arguments with the return value
  owl trace 'p:./app:work (arg1 == 500) "%d", arg1'   # only calls with arg1 == 500
  owl trace -p 181 -U 'c:malloc "size = %d", arg1'     # process 181, with user stacks
  owl trace -T 'r:./goapp:main.parse "%s -> %d %e", arg1, retval, retval2'  # a Go function
  owl trace -t -o json 'r:c:write (retval < 0)'        # failed writes, as JSON`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Use = "trace [flags] PROBE..."
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cli.Usagef("want at least one PROBE: [p:|r:][PATH_OR_LIB:]FUNC [(FILTER)] [\"FORMAT\"[, ARG...]]")
		}
		f.cfg.Probes = args
		return nil
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.cfg.UStack, "user-stack", "U", false, "print the user stack of each event")
	fl.BoolVarP(&f.elapsed, "timestamp", "t", false, "print a TIME column: seconds since tracing began")
	fl.BoolVarP(&f.clock, "time", "T", false, "print a TIME column: the wall clock (HH:MM:SS)")
	fl.IntVar(&f.cfg.Max, "max", 0, "let one probe match up to `N` functions (default "+strconv.Itoa(uprobe.DefaultMax)+")")
	return cmd
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	// 0 is the default (uprobe.DefaultMax) only when --max is not given.
	if f.cfg.Max < 0 || (f.cfg.Max == 0 && cmd.Flags().Changed("max")) {
		return cli.Usagef("--max %d: want a positive number", f.cfg.Max)
	}
	src, err := Open(f.cfg, opts)
	if serr := (*SpecError)(nil); errors.As(err, &serr) {
		return &cli.UsageError{Err: serr.Err} // exit 2, nothing attached
	}
	if err != nil {
		return err
	}
	defer src.Close()
	stderr := cmd.ErrOrStderr()
	if len(src.Unprobed) > 0 {
		fmt.Fprintf(stderr, "owl: %d Go functions have no RET instruction and are not traced (the first: %s)\n", len(src.Unprobed), src.Unprobed[0].Name)
	}
	probes, _ := Probes(f.cfg.Probes) // parsed by Open already
	trivial := true
	for _, p := range probes {
		noMsg := len(p.Format.Verbs) == 0 && (len(p.Format.Lits) == 0 || p.Format.Lits[0] == "")
		trivial = trivial && noMsg
	}
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, table(f.elapsed, f.clock, uint64(ts.Nano()), trivial))
	if f.cfg.UStack {
		out.SetTrailer(appendStack)
	}
	what := fmt.Sprintf("%d probes", len(probes))
	if len(probes) == 1 {
		what = "1 probe"
	}
	err = cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Event]{What: what, Emit: func(e *Event) { out.Event(e) }})
	if n, merr := src.Misses(); merr == nil && n > 0 {
		fmt.Fprintf(stderr, "owl: %d returns not printed: their entry was not seen (the call began before tracing, or its entry was evicted)\n", n)
	}
	return err
}

// table is BCC trace's line: [TIME] PID TID COMM FUNC message; the last
// header is "-" unless no probe prints a message.
func table(elapsed, clock bool, start uint64, trivial bool) output.Table[Event] {
	var t output.Table[Event]
	switch {
	case elapsed:
		// BCC's -t: seconds since tracing began, %.6f cut to 8 characters.
		t = append(t, output.Column[Event]{Name: "TIME", Width: 8, Trunc: true, Append: func(b []byte, e *Event) []byte {
			d := time.Duration(0)
			if e.KtimeNs > start {
				d = time.Duration(e.KtimeNs - start)
			}
			return strconv.AppendFloat(b, d.Seconds(), 'f', 6, 64)
		}})
	case clock:
		t = append(t, output.Clock[Event](8))
	}
	last := "-"
	if trivial {
		last = ""
	}
	return append(t,
		output.Column[Event]{Name: "PID", Width: 7, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.PID) }},
		output.Column[Event]{Name: "TID", Width: 7, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.TID) }},
		output.Comm[Event](15),
		output.Column[Event]{Name: "FUNC", Width: 16, Append: func(b []byte, e *Event) []byte { return event.AppendEscaped(b, []byte(e.Func)) }},
		output.Column[Event]{Name: last, Append: func(b []byte, e *Event) []byte { return append(b, e.Msg...) }},
	)
}

// appendStack prints the user stack indented under the event, then a
// blank line, as BCC's trace.
func appendStack(b []byte, e *Event) []byte {
	for _, fr := range e.UStack {
		b = append(b, "        "...)
		b = append(b, fr.String()...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}
