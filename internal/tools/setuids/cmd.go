package setuids

import (
	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

func command() *cobra.Command {
	var common cli.Common
	return cli.NewCommand(spec.Info(), spec.Help(), `  owl setuids              # trace all privilege changes
  owl setuids -p 181       # only process 181
  owl setuids -o json      # {"syscall":"setresuid","ia32":false,"args":{"ruid":-1,"euid":0,"suid":-1},"ret":0,...}`,
		&common, func(cmd *cobra.Command, opts tool.Options) error {
			src, err := Open(Config{}, opts)
			if err != nil {
				return err
			}
			defer src.Close()
			return cli.Stream(cmd, &common, src, table, "privilege-changing syscalls")
		})
}

var table = output.Table[Event]{
	output.Clock[Event](8),
	output.PID[Event](6),
	output.Comm[Event](16),
	output.UID[Event](6),
	{Name: "SYSCALL", Width: 16, Append: func(b []byte, e *Event) []byte {
		if e.IA32 {
			b = append(b, "ia32:"...)
		}
		return append(b, e.Syscall...)
	}},
	{Name: "ARGS (RET)", Append: func(b []byte, e *Event) []byte {
		b = e.Args.AppendText(b)
		b = append(b, ' ')
		return e.AppendResult(b)
	}},
}
