package bashfunc

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/funclatency"
)

func command() *cobra.Command {
	var (
		common cli.Common
		cfg    Config
	)
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl bashfunc                        # every shell function /bin/bash calls
  owl bashfunc -p 181                 # only bash process 181 (its own executable)
  owl bashfunc --bash /usr/local/bin/bash -o json   # {"time":...,"pid":...,"depth":1,"func":"main"}`,
		&common, func(cmd *cobra.Command, opts tool.Options) error {
			src, err := Open(cfg, opts)
			if berr := (*BashError)(nil); errors.As(err, &berr) {
				return &cli.UsageError{Err: berr.Err}
			}
			if err != nil {
				return err
			}
			defer src.Close()
			return cli.Stream(cmd, &common, src, table, "bash function calls")
		})
	cmd.Flags().StringVar(&cfg.Bash, "bash", "", "trace the bash at `PATH` (default /bin/bash, or with -p the process's executable)")
	return cmd
}

var table = output.Table[Event]{
	output.Clock[Event](8),
	output.PID[Event](7),
	output.Comm[Event](16),
	{Name: "DEPTH", Width: 5, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.Depth) }},
	{Name: "FUNC", Append: func(b []byte, e *Event) []byte { return append(b, e.Func...) }},
}

type latFlags struct {
	common    cli.Common
	cfg       LatConfig
	micro     bool
	nano      bool
	interval  int
	timestamp bool
}

func latCommand() *cobra.Command {
	var f latFlags
	cmd := cli.NewCommand(latSpec.Info(), latSpec.Help(), `  owl bashfunclat                     # durations of /bin/bash's functions, in milliseconds
  owl bashfunclat -p 181 --microseconds   # bash process 181, in microseconds
  owl bashfunclat -i 5 -T -d 60       # every 5 seconds, with the time, for a minute`,
		&f.common, func(cmd *cobra.Command, opts tool.Options) error {
			return runLat(cmd, &f, opts)
		})
	fl := cmd.Flags()
	fl.StringVar(&f.cfg.Bash, "bash", "", "trace the bash at `PATH` (default /bin/bash, or with -p the process's executable)")
	fl.BoolVar(&f.micro, "microseconds", false, "microsecond histograms")
	fl.BoolVar(&f.nano, "nanoseconds", false, "nanosecond histograms")
	fl.IntVarP(&f.interval, "interval", "i", 0, "print the histograms every `SECONDS` as well as on exit (each covers its interval)")
	fl.BoolVarP(&f.timestamp, "timestamp", "T", false, "print the time before each report")
	fl.IntVar(&f.cfg.Funcs, "funcs", 0, "time up to `N` distinct function names (default "+strconv.Itoa(DefaultFuncs)+")")
	return cmd
}

func runLat(cmd *cobra.Command, f *latFlags, opts tool.Options) error {
	every, err := cli.Seconds(cmd, "interval", f.interval)
	if err != nil {
		return err
	}
	switch {
	case f.micro && f.nano:
		return cli.Usagef("--microseconds and --nanoseconds: choose one unit")
	case f.micro:
		f.cfg.Unit = funclatency.Usecs
	case f.nano:
		f.cfg.Unit = funclatency.Nsecs
	default:
		f.cfg.Unit = funclatency.Msecs
	}
	if cmd.Flags().Changed("funcs") && (f.cfg.Funcs < 1 || f.cfg.Funcs > MaxFuncs) {
		return cli.Usagef("--funcs %d: want 1 to %d", f.cfg.Funcs, MaxFuncs)
	}
	src, err := OpenLat(f.cfg, opts)
	if berr := (*BashError)(nil); errors.As(err, &berr) {
		return &cli.UsageError{Err: berr.Err}
	}
	if err != nil {
		return err
	}
	defer src.Close()
	out := output.NewWriter[Hist](cmd.OutOrStdout(), f.common.Format, nil)
	return cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Hist]{
		What:     "bash function calls",
		NoHeader: true,
		Report: func(now time.Time) error {
			hists, err := src.Since(now)
			if err != nil {
				return err
			}
			if out.Format() == output.JSON {
				for i := range hists {
					if err := out.Value(&hists[i]); err != nil {
						return err
					}
				}
				return nil
			}
			out.Raw(appendLatReport(nil, hists, f.timestamp, now))
			return nil
		},
		Every: every,
	})
}

// appendLatReport prints one interval as funclatency -F does, with each
// function's count, average and total under its histogram.
func appendLatReport(b []byte, hists []Hist, timestamp bool, now time.Time) []byte {
	b = append(b, '\n')
	if timestamp {
		b = now.AppendFormat(b, "15:04:05\n")
	}
	for i := range hists {
		h := &hists[i]
		b = append(append(append(b, "\nFunction = "...), h.Func...), '\n')
		b = output.AppendLog2Hist(b, h.Slots, h.Unit)
		b = fmt.Appendf(b, "\navg = %d %s, total: %d %s, count: %d\n", h.Avg, h.Unit, h.Total, h.Unit, h.Count)
	}
	return b
}
