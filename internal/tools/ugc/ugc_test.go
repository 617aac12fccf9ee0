package ugc

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/langs/langtest"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// gcs opens ugc on p, says cmd and returns the events that come within 2 s
// of the answer (they are in the ring by then: the probes fired before
// the program answered).
func gcs(t *testing.T, lang langs.Lang, p *langtest.Program, cmd, want string) []Event {
	t.Helper()
	cfg, err := Resolve(lang, p.PID())
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
	if ans := p.Say(t, cmd); ans != want {
		t.Fatalf("%q: %q", cmd, ans)
	}
	var out []Event
	for timeout := time.After(2 * time.Second); ; {
		select {
		case e := <-ch:
			out = append(out, e)
		case <-timeout:
			return out
		}
	}
}

// TestJavaGC: one System.gc() is one full collection; then, on the same
// JVM (its start is slow), Debian's libbpf-tools javagc and ugc count the
// same collections of five more.
func TestJavaGC(t *testing.T) {
	e2e.Require(t)
	p := langtest.Java(t)
	defer t.Run("javagc", func(t *testing.T) { sideBySide(t, p) })
	var full int
	for _, e := range gcs(t, langs.Java, p, "gc", "gc done") {
		if e.PID != uint32(p.PID()) || e.TID == 0 || time.Since(e.Time.Time).Abs() > time.Minute {
			t.Errorf("task %+v: want pid %d, a tid, now", e.Task, p.PID())
		}
		if e.Description == "" || e.ElapsedNs == 0 {
			t.Errorf("event %+v: want a description and a duration", e)
		}
		if e.Kind == "gc" && e.Description == "full collection" {
			full++
		}
	}
	if full != 1 {
		t.Errorf("%d full collections after System.gc(), want 1", full)
	}
}

// sideBySide runs javagc -p PID -t 0 (every collection, however short)
// next to ugc while the program collects n times: javagc prints one line
// per gc__end after a gc__begin, ugc one "gc" event.
func sideBySide(t *testing.T, p *langtest.Program) {
	const n = 5
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
	peer := e2e.StartTracer(t, "/usr/sbin/javagc", "-p", strconv.Itoa(p.PID()), "-t", "0")
	// javagc prints its header once its probes are attached.
	peer.WaitLine(t, "Tracing javagc")
	for i := 0; i < n; i++ {
		if ans := p.Say(t, "gc"); ans != "gc done" {
			t.Fatalf("gc: %q", ans)
		}
	}
	// A data line: TIME CPU PID GC-TIME(us), the pid being the JVM's.
	pid := strconv.Itoa(p.PID())
	isGC := func(l string) bool {
		f := strings.Fields(l)
		return len(f) == 4 && f[2] == pid
	}
	peer.WaitLines(isGC, n, 30*time.Second)
	lines := peer.Stop(t)
	var theirs int
	for _, l := range lines {
		if isGC(l) {
			theirs++
		}
	}
	var ours int
	for timeout := time.After(2 * time.Second); ; {
		select {
		case e := <-ch:
			if e.Kind == "gc" {
				ours++
			}
			continue
		case <-timeout:
		}
		break
	}
	if ours != n || theirs != n {
		t.Errorf("%d collections: ugc saw %d, javagc %d:\n%s", n, ours, theirs, strings.Join(lines, "\n"))
	}
}

func TestPythonGC(t *testing.T) {
	e2e.Require(t)
	py := e2e.Need(t, "/usr/bin/python3.11")
	p := langtest.Start(t, nil, py, filepath.Join(langtest.Testdata(), "work.py"))
	var gen2 int
	for _, e := range gcs(t, langs.Python, p, "gc", "gc done") {
		if strings.HasPrefix(string(e.Description), "gen 2 GC collected ") {
			gen2++
		}
	}
	if gen2 != 1 {
		t.Errorf("%d generation-2 collections after gc.collect(), want 1", gen2)
	}
}
