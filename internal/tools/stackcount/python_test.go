package stackcount

import (
	"path/filepath"
	"testing"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/pyframes/pyprog"
)

// User stacks at t:syscalls:sys_enter_openat of a Python program, counted:
// the open of leaf() ← mid() ← top() ← <module>, with file and lines, on
// each interpreter present.
func TestPythonFrames(t *testing.T) {
	e2e.Require(t)
	for _, py := range pyprog.Interps(t) {
		t.Run(py.Name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "leaf.txt")
			p := pyprog.Start(t, py.Path, "open", path)
			opts := e2e.Options()
			opts.Task.PID = p.Pid()
			src, err := Open(Config{Probes: resolveT(t, "t:syscalls:sys_enter_openat"), UStack: true}, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			p.Run(t)
			// Read while the program runs: frames are named from its memory.
			var found bool
			for _, st := range stacks(t, src) {
				for _, f := range st.UStack {
					if f.Symbol == "leaf" && f.Lang == "python" {
						found = true
						if st.Count != 1 {
							t.Errorf("leaf's open counted %d times, want 1", st.Count)
						}
						p.Check(t, "open", st.UStack)
					}
				}
			}
			if !found {
				t.Fatal("no stack with leaf()")
			}
		})
	}
}
