package e2e

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

// SyncBuffer is a bytes.Buffer a test may read while a command writes it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tracing is what a tool's command writes to stderr once it traces.
const tracing = "Hit Ctrl-C to end."

// RunCommand runs a tool's command (`owl TOOL args`) in this process. Once
// the command says it is tracing, workload runs (when not nil), then the
// command is stopped as by Ctrl-C; a command that ends before it traces
// (bad input, a listing) returns as it ends. It returns what the command
// wrote to stdout and stderr, and its error.
func RunCommand(t testing.TB, cmd *cobra.Command, args []string, workload func()) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd.SetContext(ctx)
	cmd.SetArgs(append([]string{}, args...)) // nil would make cobra read os.Args
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	var out, errOut SyncBuffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	done := make(chan error, 1)
	go func() { done <- cmd.Execute() }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(errOut.String(), tracing) {
		select {
		case err := <-done:
			return out.String(), errOut.String(), err
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s %v never started tracing: %s", cmd.Name(), args, errOut.String())
		}
	}
	if workload != nil {
		workload()
	}
	cancel()
	err = <-done
	return out.String(), errOut.String(), err
}
