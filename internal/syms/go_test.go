package syms

import (
	"path/filepath"
	"testing"

	"github.com/owlbpf/owl/internal/e2e"
)

// TestResolveGo symbolizes a running Go program through its pclntab, also
// stripped of .symtab (-s -w) and as a PIE, against the address the program
// printed itself.
func TestResolveGo(t *testing.T) {
	goTool := e2e.Need(t, "go")
	src, err := filepath.Abs("testdata/gotarget/main.go")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cache := NewCache()
	for _, c := range []struct {
		name  string
		flags []string
	}{
		{"go-exe", nil},
		{"go-stripped", []string{"-ldflags=-s -w"}},
		{"go-pie-stripped", []string{"-buildmode=pie", "-ldflags=-s -w"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin := filepath.Join(dir, c.name)
			run(t, dir, goTool, append(append([]string{"build", "-o", bin}, c.flags...), src)...)
			pid, addrs := startTarget(t, bin)
			r, err := NewResolver(pid, cache)
			if err != nil {
				t.Fatal(err)
			}
			checkFrame(t, r, addrs["main.owlTestTarget"], "main.owlTestTarget", c.name)
		})
	}
}
