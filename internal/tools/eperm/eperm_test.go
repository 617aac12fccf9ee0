package eperm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
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
)

// actions are the children the tests start (e2e.Child); amd64 adds its own.
var actions = map[string]func([]string) error{
	// signalled: as deny, but kill(1, 0) many times while another thread
	// signals this one.
	"signalled": func([]string) error {
		runtime.LockOSThread()
		if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, 65534, 65534, 65534); errno != 0 {
			return errno
		}
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return err
		}
		pid, tid := unix.Getpid(), unix.Gettid()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
					// The Go runtime takes SIGURG (its preemption
					// signal) and resumes the thread.
					unix.Tgkill(pid, tid, unix.SIGURG)
				}
			}
		}()
		for range signalledKills {
			if _, _, errno := unix.RawSyscall(unix.SYS_KILL, 1, 0, 0); errno != unix.EPERM {
				return fmt.Errorf("kill(1, 0): got %v, want EPERM", errno)
			}
		}
		close(stop)
		<-done
		return nil
	},
	// deny DIR: become nobody on this thread, then open a file in DIR
	// (0700, root's) twice and signal pid 1 once.
	"deny": func(args []string) error {
		runtime.LockOSThread()
		if _, _, errno := unix.RawSyscall(unix.SYS_SETRESGID, 65534, 65534, 65534); errno != 0 {
			return errno
		}
		if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, 65534, 65534, 65534); errno != 0 {
			return errno
		}
		fmt.Println("ready")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return err
		}
		for i := 0; i < 2; i++ {
			if _, err := unix.Open(filepath.Join(args[0], "secret"), unix.O_RDONLY, 0); err != unix.EACCES {
				return fmt.Errorf("open: got %v, want EACCES", err)
			}
		}
		if err := unix.Kill(1, 0); err != unix.EPERM {
			return fmt.Errorf("kill(1, 0): got %v, want EPERM", err)
		}
		return nil
	},
}

func TestMain(m *testing.M) {
	e2e.Main(m, actions)
}

// startChild starts a child action ("deny") and returns once it is nobody
// and waiting. Its argument is a directory only root can read.
func startChild(t *testing.T, action string) (*childProc, string) {
	t.Helper()
	dir := t.TempDir() // 0700, owned by root
	child := e2e.Child(action, dir)
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		child.Process.Kill()
		child.Wait()
		t.Fatalf("child: %q", line)
	}
	return &childProc{child.Process.Pid, func() error { fmt.Fprintln(stdin); return child.Wait() }}, dir
}

type childProc struct {
	pid     int
	proceed func() error
}

func TestCountsLabelEPERMAndEACCES(t *testing.T) {
	e2e.Require(t)
	child, _ := startChild(t, "deny")
	opts := e2e.Options()
	opts.Task.PID = child.pid
	tr, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.HasReader() {
		t.Error("count mode opened a ring buffer reader")
	}
	if err := child.proceed(); err != nil {
		t.Fatalf("child: %v", err)
	}
	counts, err := tr.Counts(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, c := range counts {
		if c.PID != uint32(child.pid) {
			t.Errorf("count for pid %d, traced only %d", c.PID, child.pid)
		}
		got[c.Syscall+" "+c.Errno] += c.Count
	}
	want := map[string]uint64{"openat EACCES": 2, "kill EPERM": 1}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: counted %d, want %d (all counts: %v)", k, got[k], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("unexpected counts: %v", got)
	}
	if st, err := tr.Stats(); err != nil || st.Lost() != 0 {
		t.Errorf("lost: %+v (%v)", st, err)
	}
	var b []byte
	for i := range counts {
		b = countTable.AppendRow(b, &counts[i])
	}
	if !strings.Contains(string(b), "openat           EACCES  2") || !strings.Contains(string(b), "kill             EPERM   1") {
		t.Errorf("summary:\n%s", b)
	}
}

// signalledKills is how many failing kills the "signalled" child makes.
const signalledKills = 20000

// A signal handled on the way out of a failed syscall ends in rt_sigreturn,
// which raw_syscalls:sys_exit reports with id -1 and the failed call's
// result: the failure was counted twice, once as "syscall_-1".
func TestSignalledFailuresCountedOnce(t *testing.T) {
	e2e.Require(t)
	child, _ := startChild(t, "signalled")
	opts := e2e.Options()
	opts.Task.PID = child.pid
	tr, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := child.proceed(); err != nil {
		t.Fatalf("child: %v", err)
	}
	counts, err := tr.Counts(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, c := range counts {
		got[c.Syscall+" "+c.Errno] += c.Count
	}
	if want := map[string]uint64{"kill EPERM": signalledKills}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", got, want)
	}
}

func TestStream(t *testing.T) {
	e2e.Require(t)
	child, _ := startChild(t, "deny")
	opts := e2e.Options()
	opts.Task.PID = child.pid
	tr, err := Open(Config{Stream: true}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !tr.HasReader() {
		t.Fatal("-e opened no ring buffer reader")
	}
	events := e2e.Collect(t, tr.Source)
	if err := child.proceed(); err != nil {
		t.Fatalf("child: %v", err)
	}
	for _, want := range []string{"openat EACCES", "openat EACCES", "kill EPERM"} {
		e := e2e.Wait(t, events, 5*time.Second, want, func(Event) bool { return true })
		if got := e.Syscall + " " + e.Errno; got != want || e.PID != uint32(child.pid) || e.UID != 65534 {
			t.Errorf("got %s from pid %d uid %d, want %s from %d uid 65534", got, e.PID, e.UID, want, child.pid)
		}
	}
}

// A failure of the test process itself, streamed: root too is refused
// execute access to a file without any execute bit.
func TestStreamOwnTask(t *testing.T) {
	e2e.Require(t)
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tr, err := Open(Config{Stream: true}, e2e.Own())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr.Source)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := uint32(unix.Gettid())
	if err := unix.Access(file, unix.X_OK); err != unix.EACCES {
		t.Fatalf("access(X_OK): got %v, want EACCES", err)
	}
	e := e2e.Wait(t, events, 5*time.Second, "access EACCES", func(e Event) bool {
		return strings.HasPrefix(e.Syscall, "faccessat") && e.Errno == "EACCES"
	})
	e2e.CheckTask(t, &e.Task)
	if e.TID != tid {
		t.Errorf("tid %d, want the calling thread %d", e.TID, tid)
	}
}

// Count mode reads maps only: no ring buffer reader, and the ring the
// programs still reference is given the smallest size.
func TestCountModeOpensNoRing(t *testing.T) {
	e2e.Require(t)
	tr, err := Open(Config{}, e2e.Own())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.HasReader() {
		t.Error("count mode opened a ring buffer reader")
	}
	var m epermMaps
	if err := tr.Assign(&m); err != nil {
		t.Fatal(err)
	}
	info, err := m.Events.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.MaxEntries != 4096 {
		t.Errorf("events ring of %d bytes in the kernel, want one page (4096)", info.MaxEntries)
	}
	// Drop one locked thread of this process to nobody: its kill(1, 0)
	// fails with EPERM. The thread is never unlocked, so Go ends it with
	// the goroutine and no other goroutine runs with its credentials.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, 65534, 65534, 65534); errno != 0 {
			errc <- fmt.Errorf("setresuid: %w", errno)
			return
		}
		if _, _, errno := unix.RawSyscall(unix.SYS_KILL, 1, 0, 0); errno != unix.EPERM {
			errc <- fmt.Errorf("kill(1, 0): got %v, want EPERM", errno)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	counts, err := tr.Counts(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var kill *Count
	for i, c := range counts {
		if c.PID != uint32(os.Getpid()) {
			t.Errorf("count for pid %d, traced only %d", c.PID, os.Getpid())
		}
		if c.Syscall == "kill" && c.Errno == "EPERM" {
			kill = &counts[i]
		}
	}
	if kill == nil || kill.Count != 1 || kill.Comm.String() != e2e.Comm(t) {
		t.Fatalf("kill EPERM: got %+v, want 1 from %q (all counts: %+v)", kill, e2e.Comm(t), counts)
	}
	if st, err := tr.Stats(); err != nil || st.Lost() != 0 || st.Events != 0 {
		t.Errorf("stats: %+v (%v), want nothing lost or streamed", st, err)
	}
}

func TestTables(t *testing.T) {
	now := time.Date(2024, 1, 2, 11, 29, 29, 0, time.Local)
	e := Event{Task: event.Task{Time: event.Time{Time: now}, PID: 24392}, Syscall: "kill", SyscallNr: 62, Errno: "EPERM"}
	copy(e.Comm[:], "a-very-long-command-name")
	got := string(eventTable.AppendHeader(nil)) + string(eventTable.AppendRow(nil, &e))
	want := "TIME     PID    COMM             SYSCALL          ERRNO\n" +
		"11:29:29 24392  a-very-long-comm kill             EPERM\n"
	if got != want {
		t.Errorf("events: got\n%s\nwant\n%s", got, want)
	}
	c := Count{Time: event.Time{Time: now}, PID: 24392, Syscall: "newfstatat", SyscallNr: 262, Errno: "EACCES", Count: 6}
	copy(c.Comm[:], "sh")
	got = string(countTable.AppendHeader(nil)) + string(countTable.AppendRow(nil, &c))
	want = "PID    COMM             SYSCALL          ERRNO   COUNT\n" +
		"24392  sh               newfstatat       EACCES  6\n"
	if got != want {
		t.Errorf("counts: got\n%s\nwant\n%s", got, want)
	}

	// ia32 syscalls say so in SYSCALL; JSON has the bare name and "ia32".
	e.Syscall, e.SyscallNr, e.IA32 = "kill", 37, true
	c.Syscall, c.SyscallNr, c.IA32 = "setresuid32", 208, true
	got = string(eventTable.AppendRow(nil, &e)) + string(countTable.AppendRow(nil, &c))
	want = "11:29:29 24392  a-very-long-comm ia32:kill        EPERM\n" +
		"24392  sh               ia32:setresuid32 EACCES  6\n"
	if got != want {
		t.Errorf("ia32: got\n%s\nwant\n%s", got, want)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"syscall":"setresuid32","syscall_nr":208,"ia32":true,"errno":"EACCES"`) {
		t.Errorf("JSON %s", b)
	}
}

// The per-event path of -e (decode a ring record, format a text row into
// a reused buffer) must not allocate, native or ia32.
func TestEventPathDoesNotAllocate(t *testing.T) {
	raw := make([]byte, unsafe.Sizeof(epermEvent{}))
	r, _ := probe.View[epermEvent](raw)
	r.Nr, r.Err, r.Task.Pid = 62, 1, 77
	copy(r.Task.Comm[:], "sh")
	raw32 := slices.Clone(raw)
	r32, _ := probe.View[epermEvent](raw32)
	r32.Nr, r32.Ia32 = 37, 1 // kill in the i386 table
	s := &probe.Session{}
	arch := "amd64"
	var e, e32 Event
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		if !decode(s, arch, raw, &e) || !decode(s, arch, raw32, &e32) {
			t.Fatal("not decoded")
		}
		buf = eventTable.AppendRow(buf[:0], &e)
		buf = eventTable.AppendRow(buf, &e32)
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per event, want 0", allocs)
	}
	if e.Errno != "EPERM" || e.PID != 77 || e.Syscall != "kill" || e.IA32 {
		t.Errorf("decoded %+v", e)
	}
	if e32.Syscall != "kill" || e32.SyscallNr != 37 || !e32.IA32 {
		t.Errorf("decoded %+v", e32)
	}
}
