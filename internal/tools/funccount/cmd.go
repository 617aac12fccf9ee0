package funccount

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/uprobe"
)

type flags struct {
	common    cli.Common
	interval  int
	timestamp bool
	max       int
	list      bool
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl funccount c:malloc                # count malloc calls of every process
  owl funccount -p 181 'c:*alloc'       # allocators of process 181
  owl funccount -i 1 ./app:work         # calls of work each second
  owl funccount './app:Shape::*'        # C++ methods, demangled
  owl funccount -p 181 'main.*'         # Go functions of process 181's executable
  owl funccount t:sched:sched_switch    # a kernel tracepoint
  owl funccount -l 'c:str*'             # list the matches, trace nothing`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Use = "funccount [flags] PATTERN..."
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cli.Usagef("give at least one PATTERN ([PATH_OR_LIB:]FUNCTION or t:GROUP:NAME)")
		}
		return nil
	}
	// -l resolves and prints, loading nothing: it needs none of the
	// privileges and checks the tracing options would.
	traced := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if f.list {
			return list(cmd, &f, args)
		}
		return traced(cmd, args)
	}
	cmd.Flags().IntVarP(&f.interval, "interval", "i", 0, "print the counts of each `SECONDS` interval as well as on exit")
	cmd.Flags().BoolVarP(&f.timestamp, "timestamp", "T", false, "print the time before each report")
	cmd.Flags().IntVar(&f.max, "max", uprobe.DefaultMax, "refuse patterns matching more than `N` functions")
	cmd.Flags().BoolVarP(&f.list, "list", "l", false, "list the functions and tracepoints the patterns match, without tracing")
	return cmd
}

// resolve checks --max and expands the patterns (cmd's arguments).
func resolve(cmd *cobra.Command, f *flags, pid int) (Config, error) {
	if f.max < 1 || f.max > MaxCounters {
		return Config{}, cli.Usagef("--max %d: want 1 to %d", f.max, MaxCounters)
	}
	cfg, err := Resolve(cmd.Flags().Args(), uprobe.Options{PID: pid, Max: f.max})
	if err != nil {
		return Config{}, &cli.UsageError{Err: err}
	}
	return cfg, nil
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	every, err := cli.Seconds(cmd, "interval", f.interval)
	if err != nil {
		return err
	}
	cfg, err := resolve(cmd, f, opts.Task.PID)
	if err != nil {
		return err
	}
	src, err := Open(cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	out := output.NewWriter[Count](cmd.OutOrStdout(), f.common.Format, nil)
	r := reporter{out: out, counts: src.Counts, timestamp: f.timestamp, interval: every > 0}
	what := fmt.Sprintf("%d functions for %s", cfg.Len(), quoted(cmd.Flags().Args()))
	return cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Count]{
		What:     what,
		NoHeader: true,
		Report:   r.report,
		Every:    every,
	})
}

// quoted writes the patterns as BCC's funccount does, "a" "b".
func quoted(patterns []string) string {
	q := make([]string, len(patterns))
	for i, p := range patterns {
		q[i] = strconv.Quote(p)
	}
	return strings.Join(q, " ")
}

// reporter prints the counts: since the start, or with -i of the last
// interval (differences of the kernel's counters, which are never reset).
type reporter struct {
	out       *output.Writer[Count]
	counts    func(now time.Time) ([]Count, error) // Source.Counts
	timestamp bool
	interval  bool
	last      []uint64
}

func (r *reporter) report(now time.Time) error {
	counts, err := r.counts(now)
	if err != nil {
		return err
	}
	if r.interval {
		if r.last == nil {
			r.last = make([]uint64, len(counts))
		}
		for i := range counts {
			n := counts[i].Count
			counts[i].Count -= r.last[i]
			r.last[i] = n
		}
	}
	rows := sorted(counts)
	if r.out.Format() == output.JSON {
		for i := range rows {
			if err := r.out.Value(&rows[i]); err != nil {
				return err
			}
		}
		return nil
	}
	r.out.Raw(appendReport(nil, rows, now, r.timestamp))
	return nil
}

// sorted keeps the non-zero counts, smallest first as BCC prints them (the
// busiest functions end up last, nearest the prompt), then by name.
func sorted(counts []Count) []Count {
	var rows []Count
	for _, c := range counts {
		if c.Count != 0 {
			rows = append(rows, c)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Count != rows[j].Count {
			return rows[i].Count < rows[j].Count
		}
		if rows[i].Func != rows[j].Func {
			return rows[i].Func < rows[j].Func
		}
		return rows[i].Path < rows[j].Path
	})
	return rows
}

// appendReport appends one report as BCC's funccount prints it: a blank
// line, the time with -T, the header and "%-36s %8d" rows.
func appendReport(b []byte, rows []Count, now time.Time, timestamp bool) []byte {
	b = append(b, '\n')
	if timestamp {
		b = append(output.AppendClock(b, now), '\n')
	}
	b = append(b, "FUNC                                    COUNT\n"...)
	for i := range rows {
		start := len(b)
		b = rows[i].Func.Append(b)
		b = pad(b, 36-(len(b)-start))
		b = append(b, ' ')
		n := strconv.AppendUint(nil, rows[i].Count, 10)
		b = pad(b, 8-len(n))
		b = append(append(b, n...), '\n')
	}
	return b
}

func pad(b []byte, n int) []byte {
	for ; n > 0; n-- {
		b = append(b, ' ')
	}
	return b
}

// Match is one line of -l: what a pattern resolved to.
type Match struct {
	Func   Name   `json:"func"`
	Path   Name   `json:"path"`   // "" for a tracepoint
	Symbol Name   `json:"symbol"` // the raw (mangled) name
	Offset uint64 `json:"offset"` // file offset of the entry
}

// list prints what the patterns match: PATH:NAME per function and
// t:GROUP:NAME per tracepoint, or JSON objects.
func list(cmd *cobra.Command, f *flags, args []string) error {
	format, err := output.ParseFormat(f.common.Output)
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "t:") {
			if err := probe.EnsureTracefs(); err != nil {
				return err
			}
			break
		}
	}
	cfg, err := resolve(cmd, f, f.common.PID)
	if err != nil {
		return err
	}
	var b []byte
	add := func(m Match) error {
		if format == output.JSON {
			j, err := json.Marshal(m)
			if err != nil {
				return err
			}
			b = append(append(b, j...), '\n')
			return nil
		}
		if m.Path == "" {
			b = m.Func.Append(append(b, "t:"...))
		} else {
			b = m.Func.Append(append(m.Path.Append(b), ':'))
		}
		b = append(b, '\n')
		return nil
	}
	for _, fn := range cfg.Funcs {
		if err := add(Match{Func: Name(fn.Name), Path: Name(fn.Path), Symbol: Name(fn.Symbol), Offset: fn.Offset}); err != nil {
			return err
		}
	}
	for _, tp := range cfg.Tracepoints {
		if err := add(Match{Func: Name(tp.String()), Symbol: Name(tp.String())}); err != nil {
			return err
		}
	}
	_, err = cmd.OutOrStdout().Write(b)
	return err
}
