package opensnoop

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/pyframes/pyprog"
)

// --ustack on a Python program: leaf() opens a file, called by mid(),
// called by top(), from the main thread and from another thread, on each
// interpreter present: the Python frames replace the interpreter's, with
// the script's lines.
func TestPythonFrames(t *testing.T) {
	e2e.Require(t)
	for _, py := range pyprog.Interps(t) {
		for _, mode := range []string{"open", "open-thread"} {
			t.Run(py.Name+"/"+mode, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "leaf.txt")
				p := pyprog.Start(t, py.Path, mode, path)
				opts := e2e.Options()
				opts.Task.PID = p.Pid()
				events := open(t, Config{UStack: true}, opts)
				p.Run(t)
				e := waitPath(t, events, path)
				if e.PID != uint32(p.Pid()) {
					t.Errorf("pid %d, want %d", e.PID, p.Pid())
				}
				p.Check(t, mode, e.UStack)
			})
		}
	}
}

// Without --ustack nothing is walked: no stack.
func TestNoStackWithoutFlag(t *testing.T) {
	e2e.Require(t)
	path := filepath.Join(t.TempDir(), "leaf.txt")
	p := pyprog.Start(t, pyprog.Debian, "open", path)
	opts := e2e.Options()
	opts.Task.PID = p.Pid()
	events := open(t, Config{}, opts)
	p.Run(t)
	if e := e2e.Wait(t, events, 10*time.Second, "the open of "+path, func(e Event) bool { return string(e.Path) == path }); len(e.UStack) != 0 {
		t.Errorf("stack %v without --ustack", e.UStack)
	}
}
