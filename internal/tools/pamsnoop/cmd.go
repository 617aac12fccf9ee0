package pamsnoop

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
	cmd := cli.NewCommand(spec.Info(), spec.Help(), `  owl pamsnoop                        # PAM calls of every process, host and containers
  owl pamsnoop -p 181                 # only process 181, with the libpam it uses
  owl pamsnoop -l /lib/x86_64-linux-gnu/libpam.so.0   # this libpam only
  owl pamsnoop -o json                # {"service":"sshd","user":"root","rhost":"10.0.0.7","event":"pam_authenticate","result":"PAM_AUTH_ERR",...}`,
		&common, func(cmd *cobra.Command, opts tool.Options) error {
			src, err := Open(cfg, opts)
			if lerr := (*LibError)(nil); errors.As(err, &lerr) {
				// Bad input: exit 2, nothing attached.
				return &cli.UsageError{Err: lerr.Err}
			}
			if err != nil {
				return err
			}
			defer src.Close()
			return cli.Stream(cmd, &common, src, table, "PAM calls")
		})
	cmd.Flags().StringVarP(&cfg.Lib, "lib", "l", "", "probe this libpam (`PATH`) only, instead of finding it")
	return cmd
}

var table = output.Table[Event]{
	output.Clock[Event](8),
	output.PID[Event](6),
	output.Comm[Event](16),
	{Name: "SERVICE", Width: 12, Append: func(b []byte, e *Event) []byte { return e.Service.Append(b) }},
	{Name: "USER", Width: 12, Append: func(b []byte, e *Event) []byte { return e.User.Append(b) }},
	{Name: "RHOST", Width: 16, Append: func(b []byte, e *Event) []byte { return e.RHost.Append(b) }},
	{Name: "EVENT", Width: 16, Append: func(b []byte, e *Event) []byte { return append(b, e.Event...) }},
	{Name: "RESULT", Append: func(b []byte, e *Event) []byte { return append(b, e.Result...) }},
}
