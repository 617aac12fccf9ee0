package tcpconnect

import (
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/pyframes/pyprog"
)

// --ustack on a Python client: the connect shows the function that
// connected (socket.create_connection, called by leaf(), by mid() and
// top()), on each interpreter present, from the main thread and another.
func TestPythonFrames(t *testing.T) {
	e2e.Require(t)
	for _, py := range pyprog.Interps(t) {
		for _, mode := range []string{"connect", "connect-thread"} {
			t.Run(py.Name+"/"+mode, func(t *testing.T) {
				server := e2e.Serve(t, "127.0.0.1")
				p := pyprog.Start(t, py.Path, mode, server.String())
				opts := e2e.Options()
				opts.Task.PID = p.Pid()
				tr, err := Open(Config{UStack: true}, opts)
				if err != nil {
					t.Fatal(err)
				}
				events := e2e.Collect(t, tr.Source)
				p.Run(t)
				e := e2e.Wait(t, events, 10*time.Second, "the connect to "+server.String(), func(e Event) bool { return e.Dport == server.Port() })
				if e.PID != uint32(p.Pid()) {
					t.Errorf("pid %d, want %d", e.PID, p.Pid())
				}
				p.Check(t, mode, e.UStack)
			})
		}
	}
}
