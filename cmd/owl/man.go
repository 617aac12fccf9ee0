//go:build man

package main

import (
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

func init() {
	manCommand = func(root *cobra.Command) *cobra.Command {
		return &cobra.Command{
			Use:    "man DIR",
			Short:  "Write man pages (section 8) for owl and each tool into DIR",
			Hidden: true,
			Args:   func(cmd *cobra.Command, args []string) error { return usage(cobra.ExactArgs(1)(cmd, args)) },
			RunE: func(cmd *cobra.Command, args []string) error {
				return writeMan(root, args[0])
			},
		}
	}
}

// writeMan writes owl.8 and owl-TOOL.8 for each command into dir. Section
// 8: the tools are for administrators (they need root), as BCC's are.
func writeMan(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// The commit's time rather than today's: the same commit gives the
	// same pages.
	date := time.Now()
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if t, err := time.Parse(time.RFC3339, s.Value); s.Key == "vcs.time" && err == nil {
				date = t
			}
		}
	}
	v, _, _ := strings.Cut(root.Version, "\n")
	root.DisableAutoGenTag = true
	root.InitDefaultVersionFlag()
	escapeMarkdown(root, map[*pflag.Flag]bool{})
	return doc.GenManTree(root, &doc.GenManHeader{Section: "8", Date: &date, Source: v, Manual: "owl manual"}, dir)
}

// markdown escapes what go-md2man would read as markup in help prose:
// "set*uid, set*gid" would turn italic and "<PID>" vanish as HTML.
var markdown = strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "<", `\<`, ">", `\>`)

// escapeMarkdown escapes the prose of cmd, its subcommands and their flags
// (each flag once: inherited flags are shared). Examples are left alone:
// they go in a code block.
func escapeMarkdown(cmd *cobra.Command, seen map[*pflag.Flag]bool) {
	cmd.InitDefaultHelpFlag()
	cmd.Short = markdown.Replace(cmd.Short)
	cmd.Long = markdown.Replace(cmd.Long)
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !seen[f] {
			seen[f] = true
			f.Usage = markdown.Replace(f.Usage)
		}
	})
	for _, c := range cmd.Commands() {
		escapeMarkdown(c, seen)
	}
}
