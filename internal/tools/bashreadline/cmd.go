package bashreadline

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

func command() *cobra.Command {
	var (
		common cli.Common
		cfg    Config
	)
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl bashreadline                    # commands typed into any bash using /bin/bash
  owl bashreadline -p 181             # only the bash of pid 181 (its own executable)
  owl bashreadline -s /usr/local/bin/bash   # a bash elsewhere
  owl bashreadline -o json            # {"time":...,"pid":181,...,"command":"ls -l","cut":false}`,
		&common, func(cmd *cobra.Command, opts tool.Options) error {
			src, err := Open(cfg, opts)
			if terr := (*TargetError)(nil); errors.As(err, &terr) {
				// Bad input: exit 2, nothing attached.
				return &cli.UsageError{Err: terr.Err}
			}
			if err != nil {
				return err
			}
			defer src.Close()
			return cli.Stream(cmd, &common, src, table, "bash commands")
		})
	cmd.Flags().StringVarP(&cfg.Shared, "shared", "s", "", "probe readline in this bash or libreadline (`PATH`); default /bin/bash")
	return cmd
}

// table is BCC's: "%-9s %-6d %s".
var table = output.Table[Event]{
	output.Clock[Event](9),
	output.PID[Event](6),
	{Name: "COMMAND", Append: func(b []byte, e *Event) []byte { return e.Command.Append(b) }},
}
