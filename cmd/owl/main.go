// Command owl runs BPF security and language tracing tools: owl <tool> [flags].
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
)

func main() {
	err := run(context.Background(), os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "owl: %v\n", err)
	}
	os.Exit(cli.ExitCode(err))
}

func run(ctx context.Context, args []string) error {
	root := &cobra.Command{
		Use:   "owl",
		Short: "BPF security and language tracing tools in one static binary",
		Long: `owl runs the security and language tracing tools of "BPF Performance Tools"
on today's kernels: tracepoints and uprobes first, kprobes and fentry where
they exist. Run 'owl tools' to see which hook each tool uses on this kernel.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &cli.UsageError{Err: err} })
	root.AddCommand(toolsCommand(registry))
	for _, t := range registry {
		cmd := t.Command()
		cmd.SetFlagErrorFunc(root.FlagErrorFunc())
		root.AddCommand(cmd)
	}
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}
