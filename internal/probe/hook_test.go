package probe

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var chain = []Hook{
	{Kind: Tracepoint, Name: "tracepoint a:b"},
	{Kind: Fentry, Name: "fentry f"},
	{Kind: Kprobe, Name: "kprobe f"},
}

func TestSelect(t *testing.T) {
	got, err := Select(chain, "")
	if err != nil || len(got) != 3 {
		t.Fatalf("no filter: %v %v", got, err)
	}
	got, err = Select(chain, "kprobe, fentry")
	if err != nil || len(got) != 2 || got[0].Kind != Fentry || got[1].Kind != Kprobe {
		t.Fatalf("kprobe,fentry: got %v %v, want both in the chain's order", got, err)
	}
	if _, err := Select(chain, "uprobe"); !errors.Is(err, ErrKind) || !strings.Contains(err.Error(), "tracepoint, fentry, kprobe") {
		t.Fatalf("uprobe: got %v, want an error naming the kinds there are", err)
	}
}

func TestNoHookError(t *testing.T) {
	err := error(&NoHookError{Tool: "x", Tried: []Failure{{"tracepoint a:b", errors.New("gone")}, {"kprobe f", errors.New("no kprobes")}}})
	if !errors.Is(err, ErrNoHook) {
		t.Error("does not match ErrNoHook")
	}
	want := "x: no usable hook on this kernel: tracepoint a:b: gone; kprobe f: no kprobes"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func TestView(t *testing.T) {
	type ev struct {
		A uint32
		B uint16
	}
	raw := make([]byte, 8)
	raw[0], raw[4] = 7, 9
	e, ok := View[ev](raw)
	if !ok || e.A != 7 || e.B != 9 {
		t.Errorf("got %+v %v", e, ok)
	}
	if _, ok := View[ev](raw[:3]); ok {
		t.Error("short record accepted")
	}
}

// Event times follow the wall clock on long runs: an offset taken long ago
// (the wall clock stepped since) is taken again.
func TestTimeResyncs(t *testing.T) {
	var mono unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		t.Fatal(err)
	}
	s := &Session{clock: -int64(time.Hour), clockAt: mono.Nano() - 2*resync} // an hour off, and stale
	if got := s.Time(uint64(mono.Nano())); time.Since(got).Abs() > time.Minute {
		t.Errorf("time %v, want now: the stale offset was kept", got)
	}
	s = &Session{clock: -int64(time.Hour), clockAt: mono.Nano()} // fresh: kept
	if got := s.Time(uint64(mono.Nano())); time.Since(got) < 59*time.Minute {
		t.Errorf("time %v, want the fresh offset used", got)
	}
}
