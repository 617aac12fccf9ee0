package profile

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/flame"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
)

func testStack() Stack {
	var comm event.Comm
	copy(comm[:], "app\n")
	return Stack{
		Count: 42,
		PID:   181,
		Comm:  comm,
		KStack: []syms.Frame{
			{Addr: 0xffffffff81000010, Symbol: "asm_sysvec_apic_timer_interrupt", Offset: 0x10},
			{Addr: 0xffffffff81000abc, Symbol: "do_syscall_64", Offset: 0x3c},
		},
		UStack: []syms.Frame{
			{Addr: 0x401000, Symbol: "hot"},
			{Addr: 0x401080, Symbol: "main", Offset: 0x26},
			{Addr: 0x7f0000001234, Symbol: syms.Unknown, Module: "libc.so.6"},
		},
	}
}

// Text is BCC's profile's: kernel frames, "--" with -d, user frames,
// "-  comm (pid)", the count, a blank line; -a marks kernel frames.
func TestTextReport(t *testing.T) {
	p := printer{delimiter: true, annotations: true}
	got := string(p.appendReport(nil, []Stack{testStack()}))
	want := "\n" +
		"    asm_sysvec_apic_timer_interrupt_[k]\n" +
		"    do_syscall_64_[k]\n" +
		"    --\n" +
		"    hot\n" +
		"    main\n" +
		"    [unknown] (libc.so.6)\n" +
		`    -                app\x0a (181)` + "\n" +
		"        42\n\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	// Missed stacks as BCC prints them, no "--" unless both stacks are
	// there.
	st := Stack{Count: 3, PID: 7, KStackMissed: true, UStackMissed: true}
	copy(st.Comm[:], "x")
	got = string(p.appendReport(nil, []Stack{st}))
	want = "\n    [Missed Kernel Stack]\n    [Missed User Stack]\n    -                x (7)\n        3\n\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	st = testStack()
	st.KStack = nil
	if got := string(p.appendReport(nil, []Stack{st})); strings.Contains(got, "--") {
		t.Errorf("-- without a kernel stack:\n%s", got)
	}
}

// Folded lines: comm, user frames outermost first, "-" with -d, kernel
// frames, the count.
func TestFoldedReport(t *testing.T) {
	p := printer{folded: true, delimiter: true}
	got := string(p.appendReport(nil, []Stack{testStack()}))
	want := `app\x0a;[unknown] (libc.so.6);main;hot;-;do_syscall_64;asm_sysvec_apic_timer_interrupt 42` + "\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	st := testStack()
	st.KStack = nil
	p = printer{folded: true, delimiter: true}
	if got, want := string(p.appendReport(nil, []Stack{st})), `app\x0a;[unknown] (libc.so.6);main;hot 42`+"\n"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// The flame profile: process at the root, user frames, then kernel
// frames; the period from -F or -c.
func TestFlame(t *testing.T) {
	p := Flame([]Stack{testStack()}, Config{Freq: 99}, time.Time{}, time.Second)
	if p.Period != time.Second/99 {
		t.Errorf("period %v", p.Period)
	}
	var names []string
	for _, f := range p.Stacks[0].Frames {
		names = append(names, f.Name)
	}
	if got := strings.Join(names, ";"); got != `app\x0a;[unknown] (libc.so.6);main;hot;do_syscall_64;asm_sysvec_apic_timer_interrupt` {
		t.Errorf("frames %s", got)
	}
	if fs := p.Stacks[0].Frames; fs[0].Kind != flame.Process || fs[3].Kind != flame.Native || fs[4].Kind != flame.Kernel {
		t.Errorf("kinds %+v", fs)
	}
	if p := Flame(nil, Config{Period: time.Millisecond}, time.Time{}, 0); p.Period != time.Millisecond {
		t.Errorf("-c period %v", p.Period)
	}
	if f := userFrame(syms.Frame{Symbol: "LazyCompile:foo", Module: "perf-181.map"}); f.Kind != flame.JIT {
		t.Errorf("perf map frame %+v", f)
	}
}

// JSON: one object per stack, frames as stackcount's.
func TestJSON(t *testing.T) {
	b, err := json.Marshal(testStack())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"count":42`, `"pid":181`, `"comm":"app\\x0a"`, `"symbol":"hot"`, `"module":"libc.so.6"`, `"kstack_missed":false`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	want := []string{"time", "count", "pid", "comm", "kstack", "ustack", "kstack_missed", "ustack_missed"}
	if got := tool.JSONFields(reflect.TypeOf(Stack{})); !reflect.DeepEqual(got, want) {
		t.Errorf("fields %q, want %q", got, want)
	}
}

// Rows merge when they print the same (two offsets in one function) and
// go smallest count first.
func TestIdentityAndOrder(t *testing.T) {
	a, b := testStack(), testStack()
	b.UStack[0].Offset, b.UStack[0].Addr = 0x20, 0x401020
	if string(a.appendIdentity(nil)) != string(b.appendIdentity(nil)) {
		t.Errorf("two offsets of hot are two rows")
	}
	b.PID = 182
	if string(a.appendIdentity(nil)) == string(b.appendIdentity(nil)) {
		t.Errorf("two processes are one row")
	}
	st := []Stack{{Count: 9, PID: 2}, {Count: 1, PID: 3}, {Count: 9, PID: 1}}
	sortStacks(st)
	if st[0].PID != 3 || st[1].PID != 1 || st[2].PID != 2 {
		t.Errorf("order %+v", st)
	}
}

func isUsage(err error) bool {
	var u *cli.UsageError
	return errors.As(err, &u)
}

func TestParseCPUs(t *testing.T) {
	for in, want := range map[string][]int{"0": {0}, "0-3": {0, 1, 2, 3}, "0-1,4,6-7": {0, 1, 4, 6, 7}} {
		if got, err := ParseCPUs(in); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseCPUs(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "a", "3-1", "-1", "0-"} {
		if got, err := ParseCPUs(in); err == nil {
			t.Errorf("ParseCPUs(%q) = %v, want an error", in, got)
		}
	}
}

// -d is BCC's delimiter and -D the duration (owl's common -d elsewhere);
// DURATION, BCC's argument, sets it too; bad input is a usage error.
func TestFlags(t *testing.T) {
	cmd := command()
	if err := cmd.ParseFlags([]string{"-D", "5", "-d", "-a", "-U", "-F", "99"}); err != nil {
		t.Fatal(err)
	}
	fl := cmd.Flags()
	if d := fl.Lookup("duration"); d.Shorthand != "D" || d.Value.String() != "5" {
		t.Errorf("duration: %+v", d)
	}
	for _, name := range []string{"delimited", "annotations", "user-stacks-only"} {
		if v := fl.Lookup(name).Value.String(); v != "true" {
			t.Errorf("--%s = %s", name, v)
		}
	}
	for _, name := range []string{"pid", "uid", "output", "frequency", "count", "cpu", "include-idle", "folded",
		"stack-storage-size", "hash-storage-size", "pprof", "svg", "kernel-stacks-only"} {
		if fl.Lookup(name) == nil {
			t.Errorf("no --%s", name)
		}
	}
	if err := cmd.Args(cmd, []string{"3"}); err == nil {
		t.Errorf("-D 5 and DURATION 3 both taken")
	}

	for _, args := range [][]string{
		{"-U", "-K"}, {"-F", "0"}, {"-F", "99", "-c", "1000"}, {"-c", "0"},
		{"--stack-storage-size", "0"}, {"--hash-storage-size", "0"}, {"-C", "-2"}, {"-C", "100000"},
	} {
		cmd, f := newCommand()
		if err := cmd.ParseFlags(args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if _, err := f.config(cmd); !isUsage(err) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	for _, args := range [][]string{{"x"}, {"0"}, {"1", "2"}} {
		cmd := command()
		if err := cmd.Args(cmd, args); !isUsage(err) {
			t.Errorf("DURATION %v: %v, want a usage error", args, err)
		}
	}
}

// pyStack is a sample of a Python program: hot (line 11) ← spin ←
// <module>, above the interpreter's native frames.
func pyStack() Stack {
	st := testStack()
	st.KStack = nil
	st.UStack = []syms.Frame{
		{Addr: 0x7f10, Symbol: "hot", Lang: "python", File: "/srv/hot.py", Line: 11},
		{Addr: 0x7f20, Symbol: "spin", Lang: "python", File: "/srv/hot.py", Line: 23},
		{Addr: 0x7f30, Symbol: "<module>", Lang: "python", File: "/srv/hot.py", Line: 29},
		{Addr: 0x401080, Symbol: "main", Module: "python3.11"},
	}
	return st
}

// Python frames print as stackcount's, "func (file:line)", in text and
// folded reports; a flame graph has one box per function (interpreted),
// the line kept for pprof; rows differ by line.
func TestPythonFrameOutputs(t *testing.T) {
	p := printer{folded: true}
	got := string(p.appendReport(nil, []Stack{pyStack()}))
	want := `app\x0a;main;<module> (/srv/hot.py:29);spin (/srv/hot.py:23);hot (/srv/hot.py:11) 42` + "\n"
	if got != want {
		t.Errorf("folded:\ngot  %q\nwant %q", got, want)
	}
	p = printer{}
	if got := string(p.appendReport(nil, []Stack{pyStack()})); !strings.HasPrefix(got, "\n    hot (/srv/hot.py:11)\n    spin (/srv/hot.py:23)\n") {
		t.Errorf("text:\n%s", got)
	}
	fs := Flame([]Stack{pyStack()}, Config{Freq: 99}, time.Time{}, time.Second).Stacks[0].Frames
	if hot := fs[len(fs)-1]; hot != (flame.Frame{Name: "hot", File: "/srv/hot.py", Line: 11, Kind: flame.Interpreted}) {
		t.Errorf("flame frame of hot %+v", hot)
	}
	if f := userFrame(syms.Frame{Symbol: syms.Unknown, Lang: "python"}); f.Name != "[unknown] (python)" || f.Kind != flame.Interpreted {
		t.Errorf("unnamed Python frame %+v", f)
	}
	a, b := pyStack(), pyStack()
	b.UStack[0].Line = 12
	if string(a.appendIdentity(nil)) == string(b.appendIdentity(nil)) {
		t.Errorf("two lines of hot are one row")
	}
	js, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"symbol":"hot","offset":0,"module":"","lang":"python","file":"/srv/hot.py","line":11`) {
		t.Errorf("JSON %s", js)
	}
}
