package trace

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/pyframes/pyprog"
)

// -U at libc's open64 called from Python: the Python frames of the call,
// on Debian's python3.11.
func TestPythonFrames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leaf.txt")
	p := pyprog.Start(t, pyprog.Debian, "open", path)
	src := openOrFatal(t, Config{Probes: []string{`libc.so.6:open64 "%s", arg1`}, UStack: true}, p.Pid())
	ch := e2e.Collect(t, src.Source)
	p.Run(t)
	e := e2e.Wait(t, ch, 10*time.Second, "the open of "+path, func(e Event) bool { return e.Msg == path })
	p.Check(t, "open", e.UStack)
}
