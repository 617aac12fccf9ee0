package ugc

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/langs/langtest"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// gcs opens ugc on p, says cmd and returns the events that come within 2 s.
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

func TestJavaGC(t *testing.T) {
	e2e.Require(t)
	p := langtest.Java(t)
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

func TestPythonGC(t *testing.T) {
	e2e.Require(t)
	py := langtest.Need(t, "/usr/bin/python3.11")
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
