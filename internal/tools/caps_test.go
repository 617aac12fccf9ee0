package tools

import (
	"strings"
	"testing"

	"github.com/owlbpf/owl/internal/caps"
)

// README's capability table says what each tool's Spec.Caps declares with
// its default config, and with -p of a process owl may not read
// otherwise; its last column (flags that need more) is prose, proved by
// test/privs.
func TestReadmeCapabilities(t *testing.T) {
	readme := readme(t)
	for _, tl := range All() {
		if row := CapsRow(tl.Info().Name); !strings.Contains(readme, "\n"+row) {
			t.Errorf("README's capability table lacks a row starting\n%s", row)
		}
	}
}

// CapsRow is the start of a tool's row in README's capability table.
func CapsRow(name string) string {
	info := Find(name).Info()
	pid := "—"
	if more := info.CapsPID &^ info.Caps; more != 0 {
		pid = "+ " + more.String()
	}
	return "| " + name + " | " + (caps.Base | info.Caps).String() + " | " + pid + " |"
}
