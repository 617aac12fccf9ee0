package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// toolsCommand lists each tool with the hook it would use on this kernel. It
// finds out by loading and attaching each tool, then detaching at once.
func toolsCommand(tools []tool.Tool) *cobra.Command {
	var verbose bool
	var only string
	cmd := &cobra.Command{
		Use:   "tools",
		Short: "List the tools and the hook each would use on this kernel",
		Example: `  owl tools               # hook per tool on this kernel
  owl tools -v            # also why the hooks before it were not used
  owl tools --hook kprobe # what each tool would do with kprobes only`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cli.HookKinds("--hook", only); err != nil {
				return err
			}
			prefer, err := cli.HooksEnv()
			if err != nil {
				return err
			}
			// Without privileges every tool would be listed unavailable,
			// the kernel blamed for each.
			if err := cli.Privileged(0, 0); err != nil {
				return err
			}
			if err := probe.EnsureTracefs(); err != nil {
				return err
			}
			opts := tool.DefaultOptions()
			opts.Hook, opts.Prefer, opts.NoReader = only, prefer, true
			opts.Runtime = probe.NewRuntime()
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TOOL\tSUMMARY\tHOOK")
			for _, t := range tools {
				info := t.Info()
				s, err := t.Start(opts)
				if errors.Is(err, tool.ErrNeedsArgs) {
					fmt.Fprintf(w, "%s\t%s\t%s (needs a PATTERN to try)\n", info.Name, info.Summary, info.HooksLine())
					continue
				}
				if err != nil {
					fmt.Fprintf(w, "%s\t%s\tunavailable: %s\n", info.Name, info.Summary, cli.Message(err))
					continue
				}
				fmt.Fprintf(w, "%s\t%s\t%s\n", info.Name, info.Summary, s.Hook().Name)
				if verbose {
					for _, f := range s.Tried() {
						fmt.Fprintf(w, "\t\t  not %s: %s\n", f.Hook, cli.Message(f.Err))
					}
				}
				s.Close()
			}
			return w.Flush()
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also show why preferred hooks were not used")
	cmd.Flags().StringVar(&only, "hook", "", "consider only hooks of this `KIND` (default: env OWL_HOOKS)")
	return cmd
}
