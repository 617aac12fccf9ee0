package eperm

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
)

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{
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
	})
}

// startChild starts the "deny" child and returns once it is nobody and waiting.
func startChild(t *testing.T) (*childProc, string) {
	t.Helper()
	dir := t.TempDir() // 0700, owned by root
	child := e2e.Child("deny", dir)
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
	child, _ := startChild(t)
	tr, err := New(Config{PID: child.pid})
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
	if lost, err := tr.Lost(); err != nil || lost != 0 {
		t.Errorf("lost %d (%v)", lost, err)
	}
	var b []byte
	for i := range counts {
		b = countTable.AppendRow(b, &counts[i])
	}
	if !strings.Contains(string(b), "openat           EACCES  2") || !strings.Contains(string(b), "kill             EPERM   1") {
		t.Errorf("summary:\n%s", b)
	}
}

func TestStream(t *testing.T) {
	e2e.Require(t)
	child, _ := startChild(t)
	tr, err := New(Config{PID: child.pid, Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, tr.Tracer)
	if err := child.proceed(); err != nil {
		t.Fatalf("child: %v", err)
	}
	for _, want := range []string{"openat EACCES", "openat EACCES", "kill EPERM"} {
		e := e2e.Wait(t, events, 5*time.Second, want, func(Event) bool { return true })
		if got := e.Syscall + " " + e.Errno; got != want || e.PID != uint32(child.pid) {
			t.Errorf("got %s from pid %d, want %s from %d", got, e.PID, want, child.pid)
		}
	}
}
