package opensnoop

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

type flags struct {
	common              cli.Common
	cfg                 Config
	timestamp, printUID bool
	extended            bool
}

func command() *cobra.Command {
	var f flags
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl opensnoop                        # trace all opens
  owl opensnoop -T                     # include timestamps (seconds)
  owl opensnoop -U                     # include UID
  owl opensnoop -x                     # only failed opens
  owl opensnoop -p 181                 # only process 181
  owl opensnoop -t 123                 # only thread 123
  owl opensnoop -u 1000                # only UID 1000
  owl opensnoop -d 10                  # trace for 10 seconds only
  owl opensnoop -n main                # only command names containing "main"
  owl opensnoop -e                     # flags and mode columns
  owl opensnoop -f O_WRONLY -f O_RDWR  # only opens for writing
  owl opensnoop -F                     # relative paths made absolute (cwd or dfd)
  owl opensnoop --ustack -p 181        # with each open's user stack (Python frames too)
  owl opensnoop -o json                # {"syscall":"openat","fd":-1,"errno":2,"errno_name":"ENOENT","flags":524288,"mode":0,"dfd":-100,"path":"/etc/x",...}`,
		&f.common, func(cmd *cobra.Command, opts tool.Options) error { return run(cmd, &f, opts) })
	fl := cmd.Flags()
	fl.BoolVarP(&f.timestamp, "timestamp", "T", false, "include a TIME(s) column: seconds since the first event")
	fl.BoolVarP(&f.printUID, "print-uid", "U", false, "include a UID column")
	fl.BoolVarP(&f.cfg.Failed, "failed", "x", false, "only show failed opens")
	fl.IntVarP(&f.cfg.TID, "tid", "t", 0, "trace this thread (`TID`) only; the PID column becomes TID")
	fl.StringVarP(&f.cfg.Name, "name", "n", "", "only print command names containing `NAME`")
	fl.BoolVarP(&f.extended, "extended-fields", "e", false, "include FLAGS (octal) and MODE columns")
	fl.BoolVarP(&f.cfg.FullPath, "full-path", "F", false, "show the full path of an open with a relative path (from the cwd, or dfd)")
	fl.BoolVar(&f.cfg.UStack, "ustack", false, "print the user stack of each open (-U is BCC's UID column)")
	fl.StringArrayVarP(&f.cfg.Flags, "flag-filter", "f", nil, "only opens with this `FLAG` (O_WRONLY, O_CREAT...; repeat for any of several)")
	// Bad flags are reported before privileges are checked or anything
	// is loaded.
	cmd.PreRunE = func(*cobra.Command, []string) error { return f.check(cmd) }
	return cmd
}

func (f *flags) check(cmd *cobra.Command) error {
	if cmd.Flags().Changed("tid") && (f.cfg.TID < 1 || f.cfg.TID > 4194304) {
		return cli.Usagef("--tid %d: want a thread id from 1 to 4194304", f.cfg.TID)
	}
	if _, _, err := flagMasks(f.cfg.Flags); err != nil {
		return cli.Usagef("--flag-filter: %v", err)
	}
	return nil
}

func run(cmd *cobra.Command, f *flags, opts tool.Options) error {
	src, err := Open(f.cfg, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, f.table())
	if f.cfg.UStack {
		out.SetTrailer(appendStack)
	}
	truncated := 0
	err = cli.Run(cmd, &f.common, src, out, cli.Loop[Event]{What: "open syscalls", Emit: func(e *Event) {
		if e.FullPathTruncated {
			truncated++
		}
		out.Event(e)
	}})
	if truncated > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "owl: %d full paths were cut (directories over %d names or %d bytes): they start with \".../\"\n",
			truncated, DirDepth, DirBytes)
	}
	return err
}

// appendStack prints the user stack indented under the event, then a
// blank line, as capable -U does.
func appendStack(b []byte, e *Event) []byte {
	for _, fr := range e.UStack {
		b = append(b, "        "...)
		b = append(b, fr.String()...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}

// table is BCC's: [TIME(s)] [UID] PID|TID COMM FD ERR [FLAGS MODE] PATH.
func (f *flags) table() output.Table[Event] {
	var t output.Table[Event]
	if f.timestamp {
		var first uint64
		t = append(t, output.Column[Event]{Name: "TIME(s)", Width: 13, Append: func(b []byte, e *Event) []byte {
			if first == 0 {
				first = e.KtimeNs
			}
			return strconv.AppendFloat(b, float64(e.KtimeNs-first)/1e9, 'f', 9, 64)
		}})
	}
	if f.printUID {
		t = append(t, output.UID[Event](5))
	}
	if f.cfg.TID != 0 {
		t = append(t, output.TID[Event](6))
	} else {
		t = append(t, output.PID[Event](6))
	}
	t = append(t,
		output.Comm[Event](16),
		output.Column[Event]{Name: "  FD", Width: 4, Append: func(b []byte, e *Event) []byte { return rightAlign(b, 4, e.FD) }},
		output.Column[Event]{Name: "ERR", Width: 3, Append: func(b []byte, e *Event) []byte { return rightAlign(b, 3, int64(e.Errno)) }},
	)
	if f.extended {
		t = append(t,
			output.Column[Event]{Name: "FLAGS", Width: 8, Append: func(b []byte, e *Event) []byte { return pad(b, 8, strconv.FormatUint(uint64(uint32(e.Flags)), 8)) }},
			output.Column[Event]{Name: "MODE", Width: 4, Append: func(b []byte, e *Event) []byte {
				if !e.HasMode() {
					return append(b, "n/a"...)
				}
				return pad(b, 4, strconv.FormatUint(uint64(e.Mode), 8))
			}},
		)
	}
	return append(t, output.Column[Event]{Name: "PATH", Append: func(b []byte, e *Event) []byte {
		if e.FullPath != "" {
			return e.FullPath.Append(b)
		}
		return e.Path.Append(b)
	}})
}

// rightAlign appends v right-aligned in width (BCC's %4d).
func rightAlign(b []byte, width int, v int64) []byte {
	s := strconv.FormatInt(v, 10)
	for n := len(s); n < width; n++ {
		b = append(b, ' ')
	}
	return append(b, s...)
}

// pad appends digits zero-padded to width (BCC's %08o).
func pad(b []byte, width int, digits string) []byte {
	for n := len(digits); n < width; n++ {
		b = append(b, '0')
	}
	return append(b, digits...)
}
