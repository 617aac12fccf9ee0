package funclatency

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/uprobe"
)

type flags struct {
	common    cli.Common
	cfg       Config
	micro     bool
	milli     bool
	interval  int
	timestamp bool
	list      bool
}

func command() *cobra.Command {
	var f flags
	// -u is BCC's microseconds here; the uid filter stays --uid.
	f.common.NoUIDShort = true
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl funclatency ./app:sleep_ms                # time sleep_ms() of ./app, in nanoseconds
  owl funclatency -m ./app:sleep_ms             # in milliseconds
  owl funclatency -u -p 181 c:read              # read() of libc in process 181, in microseconds
  owl funclatency -F './app:main.*'             # one histogram per Go function of package main
  owl funclatency -i 5 -d 60 -m c:fsync         # every 5 seconds for a minute
  owl funclatency -l './app:Shape::*'           # list the functions that would be timed`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Use = "funclatency [flags] PATTERN"
	// The pattern is the one argument; cli.NewCommand's commands take none.
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return cli.Usagef("want one PATTERN ([PATH_OR_LIB:]FUNC_GLOB), got %d arguments", len(args))
		}
		f.cfg.Pattern = args[0]
		return nil
	}
	runE := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if f.list {
			return list(cmd, &f)
		}
		return runE(cmd, args)
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.micro, "microseconds", "u", false, "microsecond histogram")
	fl.BoolVarP(&f.milli, "milliseconds", "m", false, "millisecond histogram")
	fl.BoolVarP(&f.cfg.PerFunc, "function", "F", false, "one histogram per function")
	fl.IntVarP(&f.interval, "interval", "i", 0, "print a histogram every `SECONDS` as well as on exit (each covers its interval)")
	fl.BoolVarP(&f.timestamp, "timestamp", "T", false, "print the time before each histogram")
	fl.IntVar(&f.cfg.Max, "max", 0, "time up to `N` functions (default "+strconv.Itoa(uprobe.DefaultMax)+")")
	fl.BoolVarP(&f.list, "list", "l", false, "list the functions PATTERN matches, without tracing")
	return cmd
}

// unit checks -u and -m.
func (f *flags) unit() (Unit, error) {
	switch {
	case f.micro && f.milli:
		return 0, cli.Usagef("-u and -m: choose one unit")
	case f.micro:
		return Usecs, nil
	case f.milli:
		return Msecs, nil
	}
	return Nsecs, nil
}

// list prints the functions the pattern matches, one a line: what -l
// asks, with no privileges needed beyond reading the files.
func list(cmd *cobra.Command, f *flags) error {
	// 0 is the default (uprobe.DefaultMax) only when --max is not given.
	if f.cfg.Max < 0 || (f.cfg.Max == 0 && cmd.Flags().Changed("max")) {
		return cli.Usagef("--max %d: want a positive number", f.cfg.Max)
	}
	funcs, err := Resolve(f.cfg, f.common.PID)
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	var b []byte
	for _, fn := range funcs {
		b = append(append(b, fn.Name...), '\n')
	}
	_, err = cmd.OutOrStdout().Write(b)
	return cli.Fail(err)
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	every, err := cli.Seconds(cmd, "interval", f.interval)
	if err != nil {
		return err
	}
	if f.cfg.Unit, err = f.unit(); err != nil {
		return err
	}
	// 0 is the default (uprobe.DefaultMax) only when --max is not given.
	if f.cfg.Max < 0 || (f.cfg.Max == 0 && cmd.Flags().Changed("max")) {
		return cli.Usagef("--max %d: want a positive number", f.cfg.Max)
	}
	src, err := Open(f.cfg, opts)
	if perr := (*PatternError)(nil); errors.As(err, &perr) {
		// Bad input: exit 2, nothing attached.
		return &cli.UsageError{Err: perr.Err}
	}
	if err != nil {
		return err
	}
	defer src.Close()
	stderr := cmd.ErrOrStderr()
	if len(src.Untimed) > 0 {
		fmt.Fprintf(stderr, "owl: %d Go functions have no RET instruction and are not timed (the first: %s)\n", len(src.Untimed), src.Untimed[0].Name)
	}
	out := output.NewWriter[Hist](cmd.OutOrStdout(), f.common.Format, nil)
	n := len(src.Funcs())
	what := fmt.Sprintf("%d functions for \"%s\"", n, f.cfg.Pattern)
	if n == 1 {
		what = fmt.Sprintf("1 function for \"%s\"", f.cfg.Pattern)
	}
	return cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Hist]{
		What:     what,
		NoHeader: true,
		Report: func(now time.Time) error {
			hists, err := src.Since(now)
			if err != nil {
				return err
			}
			return report(out, f.cfg.Unit, hists, f.cfg.PerFunc, f.timestamp, now)
		},
		Every: every,
	})
}

// report prints one interval's histograms: in text as BCC's funclatency
// (a blank line, the time with -T, "Function = NAME" sections with -F,
// then the count, average and total of all), in JSON one object per
// histogram.
func report(out *output.Writer[Hist], unit Unit, hists []Hist, perFunc, timestamp bool, now time.Time) error {
	if out.Format() == output.JSON {
		for i := range hists {
			if err := out.Value(&hists[i]); err != nil {
				return err
			}
		}
		return nil
	}
	out.Raw(appendReport(nil, unit, hists, perFunc, timestamp, now))
	return nil
}

func appendReport(b []byte, unit Unit, hists []Hist, perFunc, timestamp bool, now time.Time) []byte {
	b = append(b, '\n')
	if timestamp {
		b = now.AppendFormat(b, "15:04:05\n")
	}
	var count, totalNs uint64
	for i := range hists {
		h := &hists[i]
		if perFunc {
			b = append(append(append(b, "\nFunction = "...), h.Func...), '\n')
		}
		b = output.AppendLog2Hist(b, h.Slots, h.Unit)
		count += h.Count
		totalNs += h.totalNs
	}
	if count > 0 {
		// BCC's line: the total in the unit (truncated), and its average.
		total := totalNs / unit.Nanoseconds()
		b = fmt.Appendf(b, "\navg = %d %s, total: %d %s, count: %d\n\n", total/count, unit.Label(), total, unit.Label(), count)
	}
	return b
}
