package faults

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tools"
)

// phase is when a fault comes.
type phase string

const (
	attaching phase = "attach" // a random time between start and the Tracing line
	streaming phase = "stream" // while events flow
	detaching phase = "detach" // a random time after SIGINT, while owl drains and detaches
)

var (
	phases  = []phase{attaching, streaming, detaching}
	signals = []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL}
)

type fault struct {
	sig   syscall.Signal
	phase phase
}

func (f fault) String() string { return fmt.Sprintf("%s while %s", unix.SignalName(f.sig), f.phase) }

// plan is the faults tool number i gets after its first run (SIGINT while
// streaming): each signal once, at phases that rotate from tool to tool,
// so every (signal, phase) pair comes up across the registry. With
// OWL_SOAK=1: every pair, three times.
func plan(i int) []fault {
	var fs []fault
	if soak {
		for range 3 {
			for _, sig := range signals {
				for _, ph := range phases {
					fs = append(fs, fault{sig, ph})
				}
			}
		}
		return fs
	}
	for j, sig := range signals {
		fs = append(fs, fault{sig, phases[(i+j)%len(phases)]})
	}
	return fs
}

// seed makes a run's random delays repeatable: OWL_FAULTS_SEED=N replays
// the one a failed run logged.
func seed(t *testing.T) *rand.Rand {
	s := uint64(time.Now().UnixNano())
	if v := os.Getenv("OWL_FAULTS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("OWL_FAULTS_SEED=%q: %v", v, err)
		}
		s = n
	}
	t.Logf("random delays from OWL_FAULTS_SEED=%d", s)
	return rand.New(rand.NewPCG(s, s))
}

// Every tool of the registry, run as owl is run (exec'd), gets SIGINT,
// SIGTERM and SIGKILL at random points: while attaching, while events
// flow, while detaching. Afterwards no BPF program, map or link it held
// is left in the kernel, nothing of it is orphaned (held by no process),
// and tracefs holds no uprobe or kprobe of it: while it runs too, since
// uprobes made through tracefs (the legacy way) would outlive a SIGKILL.
func TestFaultsLeaveNothingBehind(t *testing.T) {
	skipInGuest(t)
	e2e.Require(t)
	rng := seed(t)
	w := newWorld(t)
	probes := tracefsProbes()
	var total int
	for i, tl := range tools.All() {
		name := tl.Info().Name
		t.Run(name, func(t *testing.T) { total += faults(t, w, rng, i, name, probes) })
	}
	t.Logf("%d faults injected", total)
}

// faults runs tool name under the faults of plan(i) and checks what they
// leave; it returns how many runs it made.
func faults(t *testing.T, w *world, rng *rand.Rand, i int, name string, probes map[string]bool) int {
	argv := w.argv(t, name, "")
	before, err := kernelObjects()
	if err != nil {
		t.Fatal(err)
	}

	// First a clean run, SIGINT while streaming, which times the attach
	// and the detach for the random delays and learns the names of the
	// tool's objects.
	r := startOwl(t, argv...)
	if !r.waitReady(60 * time.Second) {
		r.waitExit(t, 10*time.Second)
		if why := r.unavailable(); why != "" {
			t.Skipf("no hook for %s on this kernel: %s", name, why)
		}
		t.Fatalf("owl %v: %s before the Tracing line; stderr:\n%s", argv, r.status(), r.errText())
	}
	attach := r.readyAt.Sub(r.start)
	if added := newProbes(probes); len(added) > 0 {
		t.Errorf("tracefs probes appeared while owl %v runs (they would outlive a SIGKILL): %v", argv, added)
	}
	time.Sleep(300 * time.Millisecond)
	stopped := time.Now()
	r.signal(syscall.SIGINT)
	r.waitExit(t, 30*time.Second)
	detach := time.Since(stopped)
	check(t, r, fault{syscall.SIGINT, streaming})
	names := map[string]bool{}
	for _, n := range r.objects() {
		names[n] = true
	}
	t.Logf("%v: attached in %v (%d BPF objects), %d lines, detached in %v",
		argv, attach.Round(time.Millisecond), len(names), r.stdoutLines(), detach.Round(time.Millisecond))

	runs := 1
	for _, f := range plan(i) {
		r := startOwl(t, argv...)
		switch f.phase {
		case attaching:
			time.Sleep(time.Duration(rng.Int64N(int64(attach))))
			r.signal(f.sig)
		case streaming:
			if !r.waitReady(60 * time.Second) {
				t.Fatalf("%v: owl %v did not start: %s; stderr:\n%s", f, argv, r.status(), r.errText())
			}
			time.Sleep(50*time.Millisecond + time.Duration(rng.Int64N(int64(250*time.Millisecond))))
			r.signal(f.sig)
		case detaching:
			if !r.waitReady(60 * time.Second) {
				t.Fatalf("%v: owl %v did not start: %s; stderr:\n%s", f, argv, r.status(), r.errText())
			}
			time.Sleep(100 * time.Millisecond)
			r.signal(syscall.SIGINT)
			time.Sleep(time.Duration(rng.Int64N(int64(detach))))
			r.signal(f.sig)
		}
		r.waitExit(t, 30*time.Second)
		check(t, r, f)
		runs++
	}

	left, err := orphans(before, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("after %d runs of owl %v, BPF objects of its kinds are held by no process: %v", runs, argv, left)
	}
	if added := newProbes(probes); len(added) > 0 {
		t.Errorf("after %d runs of owl %v, tracefs holds new probes: %v", runs, argv, added)
	}
	return runs
}

// check looks at how a run ended under fault f: a defined status (0 after
// SIGINT or SIGTERM it handled, else killed by the signal), no crash, and
// none of the BPF objects it held left in the kernel.
func check(t *testing.T, r *owlRun, f fault) {
	t.Helper()
	status, killed := r.status(), "killed by "+unix.SignalName(f.sig)
	var ok bool
	switch {
	case f.sig == syscall.SIGKILL:
		// While detaching, owl may be done before the kill comes.
		ok = status == killed || f.phase == detaching && status == "exit 0"
	case f.phase == streaming:
		// Handled: the run drains, reports and exits 0.
		ok = status == "exit 0"
	default:
		// Before the handler is set (early in attaching) or after it is
		// let go (late in detaching), the signal's default action.
		ok = status == "exit 0" || status == killed
	}
	if !ok {
		t.Errorf("%v: owl %v ended with %s; stderr:\n%s", f, r.args, status, r.errText())
	}
	if r.crashed() {
		t.Errorf("%v: owl %v crashed; stderr:\n%s", f, r.args, r.errText())
	}
	if left := stillThere(r.objects()); len(left) > 0 {
		t.Errorf("%v: %d BPF objects owl %v held are still in the kernel: %v", f, len(left), r.args, left)
	}
}
