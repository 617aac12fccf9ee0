package tools

import (
	"context"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/setuids"
	"github.com/owlbpf/owl/internal/tools/tcpaccept"
	"github.com/owlbpf/owl/internal/tools/tcpconnect"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

func TestNamesAreUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, tl := range All() {
		name := tl.Info().Name
		if seen[name] || Find(name) == nil {
			t.Errorf("tool %q is listed twice or cannot be found", name)
		}
		seen[name] = true
	}
}

// Three tools started from the registry in one process, without cobra, as
// the agent will: each hands over its own typed events.
func TestThreeToolsInOneProcess(t *testing.T) {
	e2e.Require(t)
	opts := e2e.Own()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu   sync.Mutex
		got  = map[string]any{}
		wg   sync.WaitGroup
		srvs []tool.Stream
	)
	for _, name := range []string{"tcpconnect", "tcpaccept", "setuids"} {
		s, err := Find(name).Start(opts)
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		srvs = append(srvs, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.Run(ctx, func(e any) {
				mu.Lock()
				defer mu.Unlock()
				// Events are reused: keep a copy.
				switch e := e.(type) {
				case *tcpconnect.Event:
					c := *e
					got[name] = &c
				case *tcpaccept.Event:
					c := *e
					got[name] = &c
				case *setuids.Event:
					c := *e
					got[name] = &c
				default:
					t.Errorf("%s handed over a %T", name, e)
				}
			})
			if err != nil {
				t.Errorf("run %s: %v", name, err)
			}
		}()
	}
	defer func() {
		cancel()
		wg.Wait()
		for _, s := range srvs {
			st, err := s.Stats()
			if err != nil || st.Lost() != 0 {
				t.Errorf("stats %+v, %v", st, err)
			}
			s.Close()
		}
	}()

	server := e2e.Serve(t, "127.0.0.1")
	client := e2e.Dial(t, server)
	// setresuid(-1, -1, -1) changes nothing; raw, so that it runs on one
	// thread only (Go's wrapper repeats it on every thread).
	runtime.LockOSThread()
	unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), ^uintptr(0), ^uintptr(0))
	runtime.UnlockOSThread()

	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if c, ok := got["tcpconnect"].(*tcpconnect.Event); !ok || c.Dport != server.Port() {
		t.Errorf("tcpconnect: got %+v, want a connect to %v", got["tcpconnect"], server)
	}
	if a, ok := got["tcpaccept"].(*tcpaccept.Event); !ok || a.Rport != client.Port() || a.Lport != server.Port() {
		t.Errorf("tcpaccept: got %+v, want %v accepted on %v", got["tcpaccept"], client, server)
	}
	if s, ok := got["setuids"].(*setuids.Event); !ok || s.Syscall != "setresuid" || s.PID != uint32(os.Getpid()) {
		t.Errorf("setuids: got %+v, want setresuid from pid %d", got["setuids"], os.Getpid())
	}
}
