package profile

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/flame"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common      cli.Common
	freq        int
	count       int
	cpu         int
	idle        bool
	kernelOnly  bool
	userOnly    bool
	delimited   bool
	annotations bool
	folded      bool
	stacks      int
	keys        int
	pprof       string
	svg         string
}

func command() *cobra.Command {
	cmd, _ := newCommand()
	return cmd
}

// newCommand builds the command and returns the flags it fills.
func newCommand() (*cobra.Command, *flags) {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl profile                      # all CPUs at 49 Hz until Ctrl-C
  owl profile -F 99 -p 181 10      # process 181 at 99 Hz for 10 seconds
  owl profile -f -D 5 > out.folded # folded stacks for flamegraph.pl or speedscope
  owl profile -p 181 -D 10 --svg flame.svg --pprof cpu.pb.gz
  go tool pprof -top cpu.pb.gz     # the pprof file, hottest functions first
  owl profile -U -d -p 181 5       # user stacks only
  owl profile -K -C 0 -I 5         # kernel stacks on CPU 0, idle included`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Use = "profile [flags] [DURATION]"
	// BCC's profile has -d for its delimiter and the duration as an
	// argument: owl's common -d (duration) becomes -D here, as in
	// stackcount, and DURATION sets it too.
	moveShorthand(cmd, "duration", "D")
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) > 1:
			return cli.Usagef("at most one DURATION (seconds), got %q", args)
		case len(args) == 1:
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return cli.Usagef("DURATION %q: want a whole number of seconds, at least 1", args[0])
			}
			if cmd.Flags().Changed("duration") {
				return cli.Usagef("give the duration once: -D or DURATION")
			}
			f.common.Duration = n
		}
		return nil
	}
	fl := cmd.Flags()
	fl.IntVarP(&f.freq, "frequency", "F", DefaultFreq, "sample each CPU `HZ` times a second")
	fl.IntVarP(&f.count, "count", "c", 0, "sample every `NANOSECONDS` of CPU time instead (cpu-clock events)")
	fl.IntVarP(&f.cpu, "cpu", "C", -1, "sample this `CPU` only")
	fl.BoolVarP(&f.idle, "include-idle", "I", false, "keep the samples of idle CPUs (pid 0)")
	fl.BoolVarP(&f.userOnly, "user-stacks-only", "U", false, "user stacks only")
	fl.BoolVarP(&f.kernelOnly, "kernel-stacks-only", "K", false, "kernel stacks only")
	fl.BoolVarP(&f.delimited, "delimited", "d", false, `print "--" between kernel and user stacks ("-" with -f)`)
	fl.BoolVarP(&f.annotations, "annotations", "a", false, "add _[k] to kernel frames")
	fl.BoolVarP(&f.folded, "folded", "f", false, "print folded stacks (comm;frame;frame count) for flame graphs")
	fl.IntVar(&f.stacks, "stack-storage-size", DefaultStacks, "size of each stack table: distinct kernel and user `STACKS` kept")
	fl.IntVar(&f.keys, "hash-storage-size", DefaultKeys, "distinct (process, stacks) `KEYS` counted")
	fl.StringVar(&f.pprof, "pprof", "", "write a gzipped pprof profile to `FILE`")
	fl.StringVar(&f.svg, "svg", "", "write an interactive flame graph to `FILE` (SVG)")
	return cmd, &f
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

// config checks the flags.
func (f *flags) config(cmd *cobra.Command) (Config, error) {
	fl := cmd.Flags()
	switch {
	case f.kernelOnly && f.userOnly:
		return Config{}, cli.Usagef("-K and -U exclude each other (both stacks are the default)")
	case fl.Changed("frequency") && fl.Changed("count"):
		return Config{}, cli.Usagef("-F and -c exclude each other")
	case f.freq < 1 || f.freq > MaxFreq:
		return Config{}, cli.Usagef("-F %d: want 1 to %d Hz", f.freq, MaxFreq)
	case fl.Changed("count") && f.count < 1:
		return Config{}, cli.Usagef("-c %d: want at least 1 nanosecond", f.count)
	case f.stacks < 1 || f.stacks > MaxStacks:
		return Config{}, cli.Usagef("--stack-storage-size %d: want 1 to %d", f.stacks, MaxStacks)
	case f.keys < 1 || f.keys > MaxKeys:
		return Config{}, cli.Usagef("--hash-storage-size %d: want 1 to %d", f.keys, MaxKeys)
	case f.cpu < -1:
		return Config{}, cli.Usagef("-C %d: want a CPU number", f.cpu)
	}
	cfg := Config{KStack: !f.userOnly, UStack: !f.kernelOnly, Freq: f.freq,
		Period: time.Duration(f.count), Idle: f.idle, Stacks: f.stacks, Keys: f.keys}
	if f.cpu >= 0 {
		online, err := onlineCPUs()
		if err != nil {
			return Config{}, err
		}
		if !contains(online, f.cpu) {
			return Config{}, cli.Usagef("-C %d: not an online CPU (online: %v)", f.cpu, online)
		}
		cfg.CPUs = []int{f.cpu}
	}
	return cfg, nil
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	cfg, err := f.config(cmd)
	if err != nil {
		return err
	}
	// Files are created before sampling starts, so that a path that
	// cannot be written is told at once, not after the run.
	files := map[string]*os.File{}
	for _, path := range []string{f.pprof, f.svg} {
		if path == "" || files[path] != nil {
			continue
		}
		file, err := os.Create(path)
		if err != nil {
			return &cli.UsageError{Err: err}
		}
		defer file.Close()
		files[path] = file
	}
	src, err := Open(cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	// Learn the files of the processes sampled once a second, so that
	// the stacks of those that exit before the end are named.
	var mu sync.Mutex
	start := time.Now()
	learnDone := make(chan struct{})
	stopLearn := make(chan struct{})
	stopLearner := sync.OnceFunc(func() {
		close(stopLearn)
		<-learnDone
	})
	defer stopLearner()
	go func() {
		defer close(learnDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopLearn:
				return
			case <-tick.C:
				mu.Lock()
				err := src.Learn()
				mu.Unlock()
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "owl: %v\n", err)
					return
				}
			}
		}
	}()
	// At the end the run loop stops sampling, then reads the losses; the
	// stacks are named and printed after it returns: naming a whole
	// system's stacks can take longer than the run loop gives its output
	// once the run is over.
	var end time.Time
	out := output.NewWriter[Stack](cmd.OutOrStdout(), f.common.Format, nil)
	err = cli.Run(cmd, &f.common, src.Source, out, cli.Loop[Stack]{
		What:     describe(cfg, opts),
		NoHeader: true,
		Report: func(now time.Time) error {
			stopLearner()
			end = now
			return src.Stop()
		},
	})
	if err != nil || end.IsZero() {
		return err
	}
	return report(cmd, f, cfg, opts, src, files, start, end)
}

// report names the stacks sampled, writes the files and prints the text,
// folded or JSON report.
func report(cmd *cobra.Command, f *flags, cfg Config, opts tool.Options, src *Source, files map[string]*os.File, start, end time.Time) error {
	stacks, err := src.Stacks(end)
	if err != nil {
		return err
	}
	prof := Flame(stacks, cfg, start, end.Sub(start))
	if f.pprof != "" {
		if err := flame.WritePprof(files[f.pprof], prof); err != nil {
			return err
		}
	}
	if f.svg != "" {
		sub := fmt.Sprintf("%s, %d samples", describe(cfg, opts), total(stacks))
		if err := flame.WriteSVG(files[f.svg], prof, flame.SVGOptions{Title: "CPU Flame Graph", Subtitle: sub}); err != nil {
			return err
		}
	}
	for _, file := range files {
		if err := file.Close(); err != nil {
			return err
		}
	}
	out := output.NewWriter[Stack](cmd.OutOrStdout(), f.common.Format, nil)
	switch {
	case out.Format() == output.JSON:
		for i := range stacks {
			if err := out.Value(&stacks[i]); err != nil {
				return err
			}
		}
	case f.folded || len(files) == 0:
		p := printer{
			folded:      f.folded,
			annotations: f.annotations,
			delimiter:   f.delimited && cfg.KStack && cfg.UStack,
		}
		out.Raw(p.appendReport(nil, stacks))
	}
	if err := out.Close(); err != nil {
		if errors.Is(err, syscall.EPIPE) {
			return nil // the reader is gone: end quietly, as BCC's tools do
		}
		return cli.Fail(err)
	}
	return nil
}

// describe says what is sampled, as BCC's header: "at 49 Hertz of all
// threads by user + kernel stack".
func describe(cfg Config, opts tool.Options) string {
	b := fmt.Sprintf("at %d Hertz", orDefault(cfg.Freq, DefaultFreq))
	if cfg.Period > 0 {
		b = fmt.Sprintf("every %d ns of CPU time", cfg.Period.Nanoseconds())
	}
	if opts.Task.PID != 0 {
		b += fmt.Sprintf(" of PID %d", opts.Task.PID)
	} else {
		b += " of all threads"
	}
	switch {
	case !cfg.KStack:
		b += " by user stack"
	case !cfg.UStack:
		b += " by kernel stack"
	default:
		b += " by user + kernel stack"
	}
	if len(cfg.CPUs) == 1 {
		b += fmt.Sprintf(" on CPU#%d", cfg.CPUs[0])
	}
	return b
}

func total(stacks []Stack) uint64 {
	var n uint64
	for _, st := range stacks {
		n += st.Count
	}
	return n
}

// Flame turns stacks into a flame.Profile: frames outermost first, the
// process (comm) at the root, user frames then kernel frames.
func Flame(stacks []Stack, cfg Config, start time.Time, d time.Duration) *flame.Profile {
	period := time.Second / time.Duration(orDefault(cfg.Freq, DefaultFreq))
	if cfg.Period > 0 {
		period = cfg.Period
	}
	p := &flame.Profile{Period: period, Start: start, Duration: d}
	for _, st := range stacks {
		comm := string(st.Comm.Append(nil))
		fs := []flame.Frame{{Name: comm, Kind: flame.Process}}
		if st.UStackMissed {
			fs = append(fs, flame.Frame{Name: missedUser})
		}
		for i := len(st.UStack) - 1; i >= 0; i-- {
			fs = append(fs, userFrame(st.UStack[i]))
		}
		if st.KStackMissed {
			fs = append(fs, flame.Frame{Name: missedKernel, Kind: flame.Kernel})
		}
		for i := len(st.KStack) - 1; i >= 0; i-- {
			k := st.KStack[i]
			fs = append(fs, flame.Frame{Name: string(appendName(nil, k)), Module: k.Module, Addr: k.Addr, Kind: flame.Kernel})
		}
		p.Stacks = append(p.Stacks, flame.Stack{Frames: fs, Count: st.Count, PID: st.PID, Comm: comm})
	}
	return p
}

// userFrame is a user frame for flame graphs: JIT code is told by its
// module, a perf map. A Python frame is its function, one box however
// many of its lines were sampled, with the file and line for pprof.
func userFrame(f syms.Frame) flame.Frame {
	if f.Lang != "" {
		name := f.Symbol
		if f.File == "" {
			name = f.String() // [unknown] (python): the process exited
		}
		return flame.Frame{Name: name, File: f.File, Line: int64(f.Line), Kind: flame.Interpreted}
	}
	kind := flame.Native
	if strings.HasPrefix(f.Module, "perf-") && strings.HasSuffix(f.Module, ".map") {
		kind = flame.JIT
	}
	return flame.Frame{Name: string(appendName(nil, f)), Module: f.Module, Addr: f.Addr, Kind: kind}
}

// printer prints reports as BCC's profile does.
type printer struct {
	folded      bool
	annotations bool // -a: _[k] after kernel frames
	delimiter   bool // "--" between kernel and user frames (-d, both stacks)
}

const (
	missedKernel = "[Missed Kernel Stack]"
	missedUser   = "[Missed User Stack]"
)

// appendReport appends the report: each stack, smallest count first.
func (p *printer) appendReport(b []byte, stacks []Stack) []byte {
	if !p.folded {
		b = append(b, '\n')
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

// appendStack appends a stack in lines, as BCC's profile: kernel frames
// innermost first, "--" with -d when both stacks are there (not missed),
// user frames,
// "-  comm (pid)", the count and a blank line.
func (p *printer) appendStack(b []byte, st *Stack) []byte {
	if st.KStackMissed {
		b = append(b, "    "+missedKernel+"\n"...)
	}
	for _, f := range st.KStack {
		b = appendName(append(b, "    "...), f)
		if p.annotations {
			b = append(b, "_[k]"...)
		}
		b = append(b, '\n')
	}
	if p.delimiter && len(st.KStack) > 0 && len(st.UStack) > 0 {
		b = append(b, "    --\n"...)
	}
	if st.UStackMissed {
		b = append(b, "    "+missedUser+"\n"...)
	}
	for _, f := range st.UStack {
		b = append(appendName(append(b, "    "...), f), '\n')
	}
	b = fmt.Appendf(b, "    %-16s ", "-")
	b = st.Comm.Append(b)
	return fmt.Appendf(b, " (%d)\n        %d\n\n", st.PID, st.Count)
}

// appendFolded appends a stack as one folded line, outermost frame first:
// the comm, the user frames, "-" with -d when both stacks are there, the
// kernel frames (with _[k] with -a), then a space and the count. Names are
// escaped, so no frame holds a newline.
func (p *printer) appendFolded(b []byte, st *Stack) []byte {
	b = st.Comm.Append(b)
	if st.UStackMissed {
		b = append(b, ";"+missedUser...)
	}
	for i := len(st.UStack) - 1; i >= 0; i-- {
		b = appendName(append(b, ';'), st.UStack[i])
	}
	if p.delimiter && len(st.UStack) > 0 && len(st.KStack) > 0 {
		b = append(b, ";-"...)
	}
	if st.KStackMissed {
		b = append(b, ";"+missedKernel...)
	}
	for i := len(st.KStack) - 1; i >= 0; i-- {
		b = appendName(append(b, ';'), st.KStack[i])
		if p.annotations {
			b = append(b, "_[k]"...)
		}
	}
	return fmt.Appendf(b, " %d\n", st.Count)
}

// appendName appends a frame's function, escaped; an unknown one as
// "[unknown]", with the module when known; a Python one as
// "func (file:line)".
func appendName(b []byte, f syms.Frame) []byte {
	if f.Lang != "" {
		return append(b, f.String()...)
	}
	if f.Symbol == "" || f.Symbol == syms.Unknown {
		b = append(b, syms.Unknown...)
		if f.Module != "" {
			b = event.AppendEscaped(append(b, " ("...), []byte(f.Module))
			b = append(b, ')')
		}
		return b
	}
	return event.AppendEscaped(b, []byte(f.Symbol))
}
