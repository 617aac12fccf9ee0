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
	for timeout := time.After(2 * time.Second); len(types) < 2; {
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
