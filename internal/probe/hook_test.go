package probe

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
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

// LazyAt resolves nothing until attach, once per attach, and refuses what
// it cannot attach; a real tracepoint attaches through it (as root).
func TestLazyAt(t *testing.T) {
	calls := 0
	gone := errors.New("no such file")
	var resolved Attachment
	resolve := func() (Attachment, error) {
		calls++
		if resolved.Program == "" {
			return Attachment{}, gone
		}
		return resolved, nil
	}
	a := LazyAt("p", "uprobe x:f", resolve)
	h := Hook{Kind: Uprobe, Name: "uprobe x:f", Attachments: []Attachment{a}}
	if got := h.Programs(); len(got) != 1 || got[0] != "p" || a.Target != "uprobe x:f" || calls != 0 {
		t.Fatalf("programs %v, target %q, %d resolves: want [p], uprobe x:f, none before attach", got, a.Target, calls)
	}
	if _, err := a.attach(nil); !errors.Is(err, gone) || calls != 1 {
		t.Errorf("attach: %v after %d resolves, want the resolve error after 1", err, calls)
	}
	for _, r := range []Attachment{TracepointAt("q", "syscalls", "sys_enter_getpid"), TracingEachAt("p", []string{"f"}, nil)} {
		resolved = r
		if _, err := a.attach(nil); err == nil || !strings.Contains(err.Error(), "resolved to") {
			t.Errorf("resolved to %s %s: %v, want refused", r.Program, r.Target, err)
		}
	}

	if os.Geteuid() != 0 {
		t.Skip("attaching needs root")
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.TracePoint, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer prog.Close()
	resolved = TracepointAt("p", "syscalls", "sys_enter_getpid")
	l, err := a.attach(prog)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	defer l.Close()
	if info, err := l.Info(); err != nil || info.Type != link.PerfEventType {
		t.Errorf("link %+v %v, want a perf event (tracepoint) link", info, err)
	}
	resolved = TracepointAt("p", "syscalls", "no_such_tracepoint")
	if _, err := a.attach(prog); err == nil || !strings.Contains(err.Error(), "syscalls:no_such_tracepoint: ") {
		t.Errorf("attach to a missing tracepoint: %v, want an error naming it", err)
	}
}
