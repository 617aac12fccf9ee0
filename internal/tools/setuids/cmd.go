package setuids

import (
	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
)

const summary = "Trace privilege-changing syscalls (set*uid, set*gid, setfs*)"

// Tool is setuids' registry entry.
var Tool = cli.Tool{
	Name:    "setuids",
	Summary: summary,
	Command: command,
	Probe:   Probe,
}

func command() *cobra.Command {
	var common cli.Common
	cmd := &cobra.Command{
		Use:   "setuids [flags]",
		Short: summary,
		Long: `Trace the privilege-changing syscalls setuid, setgid, setreuid, setregid,
setresuid, setresgid, setfsuid and setfsgid, with their arguments and result.
UID is the caller's uid when it made the call. An argument of -1 means
"unchanged". The result is 0 or -ERRNO, except for setfsuid and setfsgid,
which return the previous fsuid/fsgid: shown as (prevuid=N) / (prevgid=N).

Hooks: the tracepoints syscalls:sys_enter_* and sys_exit_* of each syscall.

JSON fields: time, pid, tid, comm, uid, syscall, args{name: value}, ret.`,
		Example: `  owl setuids              # trace all privilege changes
  owl setuids -p 181       # only process 181
  owl setuids -o json      # {"syscall":"setresuid","args":{"ruid":-1,"euid":0,"suid":-1},"ret":0,...}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := common.Validate(); err != nil {
				return err
			}
			t, err := New(Config{PID: common.PID, Hook: common.Hook})
			if err != nil {
				return err
			}
			defer t.Close()
			out := output.NewWriter(cmd.OutOrStdout(), common.Format, table)
			return cli.Stream(cmd, &common, t, out, "privilege-changing syscalls", func(e *Event) { out.Event(e) })
		},
	}
	common.AddFlags(cmd, true)
	return cmd
}

var table = output.Table[Event]{
	{Name: "TIME", Width: 8, Append: func(b []byte, e *Event) []byte { return output.Clock(b, e.Time) }},
	{Name: "PID", Width: 6, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.PID) }},
	{Name: "COMM", Width: 16, Trunc: true, Append: func(b []byte, e *Event) []byte { return append(b, e.Comm.Bytes()...) }},
	{Name: "UID", Width: 6, Append: func(b []byte, e *Event) []byte { return output.Uint(b, e.UID) }},
	{Name: "SYSCALL", Width: 16, Append: func(b []byte, e *Event) []byte { return append(b, e.Syscall...) }},
	{Name: "ARGS (RET)", Append: func(b []byte, e *Event) []byte {
		b = e.Args.AppendText(b)
		b = append(b, ' ')
		return e.AppendResult(b)
	}},
}
