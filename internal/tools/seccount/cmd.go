package seccount

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf/btf"
	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common    cli.Common
	interval  int
	timestamp bool
	lsm       bool
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl seccount                       # every security_* function, until Ctrl-C
  owl seccount -p 181 -d 10          # calls made by process 181, for 10 s
  owl seccount -i 1 'security_file_*'  # file hooks, each second
  owl seccount --lsm security_file_open  # through the BPF LSM hook file_open`,
		&f.common, func(cmd *cobra.Command, opts tool.Options) error {
			return run(cmd, &f, opts)
		})
	cmd.Use = "seccount [flags] [PATTERN]"
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 1 {
			return cli.Usagef("give at most one PATTERN (a glob over security_* names), got %d", len(args))
		}
		return nil
	}
	cmd.Flags().IntVarP(&f.interval, "interval", "i", 0, "print the counts of each `SECONDS` interval as well as on exit")
	cmd.Flags().BoolVarP(&f.timestamp, "timestamp", "T", false, "print the time before each report")
	cmd.Flags().BoolVar(&f.lsm, "lsm", false, "count with BPF LSM programs on the hook each function calls (needs the bpf LSM active)")
	return cmd
}

// resolve expands the PATTERN argument against the running kernel; bad
// input is a UsageError. Functions left out are named on stderr.
func resolve(cmd *cobra.Command, f *flags, opts tool.Options) (Config, error) {
	pattern := DefaultPattern
	if args := cmd.Flags().Args(); len(args) == 1 {
		pattern = args[0]
	}
	var types *btf.Spec
	var err error
	if opts.Runtime != nil {
		types, err = opts.Runtime.BTF.Kernel()
	} else {
		types, err = btf.LoadKernelSpec()
	}
	if err != nil {
		return Config{}, fmt.Errorf("read the kernel's BTF: %w", err)
	}
	names, err := KernelFunctions()
	if err != nil {
		return Config{}, err
	}
	fns, err := Resolve(pattern, f.lsm, types, names)
	if err != nil {
		return Config{}, &cli.UsageError{Err: err}
	}
	if len(fns.Left) > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "Not counted (%s): %s\n", fns.Why, strings.Join(fns.Left, " "))
	}
	return Config{Funcs: fns.Funcs, LSM: f.lsm, LSMHooks: fns.LSMHooks}, nil
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	every, err := cli.Seconds(cmd, "interval", f.interval)
	if err != nil {
		return err
	}
	cfg, err := resolve(cmd, f, opts)
	if err != nil {
		return err
	}
	start := time.Now()
	src, err := Open(cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	took := time.Since(start)
	attached := len(cfg.Funcs) - len(src.Skipped())
	if skipped := src.Skipped(); len(skipped) > 0 {
		writeSkipped(cmd.ErrOrStderr(), skipped)
	}
	out := output.NewWriter[Count](cmd.OutOrStdout(), f.common.Format, nil)
	r := reporter{out: out, counts: src.Counts, timestamp: f.timestamp, interval: every > 0}
	what := fmt.Sprintf("%d functions with %s, attached in %.2f s,", attached, src.Session.Hook.Name, took.Seconds())
	return cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Count]{
		What:     what,
		NoHeader: true,
		Report:   r.report,
		Every:    every,
	})
}

// writeSkipped names the functions that did not attach, one line.
func writeSkipped(w io.Writer, skipped []probe.Failure) {
	parts := make([]string, len(skipped))
	for i, s := range skipped {
		parts[i] = fmt.Sprintf("%s (%v)", s.Hook, s.Err)
	}
	fmt.Fprintf(w, "Not counted (the kernel refused them): %s\n", strings.Join(parts, "; "))
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

// sorted keeps the non-zero counts, smallest first as BCC's funccount
// prints them (the busiest end up nearest the prompt), then by name.
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
		return rows[i].Func < rows[j].Func
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
	for _, r := range rows {
		b = append(b, r.Func...)
		b = pad(b, 36-len(r.Func))
		b = append(b, ' ')
		n := strconv.AppendUint(nil, r.Count, 10)
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
