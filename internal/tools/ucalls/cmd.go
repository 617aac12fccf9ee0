package ucalls

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common  cli.Common
	lang    string
	latency bool
	top     int
	millis  bool
	max     int
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl ucalls -p 185                 # calls of process 185 (language detected), on Ctrl-C
  owl ucalls -l python -p 2020 1    # Python calls every second
  owl ucalls -l ruby -p 1344 -T 10  # the 10 most called Ruby methods
  owl ucalls -l java -p 185 -L -m   # Java calls with their time, in ms`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Use = "ucalls [flags] -p PID [INTERVAL]"
	cmd.Args = cobra.MaximumNArgs(1)
	cmd.Flags().StringVarP(&f.lang, "language", "l", "", "the process's language: java, python or ruby (default: detected)")
	cmd.Flags().BoolVarP(&f.latency, "latency", "L", false, "time calls from entry to return: total and average")
	cmd.Flags().IntVarP(&f.top, "top", "T", 0, "print only the `N` most called (with -L: slowest in total) methods")
	cmd.Flags().BoolVarP(&f.millis, "milliseconds", "m", false, "print times in milliseconds (default: microseconds)")
	cmd.Flags().IntVar(&f.max, "max-methods", DefaultMaxMethods, "size of the table of methods (`N`); more are counted as lost")
	return cmd
}

// Language is -l, or the language detected from pid.
func Language(s string, pid int) (langs.Lang, error) {
	if s != "" {
		l, err := langs.Parse(s, langs.Java, langs.Python, langs.Ruby)
		if err != nil {
			return "", cli.Usagef("%v", err)
		}
		return l, nil
	}
	l, err := langs.Detect(pid)
	if err != nil {
		return "", &cli.UsageError{Err: err}
	}
	if l == langs.C {
		return "", cli.Usagef("process %d is not a Java, Python or Ruby program (no java, python or ruby executable, no libjvm, libpython or libruby mapped): give -l", pid)
	}
	return l, nil
}

// Interval reads the optional INTERVAL argument (seconds).
func Interval(args []string) (time.Duration, error) {
	if len(args) == 0 {
		return 0, nil
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > 1<<30 {
		return 0, cli.Usagef("interval %q: want whole seconds, at least 1", args[0])
	}
	return time.Duration(n) * time.Second, nil
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	pid := opts.Task.PID
	if pid == 0 {
		return cli.Usagef("ucalls needs a process: -p PID")
	}
	every, err := Interval(cmd.Flags().Args())
	if err != nil {
		return err
	}
	if f.top < 0 {
		return cli.Usagef("-T %d: want a positive number of methods", f.top)
	}
	if f.max < 1 || f.max > 1<<20 {
		return cli.Usagef("--max-methods %d: want 1 to %d", f.max, 1<<20)
	}
	lang, err := Language(f.lang, pid)
	if err != nil {
		return err
	}
	cfg, err := Resolve(lang, pid, f.latency)
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	cfg.MaxMethods = f.max
	src, err := Open(cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	out := output.NewWriter[Count](cmd.OutOrStdout(), f.common.Format, nil)
	r := reporter{out: out, counts: src.Counts, latency: f.latency, top: f.top, millis: f.millis, interval: every > 0}
	err = cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Count]{
		What:     fmt.Sprintf("calls in process %d (language: %s)", pid, lang),
		NoHeader: true,
		Report:   r.report,
		Every:    every,
	})
	for _, n := range notes(lang, f.latency, r.total) {
		fmt.Fprintln(cmd.ErrOrStderr(), "owl:", n)
	}
	return err
}

// notes says what the totals of a run suggest a user missed.
func notes(lang langs.Lang, latency bool, total []Count) []string {
	var calls, timed, rubyMethods, cMethods uint64
	for _, c := range total {
		calls += c.Calls
		timed += c.Timed
		if c.C {
			cMethods += c.Calls
		} else {
			rubyMethods += c.Calls
		}
	}
	var out []string
	if latency && calls > timed {
		n := fmt.Sprintf("%d of %d returns had no entry seen and were not timed", calls-timed, calls)
		if lang == langs.Python {
			n += "; " + langs.PythonNote
		}
		out = append(out, n)
	}
	if lang == langs.Ruby && cMethods > 0 && rubyMethods == 0 {
		out = append(out, langs.RubyNote)
	}
	return out
}

// reporter prints the counts: since the start, or with an interval of the
// last interval (differences of the kernel's counters, never reset).
type reporter struct {
	out      *output.Writer[Count]
	counts   func(now time.Time) ([]Count, error)
	latency  bool
	top      int
	millis   bool
	interval bool
	last     map[string]Count
	total    []Count // the counts of the last read, since the start
}

func (r *reporter) report(now time.Time) error {
	counts, err := r.counts(now)
	if err != nil {
		return err
	}
	r.total = counts
	rows := make([]Count, 0, len(counts))
	next := make(map[string]Count, len(counts))
	for _, c := range counts {
		key := fmt.Sprint(c.C, "\x00", c.Class, "\x00", c.Name)
		next[key] = c
		if p, ok := r.last[key]; ok && r.interval {
			c.Calls -= p.Calls
			c.Timed -= p.Timed
			c.TotalNs -= p.TotalNs
		}
		if c.Calls == 0 {
			continue
		}
		if c.Timed > 0 {
			c.AvgNs = c.TotalNs / c.Timed
		}
		rows = append(rows, c)
	}
	if r.interval {
		r.last = next
	}
	rows = sorted(rows, r.latency)
	if r.top > 0 && len(rows) > r.top {
		rows = rows[len(rows)-r.top:]
	}
	if r.out.Format() == output.JSON {
		for i := range rows {
			if err := r.out.Value(&rows[i]); err != nil {
				return err
			}
		}
		return nil
	}
	r.out.Raw(appendReport(nil, rows, r.latency, r.millis))
	return nil
}

// sorted orders rows as BCC prints them: fewest calls (least time with
// -L) first, so the busiest end up last, nearest the prompt; then by name.
func sorted(rows []Count, latency bool) []Count {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if latency && a.TotalNs != b.TotalNs {
			return a.TotalNs < b.TotalNs
		}
		if a.Calls != b.Calls {
			return a.Calls < b.Calls
		}
		return a.Method < b.Method
	})
	return rows
}

// appendReport appends one report: a blank line, BCC's header and
// "%-50s %8d" rows, with -L the total and average time.
func appendReport(b []byte, rows []Count, latency, millis bool) []byte {
	unit, div := "us", 1e3
	if millis {
		unit, div = "ms", 1e6
	}
	b = append(b, '\n')
	b = fmt.Appendf(b, "%-50s %8s", "METHOD", "# CALLS")
	if latency {
		b = fmt.Appendf(b, " %12s %12s", "TIME ("+unit+")", "AVG ("+unit+")")
	}
	b = append(b, '\n')
	for _, c := range rows {
		start := len(b)
		b = c.Method.Append(b)
		for n := 50 - (len(b) - start); n > 0; n-- {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, " %8d", c.Calls)
		if latency {
			if c.Timed == 0 {
				b = fmt.Appendf(b, " %12s %12s", "-", "-")
			} else {
				b = fmt.Appendf(b, " %12.2f %12.2f", float64(c.TotalNs)/div, float64(c.AvgNs)/div)
			}
		}
		b = append(b, '\n')
	}
	return b
}
