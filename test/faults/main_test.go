package faults

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
)

// owlBin is the binary under test: $OWL_BIN (the qemu guests), or one
// built for this run.
var owlBin string

// soak makes the long variants run: every signal at every phase, several
// times, and more cycles (OWL_SOAK=1, as make soak sets it).
var soak = os.Getenv("OWL_SOAK") == "1"

func TestMain(m *testing.M) {
	if os.Getenv("OWL_E2E_CHILD") == "" {
		owlBin = os.Getenv("OWL_BIN")
		if owlBin == "" {
			dir, err := os.MkdirTemp("", "owl-faults")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			owlBin = filepath.Join(dir, "owl")
			build := exec.Command("go", "build", "-o", owlBin, "../../cmd/owl")
			build.Env = append(os.Environ(), "CGO_ENABLED=0")
			build.Stderr = os.Stderr
			if err := build.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "build owl:", err)
				os.Exit(1)
			}
			// e2e.Main exits, so the directory stays, as cmd/owl's tests'.
		}
	}
	e2e.Main(m, map[string]func([]string) error{
		"spin":   spin,
		"true":   func([]string) error { return nil },
		"execer": execer,
		"opener": opener,
	})
}

// spinWork is the Go function uprobe tools trace in the workload.
//
//go:noinline
func spinWork(n int) int {
	s := 0
	for i := range n {
		s += i ^ n
	}
	return s
}

// spinWorkName is spinWork's symbol, as funccount and others take it.
const spinWorkName = "github.com/owlbpf/owl/test/faults.spinWork"

var sink int

// spin is the workload: until its stdin closes, every 2 ms it calls
// spinWork, opens a file, fails a ptrace (EPERM) and makes a setresuid
// that changes nothing; every 50 ms a loopback connect, a connect to a
// closed port (a reset), a chroot (a capability check) and an exec. So
// every streaming tool has events flowing. It prints "ready" once it runs.
func spin([]string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	fmt.Println("ready")
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		sink += spinWork(100)
		if f, err := os.Open("/proc/self/stat"); err == nil {
			f.Close()
		}
		unix.PtraceAttach(os.Getpid())
		runtime.LockOSThread()
		unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), ^uintptr(0), ^uintptr(0))
		runtime.UnlockOSThread()
		if i%25 == 0 {
			if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
				c.Close()
			}
			if c, err := net.Dial("tcp", closedAddr); err == nil {
				c.Close()
			}
			unix.Chroot("/")
			e2e.Child("true").Run()
		}
	}
}

// execer waits for a line on stdin, then becomes opener (same pid, a new
// image) with the rest of its arguments: exec'd from the process's leading
// thread when args[0] is "leader", else from another thread.
func execer(args []string) error {
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	return e2e.ExecOnThread(args[0] == "leader", "opener", args[1:]...)
}

// opener opens args[0] and calls spinWork every 10 ms until its stdin
// closes; after its first call it creates args[0].spun.
func opener(args []string) error {
	spun := false
	stop := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(stop)
	}()
	for {
		if f, err := os.Open(args[0]); err == nil {
			f.Close()
		}
		sink += spinWork(100)
		if !spun {
			// Tells the test the new image has called spinWork.
			os.WriteFile(args[0]+".spun", nil, 0o644)
			spun = true
		}
		select {
		case <-stop:
			return nil
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// proc is a process a test started: a workload or a target.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed once it exited and was reaped
}

func (p *proc) pid() int       { return p.cmd.Process.Pid }
func (p *proc) pidArg() string { return strconv.Itoa(p.pid()) }

// kill ends p (SIGKILL) and reaps it.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// startProc starts cmd, waits for a first stdout line starting with ready
// (none when ready is ""), and kills it when owner ends (t when nil).
func startProc(t, owner testing.TB, cmd *exec.Cmd, ready string) *proc {
	t.Helper()
	if owner == nil {
		owner = t
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	p := &proc{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	owner.Cleanup(p.kill)
	if ready == "" {
		return p
	}
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, ready) {
			t.Fatalf("%v: first line %q, want %q", cmd.Args, l, ready)
		}
	case <-p.done:
		t.Fatalf("%v exited before it was ready", cmd.Args)
	case <-time.After(30 * time.Second):
		t.Fatalf("%v not ready after 30 s", cmd.Args)
	}
	return p
}

// startSpin starts the Go workload (spin).
func startSpin(t testing.TB) *proc {
	t.Helper()
	return startProc(t, nil, e2e.Child("spin"), "ready")
}

// python is Debian's python3.11, the one with USDT probes (function
// calls, GC) that ucalls, uflow, ugc and usdt trace; uthreads traces its
// pthreads.
const python = "/usr/bin/python3.11"

// pythonLoop calls functions and generators, collects garbage and starts
// a thread, over and over.
const pythonLoop = `
import gc, sys, threading, time
def f(): pass
def g():
    yield 1
print("ready", flush=True)
while True:
    for i in range(50):
        f()
        list(g())
    gc.collect()
    t = threading.Thread(target=f)
    t.start()
    t.join()
    time.sleep(0.02)
`

// startPython starts pythonLoop, ended with owner, or skips t where the
// guest has no python3.11.
func startPython(t, owner testing.TB) *proc {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Skipf("no %s to trace (the qemu guests have none)", python)
	}
	return startProc(t, owner, exec.Command(python, "-c", pythonLoop), "ready")
}

// world is what a test's tools trace: the workload, and targets started
// on demand.
type world struct {
	t      testing.TB
	exe    string // this test binary: spinWork's file
	spin   *proc
	mu     sync.Mutex
	python *proc
}

// skipInGuest skips in the qemu guests (e2e.InGuest): starting, faulting
// and stopping every tool dozens of times under TCG takes longer than a
// guest's 5-minute test budget (the 6.1 guest ran out in
// TestPIDExitEndsTool, and detaching per-pid Go RET uprobes took over 10 s
// there). The host run covers it; the guests run every tool's own tests.
func skipInGuest(t *testing.T) {
	t.Helper()
	if e2e.InGuest() {
		t.Skip("fault injection over every tool is too slow for the qemu guests (TCG): host only")
	}
}

func newWorld(t testing.TB) *world {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &world{t: t, exe: exe, spin: startSpin(t)}
}

// goFunc is the probe specifier of spinWork in file exe.
func goFunc(exe string) string { return exe + ":" + spinWorkName }

// pythonPID is the pid of the python target, started on first use for
// the rest of the world's test; t skips without python3.11.
func (w *world) pythonPID(t testing.TB) string {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.python == nil {
		w.python = startPython(t, w.t)
	}
	return w.python.pidArg()
}

// bash runs shell functions, which bashfunc and bashfunclat trace.
const bash = "/bin/bash"

// startBash starts a bash calling a function every 20 ms, ended with the
// test, or skips t where there is no bash (the qemu guests).
func startBash(t testing.TB) *proc {
	t.Helper()
	if _, err := os.Stat(bash); err != nil {
		t.Skipf("no %s to trace (the qemu guests have none)", bash)
	}
	return startProc(t, nil, exec.Command(bash, "-c", "f() { :; }; echo ready; while :; do f; sleep 0.02; done"), "ready")
}
