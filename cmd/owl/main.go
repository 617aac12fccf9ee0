// Command owl runs BPF security and language tracing tools: owl <tool> [flags].
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools"
)

func main() {
	// A closed output pipe (owl execsnoop | head -1) then makes writes fail
	// with EPIPE, which ends owl quietly, instead of killing it by SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	debugStats()
	err := run(context.Background(), os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "owl: %s\n", cli.Message(err))
	}
	os.Exit(cli.ExitCode(err))
}

func run(ctx context.Context, args []string) error {
	root := newRoot(tools.All())
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	// cobra's own errors for a command it does not know are bad input.
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		return &cli.UsageError{Err: err}
	}
	return err
}

// groupTitles are the headings of `owl --help`, in order, by tool.Spec's
// Group. A group is shown once a tool is in it.
var groupTitles = map[string]string{
	"security": "Security tools:",
	"language": "Language tools:",
	"fleet":    "Fleet:",
}

var groupOrder = []string{"security", "language", "fleet"}

// otherGroup holds owl's own commands: tools, help, completion.
const otherGroup = "owl"

// newRoot builds the owl command with a command per tool of registry,
// grouped by what the tools are for.
func newRoot(registry []tool.Tool) *cobra.Command {
	root := &cobra.Command{
		Use:   "owl",
		Short: "BPF security and language tracing tools in one static binary",
		Long: `owl runs the security and language tracing tools of "BPF Performance Tools"
on today's kernels: tracepoints and uprobes first, kprobes and fentry where
they exist. Run 'owl tools' to see which hook each tool uses on this kernel.
Tracing needs root, or CAP_BPF and CAP_PERFMON; a user other than root
also needs CAP_DAC_READ_SEARCH (to read /sys/kernel/tracing), and tools
that read other processes or name kernel frames CAP_SYS_PTRACE or
CAP_SYSLOG: README's table lists them per tool, and owl names in one line
what it lacks.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	// --version is owl's own flag, not cobra's Version: cobra prints that
	// through text/template, whose reflection keeps every exported method
	// in the binary (~3 MB more, ~1.5 MB more RSS at start).
	showVersion := root.Flags().Bool("version", false, "print owl's version, commit, commit date and Go version")
	root.RunE = func(cmd *cobra.Command, _ []string) error {
		if *showVersion {
			fmt.Fprintln(cmd.OutOrStdout(), version())
			return nil
		}
		return cmd.Help()
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &cli.UsageError{Err: err} })

	used := map[string]bool{}
	for _, t := range registry {
		used[t.Info().Group] = true
	}
	for _, id := range groupOrder {
		if used[id] {
			root.AddGroup(&cobra.Group{ID: id, Title: groupTitles[id]})
		}
	}
	for _, t := range registry {
		// A group without a title still gets a heading: cobra panics on
		// a command whose group was not added.
		if g := t.Info().Group; g != "" && groupTitles[g] == "" && !root.ContainsGroup(g) {
			root.AddGroup(&cobra.Group{ID: g, Title: g + ":"})
		}
	}
	root.AddGroup(&cobra.Group{ID: otherGroup, Title: "Other commands:"})
	root.SetHelpCommandGroupID(otherGroup)
	root.SetCompletionCommandGroupID(otherGroup)

	tc := toolsCommand(registry)
	tc.GroupID = otherGroup
	root.AddCommand(tc)
	if manCommand != nil {
		root.AddCommand(manCommand(root))
	}
	// The agent runs the registry's tools; it is the fleet's command.
	if !root.ContainsGroup("fleet") {
		root.AddGroup(&cobra.Group{ID: "fleet", Title: groupTitles["fleet"]})
	}
	ac := agentCommand(registry)
	ac.GroupID = "fleet"
	root.AddCommand(ac)
	dc := detectCommand(registry)
	dc.GroupID = "fleet"
	root.AddCommand(dc)
	for _, t := range registry {
		cmd := t.Command()
		cmd.GroupID = t.Info().Group
		cmd.SetFlagErrorFunc(root.FlagErrorFunc())
		root.AddCommand(cmd)
	}
	return root
}

// version is what `owl --version` prints, from the build information the
// Go toolchain records: the module version ("devel" for a build of a
// checkout), the commit, its time and whether the tree had changes, and
// the Go release that built it.
func version() string {
	v, commit, date, modified := "devel", "unknown", "unknown", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.time":
				date = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if modified {
		commit += " (modified)"
	}
	return fmt.Sprintf("owl %s\ncommit: %s\ndate: %s\ngo: %s %s/%s", v, commit, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// manCommand, when built with -tags man (make man), makes the hidden
// command that writes man pages: the release binary does without cobra's
// doc generator, which adds half a megabyte and 2 ms of start-up (markdown
// tables built at init).
var manCommand func(root *cobra.Command) *cobra.Command

func usage(err error) error {
	if err != nil {
		return &cli.UsageError{Err: err}
	}
	return nil
}
