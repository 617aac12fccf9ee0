package execsnoop

import (
	"fmt"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common          cli.Common
	cfg             Config
	time, timestamp bool
	quote, printUID bool
	sockets         bool
	name, line      string
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl execsnoop                 # trace all successful execs
  owl execsnoop -x              # include failed execs
  owl execsnoop -T -U           # HH:MM:SS and UID columns
  owl execsnoop -t -q           # seconds since start, "quoted" arguments
  owl execsnoop -n '^ssh'       # only commands named ssh...
  owl execsnoop -l -- '--force' # only commands whose arguments contain --force
  owl execsnoop -P 1 --max-args 100   # children of pid 1, up to 100 arguments
  owl execsnoop --sockets       # append stdio[0,1,2]=tcp:10.0.0.5:4444 when fds 0-2 are sockets
  owl execsnoop -o json         # {"ppid":1,"ret":0,"filename":"/usr/bin/ls","args":["ls","-l"],"args_truncated":false,...}`,
		&f.common, func(cmd *cobra.Command, opts tool.Options) error { return run(cmd, &f, opts) })
	fl := cmd.Flags()
	fl.BoolVarP(&f.time, "time", "T", false, "include a time column (HH:MM:SS)")
	fl.BoolVarP(&f.timestamp, "timestamp", "t", false, "include a TIME(s) column: seconds since the first event")
	fl.BoolVarP(&f.cfg.Fails, "fails", "x", false, "include failed execs (RET is -errno)")
	fl.BoolVarP(&f.quote, "quote", "q", false, `quote each argument ("), escaping its double quotes (\")`)
	fl.StringVarP(&f.name, "name", "n", "", "only print commands whose name matches this `REGEX`")
	fl.StringVarP(&f.line, "line", "l", "", "only print commands whose arguments (joined by spaces) match this `REGEX`")
	fl.BoolVarP(&f.printUID, "print-uid", "U", false, "include a UID column")
	fl.IntVar(&f.cfg.MaxArgs, "max-args", DefaultMaxArgs, "print at most `N` arguments (1 to 1000000; an event carries 32768 bytes of them)")
	fl.IntVarP(&f.cfg.PPID, "ppid", "P", 0, "trace children of this parent `PID` only (filtered in the kernel)")
	fl.BoolVar(&f.sockets, "sockets", false, "after the arguments, the remote end of each TCP/UDP socket on fds 0-2: stdio[FDS]=PROTO:ADDR:PORT")
	// Bad flags are reported before privileges are checked or anything
	// is loaded.
	cmd.PreRunE = func(*cobra.Command, []string) error { return f.check(cmd) }
	return cmd
}

func (f *flags) check(cmd *cobra.Command) error {
	var err error
	if f.cfg.MaxArgs < 1 || f.cfg.MaxArgs > 1000000 {
		return cli.Usagef("--max-args %d: want 1 to 1000000", f.cfg.MaxArgs)
	}
	if cmd.Flags().Changed("ppid") && (f.cfg.PPID < 1 || f.cfg.PPID > 4194304) {
		return cli.Usagef("--ppid %d: want a process id from 1 to 4194304", f.cfg.PPID)
	}
	if f.cfg.Name, err = compile("--name", f.name); err != nil {
		return err
	}
	f.cfg.Line, err = compile("--line", f.line)
	return err
}

func compile(flag, expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, nil
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, cli.Usagef("%s %q: %v", flag, expr, err)
	}
	return re, nil
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	src, err := Open(f.cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, f.table())
	truncated := 0
	err = cli.Run(cmd, &f.common, src, out, cli.Loop[Event]{What: "exec syscalls", Emit: func(e *Event) {
		if e.Truncated {
			truncated++
		}
		out.Event(e)
	}})
	if truncated > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "owl: %d argument lists were cut (--max-args %d, or over %d bytes): they end with \"...\"\n",
			truncated, f.cfg.MaxArgs, ArgsBytes)
	}
	return err
}

// table is BCC's: [TIME] [TIME(s)] [UID] COMM PID PPID RET ARGS.
func (f *flags) table() output.Table[Event] {
	var t output.Table[Event]
	if f.time {
		t = append(t, output.Clock[Event](8))
	}
	if f.timestamp {
		c := output.Elapsed[Event]()
		c.Width = 7
		t = append(t, c)
	}
	if f.printUID {
		t = append(t, output.UID[Event](5))
	}
	quote, sockets := f.quote, f.sockets
	return append(t,
		output.Comm[Event](16),
		output.PID[Event](7),
		output.Column[Event]{Name: "PPID", Width: 7, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.PPID) }},
		output.Column[Event]{Name: "RET", Width: 3, Append: func(b []byte, e *Event) []byte { return rightAlign(b, 3, e.Ret) }},
		output.Column[Event]{Name: "ARGS", Append: func(b []byte, e *Event) []byte {
			b = e.AppendArgs(b, quote)
			if sockets {
				b = e.AppendStdio(b)
			}
			return b
		}},
	)
}

// rightAlign appends v right-aligned in width (BCC's %3d).
func rightAlign(b []byte, width int, v int32) []byte {
	s := output.Int(nil, v)
	for n := len(s); n < width; n++ {
		b = append(b, ' ')
	}
	return append(b, s...)
}
