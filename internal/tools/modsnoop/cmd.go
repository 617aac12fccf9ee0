package modsnoop

import (
	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

func command() *cobra.Command {
	var common cli.Common
	return cli.NewCommand(spec.Info(), spec.Help(), `  owl modsnoop              # trace module loads
  owl modsnoop -p 181       # only loads made by process 181
  owl modsnoop -o json      # {"module":"nls_ascii","taints":"-","file":"/lib/modules/.../nls_ascii.ko",...}`,
		&common, func(cmd *cobra.Command, opts tool.Options) error {
			src, err := Open(Config{}, opts)
			if err != nil {
				return err
			}
			defer src.Close()
			return cli.Stream(cmd, &common, src, table, "kernel module loads")
		})
}

// appendName appends an escaped name (anyone can name a file or a
// module), "-" when unknown.
func appendName(b []byte, n event.Name) []byte {
	if n == "" {
		return append(b, '-')
	}
	return event.AppendEscaped(b, []byte(n))
}

var table = output.Table[Event]{
	output.Clock[Event](8),
	output.PID[Event](6),
	output.Comm[Event](16),
	{Name: "MODULE", Width: 20, Append: func(b []byte, e *Event) []byte { return appendName(b, e.Module) }},
	{Name: "TAINTS", Width: 7, Append: func(b []byte, e *Event) []byte {
		if e.Taints == nil {
			return append(b, '-')
		}
		return e.Taints.Append(b)
	}},
	{Name: "FILE", Append: func(b []byte, e *Event) []byte { return appendName(b, e.File) }},
}
