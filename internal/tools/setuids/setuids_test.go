package setuids

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/sysnames"
)

// The child's calls, in order, and what each must report. Raw syscalls on
// one locked thread: Go's syscall.Setresuid would repeat the call on every
// thread.
var script = []struct {
	nr     uintptr
	args   [3]int32
	syscal string
	want   string // ARGS (RET) column
	uid    uint32
}{
	{unix.SYS_SETRESUID, [3]int32{-1, 0, -1}, "setresuid", "ruid=-1 euid=0 suid=-1 (0)", 0},
	{unix.SYS_SETFSUID, [3]int32{0}, "setfsuid", "uid=0 (prevuid=0)", 0},
	{unix.SYS_SETGID, [3]int32{0}, "setgid", "gid=0 (0)", 0},
	{unix.SYS_SETREGID, [3]int32{-1, 0}, "setregid", "rgid=-1 egid=0 (0)", 0},
	{unix.SYS_SETFSGID, [3]int32{65534}, "setfsgid", "gid=65534 (prevgid=0)", 0},
	{unix.SYS_SETRESUID, [3]int32{65534, 65534, 65534}, "setresuid", "ruid=65534 euid=65534 suid=65534 (0)", 0},
	{unix.SYS_SETUID, [3]int32{0}, "setuid", "uid=0 (-EPERM)", 65534},
}

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{
		// setids: wait for a line on stdin, then run the script.
		"setids": func([]string) error {
			runtime.LockOSThread()
			fmt.Println(unix.Gettid())
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				return err
			}
			for _, s := range script {
				unix.RawSyscall(s.nr, uintptr(s.args[0]), uintptr(s.args[1]), uintptr(s.args[2]))
			}
			return nil
		},
	})
}

func TestScriptedCalls(t *testing.T) {
	e2e.Require(t)
	child := e2e.Child("setids")
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	var tid uint32
	if _, err := fmt.Fscan(stdout, &tid); err != nil {
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
	for i, s := range script {
		e := e2e.Wait(t, events, 5*time.Second, s.syscal, func(Event) bool { return true })
		got := string(table[len(table)-1].Append(nil, &e))
		if e.Syscall != s.syscal || got != s.want || e.UID != s.uid {
			t.Errorf("call %d: got %s %q uid %d, want %s %q uid %d", i, e.Syscall, got, e.UID, s.syscal, s.want, s.uid)
		}
		if e.PID != uint32(child.Process.Pid) || e.TID != tid {
			t.Errorf("call %d: pid/tid %d/%d, want %d/%d", i, e.PID, e.TID, child.Process.Pid, tid)
		}
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
	e := Event{Task: event.Task{Time: time.Date(2024, 1, 2, 11, 29, 29, 0, time.Local), PID: 4242, UID: 1000},
		Syscall: "setfsuid", Args: Args{call: &calls[6], vals: [3]int32{0}}, Ret: 1000}
	copy(e.Comm[:], "a-very-long-command-name")
	got := string(table.AppendRow(nil, &e))
	if want := "11:29:29 4242   a-very-long-comm 1000   setfsuid         uid=0 (prevuid=1000)\n"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	e.Syscall, e.Args, e.Ret = "setuid", Args{call: &calls[0], vals: [3]int32{0}}, -1
	if got := string(table[len(table)-1].Append(nil, &e)); got != "uid=0 (-EPERM)" {
		t.Errorf("got %q", got)
	}
}

// The per-event path (decode a ring record, format a text row into a reused
// buffer) must not allocate.
func TestEventPathDoesNotAllocate(t *testing.T) {
	byNr := callsByNr(sysnames.Native())
	nr, ok := sysnames.SyscallNr(sysnames.Native(), "setresuid")
	if !ok {
		t.Fatal("no setresuid on this architecture")
	}
	raw := make([]byte, unsafe.Sizeof(setuidsEvent{}))
	r, _ := probe.View[setuidsEvent](raw)
	r.Nr, r.Args, r.Task.Pid = int32(nr), [3]uint32{^uint32(0), 0, ^uint32(0)}, 77
	copy(r.Task.Comm[:], "sudo")
	s := &probe.Session{}
	var e Event
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		if !decode(s, byNr, raw, &e) {
			t.Fatal("not decoded")
		}
		buf = table.AppendRow(buf[:0], &e)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per event, want 0", allocs)
	}
	if got := string(table[len(table)-1].Append(nil, &e)); got != "ruid=-1 euid=0 suid=-1 (0)" {
		t.Errorf("decoded %q", got)
	}
}

func TestJSONArgs(t *testing.T) {
	e := Event{Syscall: "setresuid", Args: Args{call: &calls[4], vals: [3]int32{-1, 0, -1}}}
	b, _ := e.Args.MarshalJSON()
	if string(b) != `{"ruid":-1,"euid":0,"suid":-1}` {
		t.Errorf("got %s", b)
	}
	if want := "TIME     PID    COMM             UID    SYSCALL          ARGS (RET)\n"; string(table.AppendHeader(nil)) != want {
		t.Errorf("header %q", table.AppendHeader(nil))
	}
}
