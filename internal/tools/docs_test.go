package tools

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/owlbpf/owl/internal/e2e"
)

// readme is README.md; the test skips in the qemu guests, which have the
// test binaries and no source tree.
func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if errors.Is(err, fs.ErrNotExist) && e2e.InGuest() {
		t.Skip("no source tree here (the qemu guest has only test binaries)")
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// README's tool table, its JSON-fields lines and every --help are made
// from the tools' Specs (hooks and fields are written once, there): this
// test fails when README drifts, and prints the line it wants.
func TestReadmeAndHelpMatchTheSpecs(t *testing.T) {
	readme := readme(t)
	for _, tl := range All() {
		info := tl.Info()
		row := "| " + info.Name + " | " + info.Summary + " | " + info.HooksLine() + " |"
		if !strings.Contains(readme, row+"\n") {
			t.Errorf("README's tool table lacks the row\n%s", row)
		}
		if !strings.Contains(readme, info.FieldsLine()+"\n") {
			t.Errorf("README's %s section lacks the line\n%s", info.Name, info.FieldsLine())
		}
		cmd := tl.Command()
		if cmd.Short != info.Summary || !strings.Contains(cmd.Long, "Hooks, in order of preference: "+info.HooksLine()+".") ||
			!strings.HasSuffix(cmd.Long, info.FieldsLine()) {
			t.Errorf("%s --help does not end with its hooks and fields:\n%s", info.Name, cmd.Long)
		}
		if !strings.HasPrefix(cmd.Use, info.Name+" ") || cmd.Example == "" {
			t.Errorf("%s: usage %q, examples %q", info.Name, cmd.Use, cmd.Example)
		}
	}
}
