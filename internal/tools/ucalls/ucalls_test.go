package ucalls

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/langs/langtest"
	"github.com/owlbpf/owl/internal/probe"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// count opens ucalls on p, runs say, and returns the counts by method.
func count(t *testing.T, lang langs.Lang, p *langtest.Program, latency bool, say string, want string) map[string]Count {
	t.Helper()
	return countEach(t, lang, p, latency, false, say, want)
}

// countEach is count, with each: one uprobe per probe location even where
// the kernel has uprobe-multi links.
func countEach(t *testing.T, lang langs.Lang, p *langtest.Program, latency, each bool, say string, want string) map[string]Count {
	t.Helper()
	cfg, err := Resolve(lang, p.PID(), latency)
	if err != nil {
		t.Fatal(err)
	}
	cfg.each = each
	opts := e2e.Options()
	opts.Task.PID = p.PID()
	before := bpfLinks(t)
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// Every location in one file (libjvm, python3.11, libruby): one
	// uprobe-multi link, or with each one link per location.
	links := 1
	if each || !probe.HaveUprobeMulti() {
		links = len(cfg.Probes)
	}
	if got := bpfLinks(t) - before; got != links {
		t.Errorf("each=%v: %d BPF links for %d probe locations, want %d", each, got, len(cfg.Probes), links)
	}
	if ans := p.Say(t, say); ans != want {
		t.Fatalf("%q: %q, want %q", say, ans, want)
	}
	counts, err := src.Counts(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, err := src.Stats()
	if err != nil || st.Lost() != 0 {
		t.Errorf("lost: %+v (%v)", st, err)
	}
	m := map[string]Count{}
	for _, c := range counts {
		m[string(c.Method)] = c
	}
	return m
}

// TestJava: Work.step() called exactly 500 times is counted 500 times,
// timed with -L, through uprobe-multi links and through one uprobe per
// location (each), on one JVM (its start is slow); a process whose last
// -XX setting turns the flag off is refused with ErrJavaFlag.
func TestJava(t *testing.T) {
	e2e.Require(t)
	p := langtest.Java(t, "-XX:+ExtendedDTraceProbes")
	for _, each := range []bool{false, true} {
		m := countEach(t, langs.Java, p, true, each, "calls 500", "called 500")
		for _, name := range []string{"Work.step", "Work.inner"} {
			c := m[name]
			if c.Calls != 500 || c.Timed != 500 || c.TotalNs == 0 {
				t.Errorf("each=%v: %s: %+v, want 500 calls, all timed", each, name, c)
			}
		}
		if m["Work.step"].TotalNs < m["Work.inner"].TotalNs {
			t.Errorf("each=%v: step (which calls inner) took %d ns, inner %d", each, m["Work.step"].TotalNs, m["Work.inner"].TotalNs)
		}
	}

	// The flag is read from the command line (and the environment and
	// hsperfdata): a stand-in whose arguments turn it on then off needs no
	// second JVM.
	off := exec.Command("sh", "-c", "read x", "-XX:+ExtendedDTraceProbes", "-XX:-ExtendedDTraceProbes")
	stdin, err := off.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := off.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); off.Wait() }()
	if _, err := Resolve(langs.Java, off.Process.Pid, false); !errors.Is(err, langs.ErrJavaFlag) {
		t.Errorf("-XX:+ExtendedDTraceProbes -XX:-ExtendedDTraceProbes: %v, want ErrJavaFlag", err)
	}
}

// TestPython: Debian's python3.11 fires function__return for every call
// (its function__entry only for generators): 400 calls counted 400.
func TestPython(t *testing.T) {
	e2e.Require(t)
	py := e2e.Need(t, "/usr/bin/python3.11")
	p := langtest.Start(t, nil, py, filepath.Join(langtest.Testdata(), "work.py"))
	m := count(t, langs.Python, p, false, "calls 400", "called 400")
	key := filepath.Join(langtest.Testdata(), "work.py") + ".work"
	if c := m[key]; c.Calls != 400 {
		t.Errorf("%s: %+v, want 400 calls (all: %v)", key, c, m)
	}
	// With a profile hook entries fire too: -L times every call.
	p2 := langtest.Start(t, []string{"PROFILE=1"}, py, filepath.Join(langtest.Testdata(), "work.py"))
	m = count(t, langs.Python, p2, true, "calls 400", "called 400")
	if c := m[key]; c.Calls != 400 || c.Timed != 400 {
		t.Errorf("with sys.setprofile, -L: %+v, want 400 calls, all timed", c)
	}
}

// TestRuby: Integer#pow (a C method) always counts; Work#step (defined
// in Ruby) counts while the program has a TracePoint enabled, started
// as ucalls --help shows.
func TestRuby(t *testing.T) {
	e2e.Require(t)
	ruby := e2e.Need(t, "ruby")
	script := filepath.Join(langtest.Testdata(), "work.rb")
	p := langtest.Start(t, nil, ruby, script)
	m := count(t, langs.Ruby, p, false, "calls 300", "called 300")
	if c := m["Integer.pow"]; c.Calls != 300 || !c.C {
		t.Errorf("Integer.pow: %+v, want 300 C-method calls", c)
	}
	if c, ok := m["Work.step"]; ok {
		t.Errorf("Work.step counted without a TracePoint: %+v (ruby changed: update the docs)", c)
	}
	if n := notes(langs.Ruby, false, values(m)); len(n) != 1 {
		t.Errorf("notes: %q, want the TracePoint note", n)
	}
	// As --help says to start it: a TracePoint enabled before the program
	// is loaded, which stays on through a GC.
	dir := t.TempDir()
	src, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "app.rb"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	p2 := langtest.StartIn(t, dir, nil, ruby, "-e", "TracePoint.new(:call, :return) {}.enable", "-e", `load "./app.rb"`)
	if ans := p2.Say(t, "gc"); ans != "gc done" {
		t.Fatalf("gc: %q", ans)
	}
	m = count(t, langs.Ruby, p2, true, "calls 300", "called 300")
	for _, name := range []string{"Work.step", "Integer.pow"} {
		if c := m[name]; c.Calls != 300 || c.Timed != 300 {
			t.Errorf("%s with a TracePoint, -L: %+v, want 300 calls, all timed", name, c)
		}
	}
}

// bpfLinks counts this process's BPF link file descriptors.
func bpfLinks(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == "anon_inode:bpf_link" {
			n++
		}
	}
	return n
}

func values(m map[string]Count) []Count {
	var out []Count
	for _, c := range m {
		out = append(out, c)
	}
	return out
}

func TestReport(t *testing.T) {
	rows := []Count{{Method: "a.b", Calls: 3, Timed: 2, TotalNs: 5000, AvgNs: 2500}, {Method: "c.d", Calls: 1}}
	got := string(appendReport(nil, rows, true, false))
	want := fmt.Sprintf("\n%-50s %8s %12s %12s\n%-50s %8d %12.2f %12.2f\n%-50s %8d %12s %12s\n",
		"METHOD", "# CALLS", "TIME (us)", "AVG (us)", "a.b", 3, 5.0, 2.5, "c.d", 1, "-", "-")
	if got != want {
		t.Errorf("report:\n%s\nwant:\n%s", got, want)
	}
}
