package setuids

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/sysnames"
)

// A step is one raw syscall of a child and the row it must give.
type step struct {
	nr   uintptr
	args [3]uint32
	ia32 bool   // made with int $0x80 (amd64 only), numbered from the i386 table
	want string // SYSCALL and ARGS (RET) columns
	uid  uint32 // UID column: the caller's uid before the call
}

// unchanged is (uid_t)-1, the one id that means "leave it".
const unchanged = ^uint32(0)

// scripts are the children's calls, in order, on one locked thread: Go's
// syscall.Setresuid would repeat a call on every thread. Each starts as root.
var scripts = map[string][]step{
	"basic": {
		{unix.SYS_SETRESUID, [3]uint32{unchanged, 0, unchanged}, false, "setresuid ruid=-1 euid=0 suid=-1 (0)", 0},
		{unix.SYS_SETFSUID, [3]uint32{0}, false, "setfsuid uid=0 (prevuid=0)", 0},
		{unix.SYS_SETGID, [3]uint32{0}, false, "setgid gid=0 (0)", 0},
		{unix.SYS_SETREGID, [3]uint32{unchanged, 0}, false, "setregid rgid=-1 egid=0 (0)", 0},
		{unix.SYS_SETFSGID, [3]uint32{65534}, false, "setfsgid gid=65534 (prevgid=0)", 0},
		{unix.SYS_SETRESUID, [3]uint32{65534, 65534, 65534}, false, "setresuid ruid=65534 euid=65534 suid=65534 (0)", 0},
		{unix.SYS_SETUID, [3]uint32{0}, false, "setuid uid=0 (-EPERM)", 65534},
	},
	// Ids of 2^31 and more are ids like any other: only 0xffffffff means
	// "unchanged". Root may take any euid and come back (its ruid is 0).
	"bigids": {
		{unix.SYS_SETRESUID, [3]uint32{unchanged, 3000000000, unchanged}, false, "setresuid ruid=-1 euid=3000000000 suid=-1 (0)", 0},
		{unix.SYS_SETRESUID, [3]uint32{unchanged, 0, unchanged}, false, "setresuid ruid=-1 euid=0 suid=-1 (0)", 0},
		{unix.SYS_SETRESUID, [3]uint32{unchanged, 4294967294, unchanged}, false, "setresuid ruid=-1 euid=4294967294 suid=-1 (0)", 0},
		{unix.SYS_SETRESUID, [3]uint32{unchanged, 0, unchanged}, false, "setresuid ruid=-1 euid=0 suid=-1 (0)", 0},
		{unix.SYS_SETFSUID, [3]uint32{3000000000}, false, "setfsuid uid=3000000000 (prevuid=0)", 0},
		{unix.SYS_SETFSUID, [3]uint32{0}, false, "setfsuid uid=0 (prevuid=3000000000)", 0},
		{unix.SYS_SETREGID, [3]uint32{unchanged, 2147483648}, false, "setregid rgid=-1 egid=2147483648 (0)", 0},
		{unix.SYS_SETREGID, [3]uint32{unchanged, 0}, false, "setregid rgid=-1 egid=0 (0)", 0},
	},
}

// actions are the children the tests start (e2e.Child); amd64 adds its own.
var actions = map[string]func([]string) error{
	// script NAME: print the thread id, wait for a line on stdin, then make
	// the calls of scripts[NAME] on this thread.
	"script": func(args []string) error {
		steps, ok := scripts[args[0]]
		if !ok {
			return fmt.Errorf("no script %q", args[0])
		}
		runtime.LockOSThread()
		fmt.Println(unix.Gettid())
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return err
		}
		for _, s := range steps {
			a := [3]uintptr{uintptr(s.args[0]), uintptr(s.args[1]), uintptr(s.args[2])}
			if s.ia32 {
				e2e.Syscall32(s.nr, a[0], a[1], a[2])
			} else {
				unix.RawSyscall(s.nr, a[0], a[1], a[2])
			}
		}
		return nil
	},
}

func TestMain(m *testing.M) {
	e2e.Main(m, actions)
}

// row is what the text output shows of e: its SYSCALL and ARGS (RET)
// columns.
func row(e *Event) string {
	return string(table[len(table)-2].Append(nil, e)) + " " + string(table[len(table)-1].Append(nil, e))
}

// runScript runs the child script name under setuids and checks each event
// against its step: text columns, uid, pid and tid, and the JSON fields
// syscall and ia32 (the name without "ia32:").
func runScript(t *testing.T, name string) []Event {
	t.Helper()
	child := e2e.Child("script", name)
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var tid uint32
	if _, err := fmt.Fscan(stdout, &tid); err != nil {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("read child's tid: %v", err)
	}
	opts := e2e.Options()
	opts.Task.PID = child.Process.Pid
	tr, err := Open(Config{}, opts)
	if err != nil {
		child.Process.Kill()
		child.Wait()
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr)
	fmt.Fprintln(stdin)
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	var got []Event
	for i, s := range scripts[name] {
		e := e2e.Wait(t, events, 5*time.Second, fmt.Sprintf("call %d: %s", i, s.want), func(Event) bool { return true })
		got = append(got, e)
		if r := row(&e); r != s.want || e.UID != s.uid {
			t.Errorf("call %d: got %q uid %d, want %q uid %d", i, r, e.UID, s.want, s.uid)
		}
		if e.PID != uint32(child.Process.Pid) || e.TID != tid {
			t.Errorf("call %d: pid/tid %d/%d, want %d/%d", i, e.PID, e.TID, child.Process.Pid, tid)
		}
		var j struct {
			Syscall string
			IA32    *bool `json:"ia32"`
		}
		if b, err := json.Marshal(e); err != nil || json.Unmarshal(b, &j) != nil {
			t.Fatalf("call %d: JSON: %v", i, err)
		}
		wantName, _ := strings.CutPrefix(strings.Fields(s.want)[0], "ia32:")
		if j.Syscall != wantName || j.IA32 == nil || *j.IA32 != s.ia32 {
			t.Errorf("call %d: JSON syscall %q ia32 %v, want %q %v", i, j.Syscall, j.IA32, wantName, s.ia32)
		}
	}
	return got
}

func TestScriptedCalls(t *testing.T) {
	e2e.Require(t)
	runScript(t, "basic")
}

// Issue 8 item 6: ids of 2^31 and more were printed as negative numbers
// (euid=-1294967296, 4294967294 as -2), in text and JSON.
func TestLargeIDs(t *testing.T) {
	e2e.Require(t)
	events := runScript(t, "bigids")
	b, err := json.Marshal(events[0].Args)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"ruid":-1,"euid":3000000000,"suid":-1}`; string(b) != want {
		t.Errorf("JSON args %s, want %s", b, want)
	}
}

// su(1) through PAM drops to the target user with setgid and setuid.
func TestSu(t *testing.T) {
	e2e.Require(t)
	if _, err := exec.LookPath("su"); err != nil {
		t.Skip("su is not installed")
	}
	tr, err := Open(Config{}, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr)
	su := exec.Command("su", "-s", "/bin/true", "nobody")
	if out, err := su.CombinedOutput(); err != nil {
		t.Fatalf("su: %v: %s", err, out)
	}
	// util-linux su changes identity in a child it forks, so match the
	// command, not su's pid.
	fromSu := func(name, arg string) func(Event) bool {
		return func(e Event) bool {
			v, _ := e.Args.Get(arg)
			return e.Comm.String() == "su" && e.Syscall == name && v == 65534
		}
	}
	g := e2e.Wait(t, events, 5*time.Second, "su's setgid(65534)", fromSu("setgid", "gid"))
	u := e2e.Wait(t, events, 5*time.Second, "su's setuid(65534)", fromSu("setuid", "uid"))
	if g.Ret != 0 || u.Ret != 0 || g.UID != 0 {
		t.Errorf("su: setgid ret %d uid %d, setuid ret %d; want 0, 0, 0", g.Ret, g.UID, u.Ret)
	}
}

// A call of the test process itself, which changes nothing: the task
// header is the caller's, taken at entry.
func TestOwnCall(t *testing.T) {
	e2e.Require(t)
	tr, err := Open(Config{}, e2e.Own())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := uint32(unix.Gettid())
	// -1 everywhere: nothing changes, on this thread only.
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), ^uintptr(0), ^uintptr(0)); errno != 0 {
		t.Fatalf("setresuid(-1, -1, -1): %v", errno)
	}
	e := e2e.Wait(t, events, 5*time.Second, "setresuid(-1, -1, -1)", func(e Event) bool { return e.Syscall == "setresuid" })
	e2e.CheckTask(t, &e.Task)
	if e.TID != tid {
		t.Errorf("tid %d, want the calling thread %d", e.TID, tid)
	}
	if got := string(table[len(table)-1].Append(nil, &e)); got != "ruid=-1 euid=-1 suid=-1 (0)" {
		t.Errorf("got %q", got)
	}
}

func TestTable(t *testing.T) {
	e := Event{Task: event.Task{Time: event.Time{Time: time.Date(2024, 1, 2, 11, 29, 29, 0, time.Local)}, PID: 4242, UID: 1000},
		Syscall: "setfsuid", Args: Args{call: &calls[6], vals: [3]uint32{0}}, Ret: 1000}
	copy(e.Comm[:], "a-very-long-command-name")
	got := string(table.AppendRow(nil, &e))
	if want := "11:29:29 4242   a-very-long-comm 1000   setfsuid         uid=0 (prevuid=1000)\n"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	for _, tc := range []struct {
		e    Event
		want string
	}{
		{Event{Syscall: "setuid", Args: Args{call: &calls[0], vals: [3]uint32{0}}, Ret: -1}, "setuid uid=0 (-EPERM)"},
		// setfs* return ids, but a seccomp filter can still fail them.
		{Event{Syscall: "setfsuid", Args: Args{call: &calls[6], vals: [3]uint32{0}}, Ret: -1}, "setfsuid uid=0 (-EPERM)"},
		{Event{Syscall: "setfsuid", Args: Args{call: &calls[6], vals: [3]uint32{Unchanged}}, Ret: 4294967294}, "setfsuid uid=-1 (prevuid=4294967294)"},
		{Event{Syscall: "setresuid", Args: Args{call: &calls[4], vals: [3]uint32{Unchanged, 3000000000, 4294967294}}},
			"setresuid ruid=-1 euid=3000000000 suid=4294967294 (0)"},
		{Event{Syscall: "setresuid32", IA32: true, Args: Args{call: &ia32Calls[9], vals: [3]uint32{Unchanged, 0, Unchanged}}},
			"ia32:setresuid32 ruid=-1 euid=0 suid=-1 (0)"},
	} {
		if got := row(&tc.e); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	// "ia32:setresuid32" fills the 16-character column: a blank still follows.
	e.IA32, e.Syscall, e.Args = true, "setresuid32", Args{call: &ia32Calls[9], vals: [3]uint32{0, 0, 0}}
	if got, want := string(table.AppendRow(nil, &e)), "11:29:29 4242   a-very-long-comm 1000   ia32:setresuid32 ruid=0 euid=0 suid=0 (1000)\n"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// The ia32 calls are the i386 table's sixteen set*id calls, with distinct
// numbers, and the BPF programs take them.
func TestIA32Numbers(t *testing.T) {
	d := newDecoder()
	if len(ia32Calls) != 16 || len(d.ia32) != 16 {
		t.Fatalf("%d ia32 calls, %d numbered; want 16", len(ia32Calls), len(d.ia32))
	}
	for nr, c := range d.ia32 {
		if got := sysnames.Syscall(sysnames.IA32, int(nr)); got != c.name || c.bits16 == strings.HasSuffix(c.name, "32") {
			t.Errorf("ia32 %d: call %s (16-bit %v), table %s", nr, c.name, c.bits16, got)
		}
	}
	if c := d.ia32[208]; c == nil || c.name != "setresuid32" {
		t.Errorf("ia32 208 is %v, want setresuid32", c)
	}
	spec, err := loadSetuids()
	if err != nil {
		t.Fatal(err)
	}
	if err := configure(Config{}, spec); err != nil {
		t.Fatal(err)
	}
	var v setuidsVariableSpecs
	var bits [4]uint64
	if err := spec.Assign(&v); err != nil {
		t.Fatal(err)
	}
	if err := v.Ia32SetidNrs.Get(&bits); err != nil {
		t.Fatal(err)
	}
	n := 0
	for nr := range 256 {
		if bits[nr/64]>>(nr%64)&1 == 1 {
			n++
			if d.ia32[int32(nr)] == nil {
				t.Errorf("BPF bitmap has ia32 %d (%s), not a set*id call", nr, sysnames.Syscall(sysnames.IA32, nr))
			}
		}
	}
	if n != 16 {
		t.Errorf("BPF bitmap has %d numbers, want 16", n)
	}
}

// A 16-bit call reads the low 16 bits of its arguments, and its -1 is
// 0xffff; other calls take 32-bit ids as they are.
func TestIDs(t *testing.T) {
	c16, c32 := &ia32Calls[0], &ia32Calls[1]
	for _, tc := range []struct {
		c         *call
		arg, want uint32
	}{
		{c16, 0xffff, Unchanged},
		{c16, 0x1ffff, Unchanged},
		{c16, 0x10005, 5},
		{c16, 65534, 65534},
		{c16, Unchanged, Unchanged},
		{c32, 0xffff, 0xffff},
		{c32, 3000000000, 3000000000},
		{c32, Unchanged, Unchanged},
		{&calls[0], 0xffff, 0xffff},
	} {
		if got := tc.c.id(tc.arg); got != tc.want {
			t.Errorf("%s(%#x): id %#x, want %#x", tc.c.name, tc.arg, got, tc.want)
		}
	}
}

// The per-event path (decode a ring record, format a text row into a reused
// buffer) must not allocate, native or ia32.
func TestEventPathDoesNotAllocate(t *testing.T) {
	d := newDecoder()
	nr, ok := sysnames.SyscallNr(sysnames.Native(), "setresuid")
	if !ok {
		t.Fatal("no setresuid on this architecture")
	}
	raw := make([]byte, unsafe.Sizeof(setuidsEvent{}))
	r, _ := probe.View[setuidsEvent](raw)
	r.Nr, r.Args, r.Task.Pid = int32(nr), [3]uint32{^uint32(0), 0, ^uint32(0)}, 77
	copy(r.Task.Comm[:], "sudo")
	raw32 := slices.Clone(raw)
	r32, _ := probe.View[setuidsEvent](raw32)
	r32.Nr, r32.Ia32, r32.Args = 164, 1, [3]uint32{0xffff, 0, 0xffff} // setresuid, 16-bit ids
	s := &probe.Session{}
	var e, e32 Event
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		if !d.decode(s, raw, &e) || !d.decode(s, raw32, &e32) {
			t.Fatal("not decoded")
		}
		buf = table.AppendRow(buf[:0], &e)
		buf = table.AppendRow(buf, &e32)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per event, want 0", allocs)
	}
	if got := row(&e); got != "setresuid ruid=-1 euid=0 suid=-1 (0)" {
		t.Errorf("decoded %q", got)
	}
	if got := row(&e32); got != "ia32:setresuid ruid=-1 euid=0 suid=-1 (0)" {
		t.Errorf("decoded %q", got)
	}
}

func TestJSONArgs(t *testing.T) {
	e := Event{Syscall: "setresuid", Args: Args{call: &calls[4], vals: [3]uint32{Unchanged, 0, Unchanged}}}
	b, _ := e.Args.MarshalJSON()
	if string(b) != `{"ruid":-1,"euid":0,"suid":-1}` {
		t.Errorf("got %s", b)
	}
	e.Args.vals = [3]uint32{2147483648, 4294967294, 0}
	b, _ = e.Args.MarshalJSON()
	if string(b) != `{"ruid":2147483648,"euid":4294967294,"suid":0}` {
		t.Errorf("got %s", b)
	}
	if want := "TIME     PID    COMM             UID    SYSCALL          ARGS (RET)\n"; string(table.AppendHeader(nil)) != want {
		t.Errorf("header %q", table.AppendHeader(nil))
	}
}
