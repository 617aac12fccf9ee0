package uthreads

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/langs/langtest"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// TestJavaThread: a thread the program names and starts is seen start
// and stop, with its name and Java id.
func TestJavaThread(t *testing.T) {
	e2e.Require(t)
	p := langtest.Java(t)
	cfg, err := Resolve(langs.Java, p.PID())
	if err != nil {
		t.Fatal(err)
	}
	opts := e2e.Options()
	opts.Task.PID = p.PID()
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ch := e2e.Collect(t, src)
	ans := p.Say(t, "thread owl-worker-7")
	id, err := strconv.ParseUint(strings.TrimPrefix(ans, "thread "), 10, 64)
	if err != nil {
		t.Fatalf("program said %q", ans)
	}
	var types []string
	for timeout := time.After(10 * time.Second); len(types) < 2; {
		select {
		case e := <-ch:
			if e.Name != "owl-worker-7" {
				continue
			}
			if e.RuntimeID != id || e.NativeID != uint64(e.TID) || e.PID != uint32(p.PID()) {
				t.Errorf("event %+v: want Java id %d, native id = tid", e, id)
			}
			types = append(types, e.Type)
		case <-timeout:
			t.Fatalf("saw %v of thread owl-worker-7, want start and stop", types)
		}
	}
	if types[0] != "start" || types[1] != "stop" {
		t.Errorf("events %v, want start then stop", types)
	}
}

// TestCThreads: a C program starts 5 threads running owl_worker, each
// naming itself: 5 starts naming owl_worker with the new TIDs, 5 stops of
// the same TIDs with the routine and the names.
func TestCThreads(t *testing.T) {
	e2e.Require(t)
	p := langtest.C(t, "threads")
	if l, err := langs.Detect(p.PID()); err != nil || l != langs.C {
		t.Fatalf("detected %q (%v), want c", l, err)
	}
	cfg, err := Resolve(langs.C, p.PID())
	if err != nil {
		t.Fatal(err)
	}
	opts := e2e.Options()
	opts.Task.PID = p.PID()
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ch := e2e.Collect(t, src)
	const n = 5
	if ans := p.Say(t, "threads 5"); ans != "threads 5" {
		t.Fatalf("program said %q", ans)
	}
	starts := map[uint64]Event{}
	stops := map[uint64]Event{}
	for timeout := time.After(10 * time.Second); len(starts) < n || len(stops) < n; {
		select {
		case e := <-ch:
			if e.PID != uint32(p.PID()) {
				t.Errorf("event of pid %d: %+v", e.PID, e)
				continue
			}
			if e.Routine == nil || e.Routine.Symbol != "owl_worker" || e.Routine.Module != "threads" {
				t.Errorf("%s of %d: routine %+v, want owl_worker [threads]", e.Type, e.NativeID, e.Routine)
			}
			switch e.Type {
			case "start":
				if e.TID != uint32(p.PID()) {
					t.Errorf("start %+v: want from the main thread %d", e, p.PID())
				}
				starts[e.NativeID] = e
			case "stop":
				if uint64(e.TID) != e.NativeID || !strings.HasPrefix(string(e.Name), "owl-w") || e.Comm.String() != string(e.Name) {
					t.Errorf("stop %+v: want from the thread itself, named owl-w<i>", e)
				}
				stops[e.NativeID] = e
			}
		case <-timeout:
			t.Fatalf("saw %d starts and %d stops, want %d each", len(starts), len(stops), n)
		}
	}
	names := map[string]bool{}
	for tid, e := range stops {
		if _, ok := starts[tid]; !ok {
			t.Errorf("stop of %d without its start", tid)
		}
		names[string(e.Name)] = true
	}
	for i := 0; i < n; i++ {
		if name := "owl-w" + strconv.Itoa(i); !names[name] {
			t.Errorf("no thread stopped named %s: %v", name, names)
		}
	}
	var b []byte
	b = appendC(b, ptr(stops[firstKey(stops)]))
	if !strings.HasPrefix(string(b), "owl_worker [threads] (owl-w") {
		t.Errorf("description %q", b)
	}
}

func ptr[T any](v T) *T { return &v }

func firstKey[V any](m map[uint64]V) uint64 {
	for k := range m {
		return k
	}
	return 0
}
