package faults

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools"
)

// heapGrowth bounds how much the Go heap (after GC) may grow over a
// tool's cycles, once warm. It is near 0.4 MiB after any tool's cycles
// here; a leaked session (its collection spec copy, maps, reader) is tens
// of KiB or more, and leaked descriptors and goroutines are caught exactly.
const heapGrowth = 2 << 20

// Cycles per tool: at least minCycles and up to maxCycles, within
// cycleBudget, by default (on a loaded 2-CPU host a cycle takes 80 to
// 700 ms); OWL_SOAK=1 runs maxCycles whatever they take.
const (
	minCycles   = 10
	maxCycles   = 100
	cycleBudget = 2 * time.Second
)

// Each tool of the registry is started and stopped again and again in
// this process, the way owl runs it: its cobra command, with the
// arguments that make it attach, cancelled once it says Tracing.
// Afterwards this process holds no more descriptors, goroutines or BPF
// objects than after the warm-up, its Go heap is within heapGrowth, and
// nothing the tool made is left in the kernel. 100 cycles each with
// OWL_SOAK=1; by default as many as fit in cycleBudget, at least 10.
func TestStartStopCycles(t *testing.T) {
	skipInGuest(t)
	e2e.Require(t)
	w := newWorld(t)
	total := 0
	for _, tl := range tools.All() {
		name := tl.Info().Name
		t.Run(name, func(t *testing.T) { total += cycles(t, w, tl) })
	}
	t.Logf("%d start/stop cycles", total)
}

// usage is what a process holds that a leak would grow.
type usage struct {
	fds, goroutines int
	heap            uint64
	objects         int // BPF objects this process holds
}

func measure() usage {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ents, _ := os.ReadDir("/proc/self/fd")
	return usage{fds: len(ents), goroutines: runtime.NumGoroutine(), heap: ms.HeapAlloc, objects: len(heldBy("self"))}
}

// settled measures until descriptors, goroutines and BPF objects are
// back to base, or 5 s have passed: closing is synchronous, but the
// goroutines of a finished run take a moment to return.
func settled(base usage) usage {
	deadline := time.Now().Add(5 * time.Second)
	for {
		u := measure()
		if u.fds <= base.fds && u.goroutines <= base.goroutines && u.objects <= base.objects || time.Now().After(deadline) {
			return u
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cycles(t *testing.T, w *world, tl tool.Tool) int {
	tname := tl.Info().Name
	args := w.argv(t, tname, "")[1:]
	before, err := kernelObjects()
	if err != nil {
		t.Fatal(err)
	}
	// Warm-up: two cycles fill what is filled once, and the first one
	// learns the names of the tool's BPF objects.
	names := map[string]bool{}
	held := heldBy("self")
	for i := range 2 {
		err := cycle(tl, args, func() {
			if i == 0 {
				for o := range heldBy("self") {
					if !held[o] {
						names[name(o)] = true
					}
				}
			}
		})
		if errors.Is(err, probe.ErrNoHook) {
			t.Skipf("no hook for %s on this kernel: %v", tname, err)
		}
		if err != nil {
			t.Fatalf("owl %s %q: %v", tname, args, err)
		}
	}
	base := measure()
	start := time.Now()
	n := 0
	for n < maxCycles && (soak || n < minCycles || time.Since(start) < cycleBudget) {
		if err := cycle(tl, args, nil); err != nil {
			t.Fatalf("cycle %d of owl %s %q: %v", n, tname, args, err)
		}
		n++
	}
	took := time.Since(start)
	end := settled(base)
	t.Logf("%d cycles of owl %s %q in %v (%v each): fds %d → %d, goroutines %d → %d, BPF objects held %d → %d, heap %.1f → %.1f MiB",
		n, tname, args, took.Round(time.Millisecond), (took / time.Duration(n)).Round(time.Millisecond),
		base.fds, end.fds, base.goroutines, end.goroutines, base.objects, end.objects,
		float64(base.heap)/(1<<20), float64(end.heap)/(1<<20))
	if end.fds > base.fds {
		t.Errorf("%d cycles: open descriptors grew from %d to %d", n, base.fds, end.fds)
	}
	if end.goroutines > base.goroutines {
		t.Errorf("%d cycles: goroutines grew from %d to %d", n, base.goroutines, end.goroutines)
	}
	if end.objects > base.objects {
		t.Errorf("%d cycles: BPF objects held grew from %d to %d", n, base.objects, end.objects)
	}
	if end.heap > base.heap+heapGrowth {
		t.Errorf("%d cycles: Go heap grew from %d to %d bytes (bound %d)", n, base.heap, end.heap, heapGrowth)
	}
	left, err := orphans(before, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("after %d cycles of owl %s, BPF objects of its kinds are held by no process: %v", n, tname, left)
	}
	return n + 2
}

// cycle runs tool tl's command with args in this process until it says
// Tracing, calls atReady (when not nil), and cancels it.
func cycle(tl tool.Tool, args []string, atReady func()) error {
	cmd := tl.Command()
	cmd.SetArgs(args)
	var stdout bytes.Buffer
	cmd.SetOut(&stdout)
	stderr := &readyWriter{ready: make(chan struct{})}
	cmd.SetErr(stderr)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	select {
	case <-stderr.ready:
		if atReady != nil {
			atReady()
		}
		cancel()
		if err := <-done; err != nil {
			return fmt.Errorf("%w; stderr: %s", err, stderr.String())
		}
		return nil
	case err := <-done:
		if err == nil {
			err = errors.New("ended before it said Tracing")
		}
		return fmt.Errorf("%w; stderr: %s", err, stderr.String())
	case <-time.After(60 * time.Second):
		cancel()
		return fmt.Errorf("no Tracing line after 60 s; stderr: %s", stderr.String())
	}
}

// readyWriter is a command's stderr: it closes ready at the Tracing line.
type readyWriter struct {
	mu    sync.Mutex
	buf   strings.Builder
	ready chan struct{}
	seen  bool
}

func (r *readyWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Write(p)
	if !r.seen && strings.Contains(r.buf.String(), "Hit Ctrl-C to end.") {
		r.seen = true
		close(r.ready)
	}
	return len(p), nil
}

func (r *readyWriter) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String()
}
