package stackcount

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
)

func testStack() Stack {
	pid := uint32(181)
	var comm event.Comm
	copy(comm[:], "app\n")
	return Stack{
		Count: 42,
		PID:   &pid,
		Comm:  &comm,
		KStack: []syms.Frame{
			{Addr: 0xffffffff81000010, Symbol: "perf_syscall_enter", Offset: 0x10},
			{Addr: 0xffffffff81000abc, Symbol: "do_syscall_64", Offset: 0x3c},
		},
		UStack: []syms.Frame{
			{Addr: 0x401000, Symbol: "work", Offset: 0},
			{Addr: 0x401080, Symbol: "loop", Offset: 0x26},
			{Addr: 0x7f0000001234, Symbol: syms.Unknown, Module: "libc.so.6"},
		},
	}
}

// Text is BCC's: kernel frames innermost first, "--" with -d, user frames,
// "comm [pid]" with -P, the count, a blank line; a report starts with a
// blank line and, with -T, the time.
func TestTextReport(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	st := testStack()
	p := printer{timestamp: true, comm: true, delimiter: true}
	got := string(p.appendReport(nil, []Stack{st}, at))
	want := "\n03:04:05\n" +
		"  perf_syscall_enter\n" +
		"  do_syscall_64\n" +
		"    --\n" +
		"  work\n" +
		"  loop\n" +
		"  [unknown] (libc.so.6)\n" +
		`    app\x0a [181]` + "\n" +
		"    42\n\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}

	// -s and -v; without -P no comm line, without -d no "--".
	p = printer{offset: true, verbose: true}
	st.KStack = st.KStack[:1]
	got = string(p.appendReport(nil, []Stack{st}, at))
	want = "\n" +
		"  ffffffff81000010 perf_syscall_enter+0x10\n" +
		"  401000           work+0x0\n" +
		"  401080           loop+0x26\n" +
		"  7f0000001234     [unknown] (libc.so.6)\n" +
		"    42\n\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// Folded lines go outermost first: comm (with -P), user frames, "-" with
// -d, kernel frames, then the count; no blank line; -T still stamps.
func TestFoldedReport(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	st := testStack()
	p := printer{folded: true, delimiter: true}
	got := string(p.appendReport(nil, []Stack{st}, at))
	want := `app\x0a;[unknown] (libc.so.6);loop;work;-;do_syscall_64;perf_syscall_enter 42` + "\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	st.PID, st.Comm = nil, nil
	st.KStack = nil
	p = printer{folded: true, timestamp: true}
	if got, want := string(p.appendReport(nil, []Stack{st, st}, at)), "03:04:05\n[unknown] (libc.so.6);loop;work 42\n[unknown] (libc.so.6);loop;work 42\n"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// A stack that could not be kept prints as BCC's profile does.
func TestMissedStacks(t *testing.T) {
	st := Stack{Count: 3, KStackMissed: true, UStackMissed: true}
	p := printer{}
	if got, want := string(p.appendReport(nil, []Stack{st}, time.Time{})), "\n  [Missed Kernel Stack]\n  [Missed User Stack]\n    3\n\n"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	p = printer{folded: true, delimiter: true}
	if got, want := string(p.appendReport(nil, []Stack{st}, time.Time{})), "[Missed User Stack];-;[Missed Kernel Stack] 3\n"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	for _, c := range []struct {
		id     int32
		frames int
		missed bool
	}{{noStack, 0, false}, {noSuchOne, 0, false}, {-17, 0, true}, {5, 0, true}, {5, 3, false}} {
		if got := missed(c.id, c.frames); got != c.missed {
			t.Errorf("missed(%d, %d) = %v", c.id, c.frames, got)
		}
	}
}

// JSON: one object per stack, pid and comm only with -P, frames as
// capable's (hex addresses).
func TestJSON(t *testing.T) {
	st := testStack()
	st.Time = event.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, err := json.Marshal(&st)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"count":42`, `"pid":181`, `"comm":"app\\x0a"`, `"addr":"0xffffffff81000010"`, `"symbol":"work"`, `"module":"libc.so.6"`, `"ustack_missed":false`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	st.PID, st.Comm = nil, nil
	b, _ = json.Marshal(&st)
	if strings.Contains(string(b), `"pid"`) || strings.Contains(string(b), `"comm"`) {
		t.Errorf("without -P: %s", b)
	}
	want := []string{"time", "count", "pid", "comm", "kstack", "ustack", "kstack_missed", "ustack_missed"}
	if got := tool.JSONFields(reflect.TypeOf(Stack{})); !reflect.DeepEqual(got, want) {
		t.Errorf("fields %q, want %q", got, want)
	}
}

// Rows go smallest count first, then in a stable order.
func TestSortStacks(t *testing.T) {
	f := func(name string) []syms.Frame { return []syms.Frame{{Symbol: name}} }
	st := []Stack{{Count: 9, UStack: f("b")}, {Count: 1, UStack: f("z")}, {Count: 9, UStack: f("a")}}
	sortStacks(st)
	var got []string
	for _, s := range st {
		got = append(got, s.UStack[0].Symbol)
	}
	if strings.Join(got, ",") != "z,a,b" {
		t.Errorf("order %v", got)
	}
}

// -d is BCC's delimiter and -D the duration (owl's common -d elsewhere).
func TestDurationIsD(t *testing.T) {
	cmd := command()
	if err := cmd.ParseFlags([]string{"-D", "5", "-d", "-P", "-K"}); err != nil {
		t.Fatal(err)
	}
	fl := cmd.Flags()
	if d := fl.Lookup("duration"); d.Shorthand != "D" || d.Value.String() != "5" || !fl.Changed("duration") {
		t.Errorf("duration: %+v", d)
	}
	for _, name := range []string{"delimited", "perpid", "kernel-stacks-only"} {
		if v := fl.Lookup(name).Value.String(); v != "true" {
			t.Errorf("--%s = %s", name, v)
		}
	}
	for _, name := range []string{"pid", "uid", "output", "hook", "interval", "folded", "stacks"} {
		if fl.Lookup(name) == nil {
			t.Errorf("no --%s", name)
		}
	}
}
