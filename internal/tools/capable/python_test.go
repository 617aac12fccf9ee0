package capable

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/pyframes/pyprog"
)

// -U on a Python program whose leaf() opens a file of mode 0 for writing:
// the permission check asks for CAP_DAC_OVERRIDE, with the Python frames
// of the open in its user stack (Debian's python3.11).
func TestPythonFrames(t *testing.T) {
	e2e.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: the check is CAP_DAC_OVERRIDE on a file of mode 0")
	}
	path := filepath.Join(t.TempDir(), "leaf.txt")
	if err := os.WriteFile(path, nil, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	p := pyprog.Start(t, pyprog.Debian, "open", path)
	opts := e2e.Options()
	opts.Task.PID = p.Pid()
	tr, err := Open(Config{UStack: true}, opts)
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr)
	p.Run(t)
	e := e2e.Wait(t, events, 10*time.Second, "CAP_DAC_OVERRIDE", func(e Event) bool {
		return e.CapName == "CAP_DAC_OVERRIDE" && len(e.UStack) > 0
	})
	p.Check(t, "open", e.UStack)
}
