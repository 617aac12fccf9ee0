package capable

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
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
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
)

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{
		// chroot [nobody|seccomp]: wait for a line on stdin, then
		// chroot("/"), first dropping to nobody on this thread, or first
		// installing an allow-all seccomp filter without no_new_privs (a
		// CAP_SYS_ADMIN check that does not audit), when asked.
		"chroot": func(args []string) error {
			runtime.LockOSThread()
			if len(args) > 0 && args[0] == "nobody" {
				if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, 65534, 65534, 65534); errno != 0 {
					return errno
				}
			}
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				return err
			}
			if len(args) > 0 && args[0] == "seccomp" {
				allow := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}
				prog := unix.SockFprog{Len: 1, Filter: &allow[0]}
				if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
					return fmt.Errorf("seccomp: %w", err)
				}
			}
			fmt.Println(int(chrootRoot()))
			return nil
		},
		// allow-deny: wait for a line, chroot("/") as root (allowed), drop
		// to nobody on this thread, chroot again (denied); print both
		// errnos.
		"allow-deny": func(args []string) error {
			runtime.LockOSThread()
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				return err
			}
			first := chrootRoot()
			if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, 65534, 65534, 65534); errno != 0 {
				return errno
			}
			fmt.Println(int(first), int(chrootRoot()))
			return nil
		},
		// setuid32: drop to nobody on this thread, wait for a line, then
		// setuid32(0) as an ia32 syscall (int $0x80): a denied CAP_SETUID
		// check in a compat syscall. Prints the result (-errno).
		"setuid32": func(args []string) error {
			runtime.LockOSThread()
			if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, 65534, 65534, 65534); errno != 0 {
				return errno
			}
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				return err
			}
			fmt.Println(int32(e2e.Syscall32(ia32Setuid32, 0, 0, 0)))
			return nil
		},
		// exec BIN: read exactly one line ("go\n", unbuffered so the rest
		// of stdin stays for BIN), then exec BIN in this process.
		"exec": func(args []string) error {
			var line [3]byte
			if _, err := io.ReadFull(os.Stdin, line[:]); err != nil {
				return err
			}
			return unix.Exec(args[0], args, os.Environ())
		},
	})
}

// chrootRoot calls chroot("/") on this thread and returns its errno.
func chrootRoot() unix.Errno {
	root, _ := unix.BytePtrFromString("/")
	_, _, errno := unix.RawSyscall(unix.SYS_CHROOT, uintptr(unsafe.Pointer(root)), 0, 0)
	return errno
}

// ia32Setuid32 is setuid32 in the i386 table (epoll_create in amd64's).
const ia32Setuid32 = 213

// child is a process stopped before its chroot until go is called.
type child struct {
	cmd   *exec.Cmd
	stdin interface{ Write([]byte) (int, error) }
	out   *bufio.Reader
}

func start(t *testing.T, cmd *exec.Cmd) *child {
	t.Helper()
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return &child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
}

// chroot lets the child call chroot and returns the errno it got.
func (c *child) chroot(t *testing.T) int {
	t.Helper()
	c.stdin.Write([]byte("go\n"))
	var errno int
	if _, err := fmt.Fscan(c.out, &errno); err != nil {
		t.Fatalf("child's result: %v", err)
	}
	return errno
}

const capSysChroot = 18

// openFor opens capable on process pid only.
func openFor(t *testing.T, cfg Config, pid int) *tool.Source[Event] {
	t.Helper()
	opts := e2e.Options()
	opts.Task.PID = pid
	tr, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func waitChroot(t *testing.T, events <-chan Event, pid int) Event {
	t.Helper()
	return e2e.Wait(t, events, 5*time.Second, "CAP_SYS_CHROOT check", func(e Event) bool {
		return e.PID == uint32(pid) && e.Cap == capSysChroot
	})
}

func TestChrootAllowedWithStackAndSyscall(t *testing.T) {
	e2e.Require(t)
	c := start(t, e2e.Child("chroot"))
	tr := openFor(t, Config{KStack: true, Syscall: true}, c.cmd.Process.Pid)
	events := e2e.Collect(t, tr)
	if errno := c.chroot(t); errno != 0 {
		t.Fatalf("chroot as root: errno %d", errno)
	}
	e := waitChroot(t, events, c.cmd.Process.Pid)
	if e.CapName != "CAP_SYS_CHROOT" || e.Verdict != "allow" || e.UID != 0 || e.Syscall != "chroot" {
		t.Errorf("got %s %s uid %d syscall %q, want CAP_SYS_CHROOT allow uid 0 syscall chroot", e.CapName, e.Verdict, e.UID, e.Syscall)
	}
	if e.IA32 {
		t.Error("a 64-bit chroot marked ia32")
	}
	if e.TID == 0 || e.Comm.String() == "" {
		t.Errorf("tid %d comm %q", e.TID, e.Comm)
	}
	if !hasFrame(e.KStack, "chroot") || !hasFrame(e.KStack, "cap_capable") {
		t.Errorf("kernel stack lacks the chroot path:\n%s", frames(e))
	}
	if tr.Hook.Kind == probe.Tracepoint {
		if e.Audit != nil || e.InSetID != nil {
			t.Errorf("audit %s insetid %s: the tracepoint has no opts, want nil", appendFlag(nil, e.Audit), appendFlag(nil, e.InSetID))
		}
	} else if e.Audit == nil || !*e.Audit || e.InSetID == nil || *e.InSetID {
		t.Errorf("audit %s insetid %s: chroot's check audits and is not INSETID (hook %s)", appendFlag(nil, e.Audit), appendFlag(nil, e.InSetID), tr.Hook.Name)
	}
}

func TestChrootDeniedForNobody(t *testing.T) {
	e2e.Require(t)
	c := start(t, e2e.Child("chroot", "nobody"))
	tr := openFor(t, Config{}, c.cmd.Process.Pid)
	events := e2e.Collect(t, tr)
	if errno := c.chroot(t); errno != int(unix.EPERM) {
		t.Fatalf("chroot as nobody: errno %d, want EPERM", errno)
	}
	e := waitChroot(t, events, c.cmd.Process.Pid)
	if e.Verdict != "deny" || e.UID != 65534 {
		t.Errorf("got verdict %s uid %d, want deny for 65534", e.Verdict, e.UID)
	}
}

// chrootBin returns testdata/chroot.c built with frame pointers, or the
// one test/vm/run.sh prebuilt where there is no gcc (qemu guest).
func chrootBin(t *testing.T) string {
	t.Helper()
	return e2e.Program(t, "capable/chroot", func() string {
		gcc := e2e.Need(t, "gcc")
		bin := filepath.Join(t.TempDir(), "chroot")
		if out, err := exec.Command(gcc, "-O0", "-fno-omit-frame-pointer", "-o", bin, "testdata/chroot.c").CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
		return bin
	})
}

// checkChrootStack checks that the user stack of a check made by
// testdata/chroot.c names owl_chroot_caller and main in the program.
func checkChrootStack(t *testing.T, e Event) {
	t.Helper()
	t.Logf("stacks:\n%s", frames(e))
	if !hasFrame(e.UStack, "owl_chroot_caller") || !hasFrame(e.UStack, "main") {
		t.Errorf("user stack lacks owl_chroot_caller and main:\n%s", frames(e))
	}
	if len(e.UStack) > 0 && e.UStack[0].Module != "chroot" {
		t.Errorf("innermost user frame's module %q, want the program", e.UStack[0].Module)
	}
	// Up to main every frame is in the program: none may be a bare
	// [unknown] (past main, libc's frames have no frame pointers).
	for _, f := range e.UStack {
		if f.String() == syms.Unknown {
			t.Errorf("bare %s frame at %#x:\n%s", syms.Unknown, f.Addr, frames(e))
		}
		if f.Symbol == "main" {
			break
		}
	}
}

// The user stack names the C function that made the syscall.
func TestUserStackOfCProgram(t *testing.T) {
	e2e.Require(t)
	c := start(t, exec.Command(chrootBin(t)))
	tr := openFor(t, Config{UStack: true, KStack: true}, c.cmd.Process.Pid)
	events := e2e.Collect(t, tr)
	if errno := c.chroot(t); errno != 0 {
		t.Fatalf("chroot: %d", errno)
	}
	e := waitChroot(t, events, c.cmd.Process.Pid)
	checkChrootStack(t, e)
	c.stdin.Write([]byte("done\n"))
}

// A process that exits right after its check still gets its user stack
// named: the stack is taken as build-id and file offset, not as addresses
// that only its (gone) mappings could name. The ring is read only after the
// process was reaped, so nothing of it is left in /proc. Either it ran
// before capable started (its files are learned then, with -p) or it exec'd
// after (the exec is traced with -U).
func TestUserStackOfExitedProcess(t *testing.T) {
	e2e.Require(t)
	bin := chrootBin(t)
	for _, execAfter := range []bool{false, true} {
		t.Run(fmt.Sprintf("exec_after_start=%v", execAfter), func(t *testing.T) {
			cmd := exec.Command(bin)
			lines := "go\n"
			if execAfter {
				// A Go child that execs the program once capable runs.
				cmd = e2e.Child("exec", bin)
				lines = "go\ngo\n"
			}
			c := start(t, cmd)
			pid := c.cmd.Process.Pid
			tr := openFor(t, Config{UStack: true}, pid)
			// chroot.c chroots on the first line and exits at the end of
			// its input.
			c.stdin.Write([]byte(lines))
			c.stdin.(io.Closer).Close()
			var ret int
			if _, err := fmt.Fscan(c.out, &ret); err != nil || ret != 0 {
				t.Fatalf("chroot: %d (%v)", ret, err)
			}
			if err := c.cmd.Wait(); err != nil {
				t.Fatalf("program: %v", err)
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				t.Fatalf("process %d is still there", pid)
			}
			e := waitChroot(t, e2e.Collect(t, tr), pid)
			checkChrootStack(t, e)
		})
	}
}

// --unique prints a deny even after an allow of the same capability, by
// pid (-p) or by stacks: a denied check is what a security tool exists for.
func TestUniqueKeepsDenyAfterAllow(t *testing.T) {
	e2e.Require(t)
	for _, byPID := range []bool{false, true} {
		t.Run(fmt.Sprintf("by_pid=%v", byPID), func(t *testing.T) {
			c := start(t, e2e.Child("allow-deny"))
			pid := c.cmd.Process.Pid
			tr := openFor(t, Config{Unique: true, UniqueByPID: byPID}, pid)
			events := e2e.Collect(t, tr)
			c.stdin.Write([]byte("go\n"))
			var first, second int
			if _, err := fmt.Fscan(c.out, &first, &second); err != nil || first != 0 || second != int(unix.EPERM) {
				t.Fatalf("chroots: errnos %d %d (%v), want 0 then EPERM", first, second, err)
			}
			var verdicts []string
			e2e.Wait(t, events, 5*time.Second, "the denied CAP_SYS_CHROOT check", func(e Event) bool {
				if e.PID == uint32(pid) && e.Cap == capSysChroot {
					verdicts = append(verdicts, e.Verdict)
				}
				return e.Cap == capSysChroot && e.Verdict == "deny"
			})
			if !slices.Equal(verdicts, []string{"allow", "deny"}) {
				t.Errorf("CAP_SYS_CHROOT verdicts %v, want allow then deny", verdicts)
			}
		})
	}
}

// An ia32 syscall (int $0x80) is named from the i386 table and marked
// ia32: setuid32 is 213 there, epoll_create in the x86-64 table.
func TestCompatSyscall(t *testing.T) {
	e2e.Require(t)
	e2e.RequireIA32(t)
	c := start(t, e2e.Child("setuid32"))
	pid := c.cmd.Process.Pid
	tr := openFor(t, Config{Syscall: true}, pid)
	events := e2e.Collect(t, tr)
	c.stdin.Write([]byte("go\n"))
	var ret int
	if _, err := fmt.Fscan(c.out, &ret); err != nil || ret != -int(unix.EPERM) {
		t.Fatalf("ia32 setuid32(0) as nobody: %d (%v), want -EPERM", ret, err)
	}
	// The denied one: the child's own drop to nobody, made before it waits,
	// can be traced too when tracing starts early enough.
	e := e2e.Wait(t, events, 5*time.Second, "the denied CAP_SETUID check", func(e Event) bool {
		return e.PID == uint32(pid) && e.Cap == capSetUID && e.Verdict == "deny"
	})
	if e.Syscall != "setuid32" || !e.IA32 {
		t.Errorf("got syscall %q ia32 %v, want setuid32, ia32", e.Syscall, e.IA32)
	}
	row := string((&flags{cfg: Config{Syscall: true}}).table().AppendRow(nil, &e))
	if !strings.HasSuffix(row, " deny    ia32:setuid32\n") {
		t.Errorf("row %q, want SYSCALL ia32:setuid32", row)
	}
}

// With opts (kprobe and fexit hooks), checks that do not audit are hidden
// unless -v: seccomp's CAP_SYS_ADMIN noaudit check, made before the chroot,
// shows only with -v.
func TestNoAuditHiddenWithoutVerbose(t *testing.T) {
	e2e.Require(t)
	for _, verbose := range []bool{false, true} {
		c := start(t, e2e.Child("chroot", "seccomp"))
		tr := openFor(t, Config{Verbose: verbose}, c.cmd.Process.Pid)
		if tr.Hook.Kind == probe.Tracepoint {
			tr.Close()
			t.Skip("the tracepoint has no opts: audit is unknown and every check is shown")
		}
		events := e2e.Collect(t, tr)
		if errno := c.chroot(t); errno != 0 {
			t.Fatalf("chroot: %d", errno)
		}
		// Every check up to the chroot's, noting those that do not audit.
		var noaudit []string
		e2e.Wait(t, events, 5*time.Second, "the chroot check", func(e Event) bool {
			if e.Audit != nil && !*e.Audit {
				noaudit = append(noaudit, e.CapName)
			}
			return e.Cap == capSysChroot
		})
		switch {
		case !verbose && len(noaudit) > 0:
			t.Errorf("without -v: noaudit checks shown: %v", noaudit)
		case verbose && !slices.Contains(noaudit, "CAP_SYS_ADMIN"):
			t.Errorf("with -v: noaudit checks %v, want seccomp's CAP_SYS_ADMIN", noaudit)
		}
	}
}

func TestHeaders(t *testing.T) {
	f := flags{}
	tab := f.table()
	if got, want := string(tab.AppendHeader(nil)), "TIME      UID    PID    COMM             CAP  NAME                 AUDIT VERDICT\n"; got != want {
		t.Errorf("header %q, want %q", got, want)
	}
	x := (&flags{extra: true, cfg: Config{Syscall: true}}).table()
	if got := string(x.AppendHeader(nil)); !strings.Contains(got, "PID    TID    COMM") || !strings.Contains(got, "AUDIT INSETID VERDICT SYSCALL") {
		t.Errorf("-x -S header %q", got)
	}
}

func hasFrame(st []syms.Frame, sym string) bool {
	for _, f := range st {
		if strings.Contains(f.Symbol, sym) {
			return true
		}
	}
	return false
}

func frames(e Event) string {
	var b []byte
	return string(appendStacks(b, &e))
}

// raw is the ring record of an allowed check by pid of capability c with
// stack ids.
func raw(pid uint32, c, kstack, ustack int32) []byte {
	return rawRet(pid, c, kstack, ustack, 0)
}

// rawRet is raw with the check's result: 0 allowed, -EPERM denied.
func rawRet(pid uint32, c, kstack, ustack, ret int32) []byte {
	var r capableEvent
	r.Task.Pid, r.Task.Tid, r.Cap, r.Kstack, r.Ustack, r.Syscall, r.Ret = pid, pid, c, kstack, ustack, -1, ret
	copy(r.Task.Comm[:], "ping")
	return unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r))
}

func TestUnique(t *testing.T) {
	eperm := -int32(unix.EPERM)
	a := raw(1, 21, 5, -1)
	b := raw(2, 21, 5, -1)                         // same cap and stack, other pid
	c := raw(1, 21, 6, -1)                         // same pid and cap, other stack
	d := rawRet(1, 21, 5, -1, eperm)               // a, denied
	e := rawRet(1, 21, 5, -1, -int32(unix.EACCES)) // another error: still a deny
	for _, tc := range []struct {
		cfg  Config
		want []bool
	}{
		{Config{}, []bool{true, true, true, true, true, true}},
		{Config{Unique: true}, []bool{true, false, true, false, true, false}},                    // each capability, verdict and stack once
		{Config{Unique: true, UniqueByPID: true}, []bool{true, true, false, false, true, false}}, // each pid, capability and verdict once
	} {
		dec, err := newDecoder(tc.cfg, &probe.Session{})
		if err != nil {
			t.Fatal(err)
		}
		var ev Event
		var got []bool
		for _, r := range [][]byte{a, b, c, a, d, e} {
			got = append(got, dec.decode(r, &ev))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%+v: emitted %v, want %v", tc.cfg, got, tc.want)
		}
	}
}

// Once the set of kinds is full, new kinds are still emitted, and so are
// their repeats: the set does not grow.
func TestUniqueBounded(t *testing.T) {
	d, err := newDecoder(Config{Unique: true}, &probe.Session{})
	if err != nil {
		t.Fatal(err)
	}
	d.seenMax = 2
	var e Event
	for i, want := range []bool{true, true, false, true, true, false} {
		c := []int32{1, 2, 1, 3, 3, 2}[i]
		if got := d.decode(raw(1, c, -1, -1), &e); got != want {
			t.Errorf("check %d (cap %d): emitted %v, want %v", i, c, got, want)
		}
	}
	if len(d.seen) != 2 {
		t.Errorf("%d kinds remembered, want the bound 2", len(d.seen))
	}
}

func TestTable(t *testing.T) {
	e := Event{Task: event.Task{PID: 4242, TID: 4243, UID: 1000}, Cap: 21, CapName: "CAP_SYS_ADMIN",
		Audit: &yes, InSetID: &no, Verdict: "deny", Syscall: "mount"}
	copy(e.Comm[:], "a-very-long-command-name")
	tab := (&flags{extra: true, cfg: Config{Syscall: true}}).table()
	got := string(tab.AppendRow(nil, &e))
	want := "1000   4242   4243   a-very-long-comm 21   CAP_SYS_ADMIN        1     0       deny    mount\n"
	if len(got) < 10 || got[10:] != want {
		t.Errorf("row %q, want %q after the 9-wide time", got, want)
	}
	e.Audit, e.InSetID, e.Syscall = nil, nil, ""
	if got := string(tab.AppendRow(nil, &e)); !strings.HasSuffix(got, "-     -       deny    -\n") {
		t.Errorf("unknown audit, insetid and syscall: row %q, want - for each", got)
	}
}

// The per-event path (decode a ring record, drop a repeat, format a text
// row into a reused buffer) must not allocate without stacks.
func TestEventPathDoesNotAllocate(t *testing.T) {
	r := raw(77, 21, -1, -1)
	v, _ := probe.View[capableEvent](r)
	v.Syscall = 165
	d, err := newDecoder(Config{Unique: true, Syscall: true}, &probe.Session{})
	if err != nil {
		t.Fatal(err)
	}
	tab := (&flags{extra: true, cfg: Config{Syscall: true}}).table()
	var e Event
	buf := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(100, func() {
		if d.decode(r, &e) {
			buf = tab.AppendRow(buf[:0], &e)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per event, want 0", allocs)
	}
	if len(buf) == 0 {
		t.Error("the first check was not emitted")
	}
}

// The test's own checks carry its task header, and --unique by pid lets
// one of two identical checks through.
func TestOwnChecksAndUnique(t *testing.T) {
	e2e.Require(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	marker := filepath.Join(t.TempDir(), "marker")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, unique := range []bool{false, true} {
		t.Run(fmt.Sprintf("unique=%v", unique), func(t *testing.T) {
			tr, err := Open(Config{Unique: unique, UniqueByPID: unique}, e2e.Own())
			if err != nil {
				t.Fatal(err)
			}
			events := e2e.Collect(t, tr)
			for range 2 {
				if err := unix.Chroot("/"); err != nil {
					t.Fatalf("chroot /: %v", err)
				}
			}
			// CAP_CHOWN, after both chroots: the end of what to count.
			if err := os.Chown(marker, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			var chroots []Event
			e2e.Wait(t, events, 5*time.Second, "the CAP_CHOWN check", func(e Event) bool {
				if e.Cap == capSysChroot {
					chroots = append(chroots, e)
				}
				return e.Cap == capChown
			})
			want := 2
			if unique {
				want = 1
			}
			if len(chroots) != want {
				t.Fatalf("%d CAP_SYS_CHROOT checks, want %d", len(chroots), want)
			}
			e2e.CheckTask(t, &chroots[0].Task)
			if c := chroots[0]; c.Verdict != "allow" || c.CapName != "CAP_SYS_CHROOT" {
				t.Errorf("got %s %s, want CAP_SYS_CHROOT allow", c.CapName, c.Verdict)
			}
		})
	}
}

const capChown, capSetUID = 0, 7
