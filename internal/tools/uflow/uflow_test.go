package uflow

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/langs/langtest"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// TestJavaNesting: Work.step calls Work.inner: each step prints entry,
// inner's entry one level deeper, inner's return, step's return, the
// returns timed, inner's time within step's.
func TestJavaNesting(t *testing.T) {
	e2e.Require(t)
	p := langtest.Java(t, "-XX:+ExtendedDTraceProbes")
	// On the same JVM (its start is slow), once this test is done.
	defer t.Run("method-prefix", func(t *testing.T) { methodPrefix(t, p) })
	cfg, err := Resolve(langs.Java, p.PID())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClassPrefix = "Work"
	opts := e2e.Options()
	opts.Task.PID = p.PID()
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ch := e2e.Collect(t, src)
	if ans := p.Say(t, "calls 3"); ans != "called 3" {
		t.Fatalf("program said %q", ans)
	}
	var got []Event
	for timeout := time.After(10 * time.Second); len(got) < 12; {
		select {
		case e := <-ch:
			got = append(got, e)
		case <-timeout:
			t.Fatalf("%d events, want 12: %+v", len(got), got)
		}
	}
	for i := 0; i < 3; i++ {
		s := got[4*i : 4*i+4]
		d := s[0].Depth
		ok := s[0].Method == "step" && !s[0].Return &&
			s[1].Method == "inner" && !s[1].Return && s[1].Depth == d+1 &&
			s[2].Method == "inner" && s[2].Return && s[2].Depth == d+1 && !s[2].Unpaired &&
			s[3].Method == "step" && s[3].Return && s[3].Depth == d && !s[3].Unpaired &&
			s[2].ElapsedNs > 0 && s[2].ElapsedNs <= s[3].ElapsedNs
		if !ok {
			t.Errorf("call %d: %+v, want step > inner nesting, timed", i, s)
		}
	}
}

// methodPrefix: -C Wo -M inn keep Work.inner's entries and returns, and
// nothing else reaches the ring (the kernel filters: Decoder does not).
func methodPrefix(t *testing.T, p *langtest.Program) {
	cfg, err := Resolve(langs.Java, p.PID())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClassPrefix, cfg.MethodPrefix = "Wo", "inn"
	opts := e2e.Options()
	opts.Task.PID = p.PID()
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ch := e2e.Collect(t, src)
	if ans := p.Say(t, "calls 4"); ans != "called 4" {
		t.Fatalf("program said %q", ans)
	}
	var got []Event
	for timeout := time.After(2 * time.Second); ; {
		select {
		case e := <-ch:
			got = append(got, e)
			continue
		case <-timeout:
		}
		break
	}
	var inner int
	for _, e := range got {
		if e.Class != "Work" || e.Method != "inner" {
			t.Errorf("-C Wo -M inn let %s.%s through", e.Class, e.Method)
			continue
		}
		inner++
	}
	if inner != 8 {
		t.Errorf("%d events of Work.inner, want 4 entries and 4 returns", inner)
	}
	cfg.MethodPrefix = strings.Repeat("x", MaxPrefix+1)
	if _, err := Open(cfg, opts); !errors.Is(err, ErrPrefix) {
		t.Errorf("a %d-byte prefix: %v, want ErrPrefix", MaxPrefix+1, err)
	}
}
