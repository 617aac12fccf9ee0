package usdt

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
	sdt "github.com/owlbpf/owl/internal/usdt"
)

type flags struct {
	common  cli.Common
	list    bool
	verbose bool
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl usdt -l /usr/bin/python3.11          # the probes of a file
  owl usdt -l -p 181                       # of process 181 and every library it maps
  owl usdt -l -v ruby-3.1 'ruby:method__*'  # some probes of libruby, arguments explained
  owl usdt /usr/bin/python3.11:python:function__return '%s %s:%d' arg0 arg1 arg2
  owl usdt -p 181 'python:gc__*'           # every gc probe of process 181, all arguments
  owl usdt -p 181 ruby-3.1:ruby:cmethod__entry '%s#%s' arg0 arg1`, &f.common, func(cmd *cobra.Command, opts tool.Options) error {
		return run(cmd, &f, opts)
	})
	cmd.Use = "usdt [flags] [TARGET:]PROVIDER:NAME [FORMAT [ARG...]]\n  owl usdt -l [-v] [-p PID] [TARGET] [PROVIDER:NAME]"
	cmd.Args = func(cmd *cobra.Command, args []string) error {
		if f.list {
			if len(args) > 2 || (len(args) == 0 && f.common.PID == 0) {
				return cli.Usagef("-l takes a TARGET (file, library or program) or -p PID, and an optional PROVIDER:NAME glob")
			}
			return nil
		}
		if len(args) == 0 {
			return cli.Usagef("give a probe, [TARGET:]PROVIDER:NAME (owl usdt -l lists them)")
		}
		return nil
	}
	// -l reads files and prints, loading nothing: it needs none of the
	// privileges and checks tracing would.
	traced := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if f.list {
			return list(cmd, &f, args)
		}
		return traced(cmd, args)
	}
	cmd.Flags().BoolVarP(&f.list, "list", "l", false, "list the probes of TARGET or of -p's process, without tracing")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "with -l: explain each argument spec")
	return cmd
}

// Resolve finds the probes and parses the format of a command line:
// PROBE [FORMAT [ARG...]], ARGs split at commas and spaces ('"%d", arg0'
// as BCC writes it works too). Every error is the user's to fix.
func Resolve(args []string, pid int) (Config, error) {
	target, provider, name, err := ParseProbe(args[0])
	if err != nil {
		return Config{}, err
	}
	if target == "" && pid == 0 {
		return Config{}, fmt.Errorf("probe %q: name a TARGET (TARGET:PROVIDER:NAME) or give -p PID", args[0])
	}
	var cfg Config
	if len(args) > 1 {
		format := strings.TrimSuffix(strings.TrimSpace(args[1]), ",")
		if uq, err := strconv.Unquote(format); err == nil {
			format = uq
		}
		var refs []string
		for _, a := range args[2:] {
			refs = append(refs, strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' })...)
		}
		if cfg.Format, err = ParseFormat(format, refs); err != nil {
			return Config{}, err
		}
	}
	if cfg.Probes, err = sdt.Find(sdt.Target{Path: target, PID: pid}, provider, name); err != nil {
		return Config{}, err
	}
	if len(cfg.Probes) > MaxProbes {
		return Config{}, fmt.Errorf("%s: %d probe locations match, at most %d", args[0], len(cfg.Probes), MaxProbes)
	}
	return cfg, Check(cfg.Probes, cfg.Format)
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	cfg, err := Resolve(cmd.Flags().Args(), opts.Task.PID)
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	src, err := Open(cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	what := fmt.Sprintf("%d locations of %s", len(cfg.Probes), cmd.Flags().Arg(0))
	if len(cfg.Probes) == 1 {
		what = "1 location of " + cmd.Flags().Arg(0)
	}
	return cli.Stream(cmd, &f.common, src, table(), what)
}

// table is BCC trace's columns, the probe in place of its function.
func table() output.Table[Event] {
	return output.Table[Event]{
		output.Clock[Event](8),
		output.PID[Event](7),
		output.TID[Event](7),
		output.Comm[Event](16),
		output.Column[Event]{Name: "PROBE", Width: 24, Append: func(b []byte, e *Event) []byte { return e.Probe.Append(b) }},
		output.Column[Event]{Name: "MESSAGE", Append: func(b []byte, e *Event) []byte { return e.Message.Append(b) }},
	}
}

// Location is one line of -l: a probe location.
type Location struct {
	Path            Text   `json:"path"`
	Provider        Text   `json:"provider"`
	Name            Text   `json:"name"`
	Addr            uint64 `json:"addr"`
	Offset          uint64 `json:"offset"`
	Semaphore       uint64 `json:"semaphore"`
	SemaphoreOffset uint64 `json:"semaphore_offset"`
	Args            Text   `json:"args"`
	// ArgsError says why the arguments cannot be read ("" when they can).
	ArgsError string `json:"args_error,omitempty"`
}

func list(cmd *cobra.Command, f *flags, args []string) error {
	if err := f.common.Check(); err != nil {
		return err
	}
	format := f.common.Format
	t := sdt.Target{PID: f.common.PID}
	var provider, name string
	rest := args
	// TARGET is optional with -p: a lone argument with a ':' and no '/'
	// is then the probe glob.
	if len(rest) > 0 && !(f.common.PID != 0 && len(rest) == 1 && strings.Contains(rest[0], ":") && !strings.Contains(rest[0], "/")) {
		t.Path, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		var ok bool
		if provider, name, ok = strings.Cut(rest[0], ":"); !ok {
			return cli.Usagef("%q: want a PROVIDER:NAME glob", rest[0])
		}
	}
	probes, err := sdt.Find(t, provider, name)
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	var b []byte
	for _, p := range probes {
		if format == output.JSON {
			l := Location{Path: Text(p.Path), Provider: Text(p.Provider), Name: Text(p.Name),
				Addr: p.Addr, Offset: p.Offset, Semaphore: p.Semaphore, SemaphoreOffset: p.RefCtrOffset, Args: Text(p.ArgsText)}
			if p.ArgsErr != nil {
				l.ArgsError = p.ArgsErr.Error()
			}
			j, err := json.Marshal(l)
			if err != nil {
				return err
			}
			b = append(append(b, j...), '\n')
			continue
		}
		b = appendLocation(b, p, f.verbose)
	}
	_, err = cmd.OutOrStdout().Write(b)
	return err
}

// appendLocation writes one probe location: PATH PROVIDER:NAME at ADDR
// (offset OFF) [semaphore ADDR (offset OFF)] [args SPECS], and with
// verbose one line per argument.
func appendLocation(b []byte, p sdt.Probe, verbose bool) []byte {
	b = Text(p.Path).Append(b)
	b = append(b, ' ')
	b = Text(p.ID()).Append(b)
	b = fmt.Appendf(b, " at %#x (offset %#x)", p.Addr, p.Offset)
	if p.Semaphore != 0 {
		b = fmt.Appendf(b, " semaphore %#x (offset %#x)", p.Semaphore, p.RefCtrOffset)
	}
	if p.ArgsText != "" {
		b = Text(p.ArgsText).Append(append(b, " args "...))
	}
	b = append(b, '\n')
	if !verbose {
		return b
	}
	if p.ArgsErr != nil {
		return Text(p.ArgsErr.Error()).Append(append(b, "  unreadable: "...))
	}
	for i, a := range p.Args {
		b = fmt.Appendf(b, "  arg%d: %s\n", i, a.Describe())
	}
	return b
}
