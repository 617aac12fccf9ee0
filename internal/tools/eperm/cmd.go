package eperm

import (
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
)

const summary = "Count or trace syscalls failing with EPERM or EACCES"

// Tool is eperm's registry entry.
var Tool = cli.Tool{
	Name:    "eperm",
	Summary: summary,
	Command: command,
	Probe:   Probe,
}

type flags struct {
	common   cli.Common
	stream   bool
	interval int
}

func command() *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "eperm [flags]",
		Short: summary,
		Long: `Find syscalls that fail with EPERM (operation not permitted, errno 1) or
EACCES (permission denied, errno 13), kept apart and labelled. By default the
kernel counts failures per process, syscall and errno, and owl prints the
counts on exit and, with -i, every interval (counts are since the start).
With -e each failure is printed as it happens.

Hook: the tracepoint raw_syscalls:sys_exit. Syscall names come from tables
generated from the kernel's numbering for x86_64 and arm64.

JSON fields: time, pid, comm, syscall, syscall_nr, errno (EPERM|EACCES), and
count for counts or tid for -e events.`,
		Example: `  owl eperm                # count failures until Ctrl-C
  owl eperm -i 5           # print the counts every 5 seconds
  owl eperm -e             # print each failure
  owl eperm -p 181 -d 10   # process 181 for 10 seconds`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return run(cmd, &f) },
	}
	f.common.AddFlags(cmd, true)
	cmd.Flags().BoolVarP(&f.stream, "events", "e", false, "print each failure instead of counts")
	cmd.Flags().IntVarP(&f.interval, "interval", "i", 0, "print the counts every `SECONDS` as well as on exit")
	return cmd
}

func run(cmd *cobra.Command, f *flags) error {
	if err := f.common.Validate(); err != nil {
		return err
	}
	if f.interval < 0 {
		return cli.Usagef("interval %d: must be positive", f.interval)
	}
	if f.stream && f.interval > 0 {
		return cli.Usagef("-i prints counts; it does not go with -e")
	}
	t, err := New(Config{PID: f.common.PID, Stream: f.stream, Hook: f.common.Hook})
	if err != nil {
		return err
	}
	defer t.Close()
	if f.stream {
		out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, eventTable)
		return cli.Stream(cmd, &f.common, t.Tracer, out, "EPERM and EACCES failures", func(e *Event) { out.Event(e) })
	}
	return runCounts(cmd, f, t)
}

var eventTable = output.Table[Event]{
	{Name: "TIME", Width: 8, Append: func(b []byte, e *Event) []byte { return output.Clock(b, e.Time) }},
	{Name: "PID", Width: 6, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.PID) }},
	{Name: "COMM", Width: 16, Trunc: true, Append: func(b []byte, e *Event) []byte { return append(b, e.Comm.Bytes()...) }},
	{Name: "SYSCALL", Width: 16, Append: func(b []byte, e *Event) []byte { return append(b, e.Syscall...) }},
	{Name: "ERRNO", Append: func(b []byte, e *Event) []byte { return append(b, e.Errno...) }},
}

var countTable = output.Table[Count]{
	{Name: "PID", Width: 6, Append: func(b []byte, c *Count) []byte { return output.Uint(b, c.PID) }},
	{Name: "COMM", Width: 16, Trunc: true, Append: func(b []byte, c *Count) []byte { return append(b, c.Comm.Bytes()...) }},
	{Name: "SYSCALL", Width: 16, Append: func(b []byte, c *Count) []byte { return append(b, c.Syscall...) }},
	{Name: "ERRNO", Width: 7, Append: func(b []byte, c *Count) []byte { return append(b, c.Errno...) }},
	{Name: "COUNT", Append: func(b []byte, c *Count) []byte { return output.Uint(b, c.Count) }},
}

func runCounts(cmd *cobra.Command, f *flags, t *Tracer) error {
	out := output.NewWriter(cmd.OutOrStdout(), f.common.Format, countTable)
	var mu sync.Mutex // the ticker and the final print share out
	report := func(now time.Time) error {
		counts, err := t.Counts(now)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if out.Format() == output.Text {
			out.Raw(now.AppendFormat([]byte("\n"), "15:04:05\n"))
			out.Header()
		}
		for i := range counts {
			out.Event(&counts[i])
		}
		return out.Flush()
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if f.interval == 0 {
			<-done
			return
		}
		tick := time.NewTicker(time.Duration(f.interval) * time.Second)
		defer tick.Stop()
		for {
			select {
			case now := <-tick.C:
				report(now)
			case <-done:
				return
			}
		}
	}()
	err := cli.Trace(cmd, &f.common, t.Tracer, "EPERM and EACCES failures", func(*Event) {}, nil)
	close(done)
	<-stopped
	if err != nil {
		return err
	}
	if err := report(time.Now()); err != nil {
		return cli.Fail(err)
	}
	return cli.Finish(cmd, t.Session, out)
}
