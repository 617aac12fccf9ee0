// Command owl runs BPF security and language tracing tools: owl <tool> [flags].
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/tools"
)

func main() {
	// A closed output pipe (owl execsnoop | head -1) then makes writes fail
	// with EPIPE, which ends owl quietly, instead of killing it by SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	err := run(context.Background(), os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "owl: %v\n", err)
	}
	os.Exit(cli.ExitCode(err))
}

func run(ctx context.Context, args []string) error {
	registry := tools.All()
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
	err := root.ExecuteContext(ctx)
	// cobra's own errors for a command it does not know are bad input.
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		return &cli.UsageError{Err: err}
	}
	return err
}
