// Package e2e is the harness of owl's end-to-end tests: they load the real
// BPF programs into the running kernel, cause real events and assert on
// them. Without root or BPF they skip with the reason; with OWL_E2E=require
// they fail instead, so CI cannot pass on skipped tests.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// Require skips (or, with OWL_E2E=require, fails) t unless it runs as root
// on a kernel that can load tracepoint programs and ring buffers.
func Require(t testing.TB) {
	t.Helper()
	if reason := missing(); reason != "" {
		if os.Getenv("OWL_E2E") == "require" {
			t.Fatalf("end-to-end test cannot run: %s (OWL_E2E=require)", reason)
		}
		t.Skipf("end-to-end test skipped: %s (set OWL_E2E=require to fail instead)", reason)
	}
}

func missing() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if err := features.HaveProgramType(ebpf.TracePoint); err != nil {
		return fmt.Sprintf("no tracepoint programs: %v", err)
	}
	if err := features.HaveMapType(ebpf.RingBuf); err != nil {
		return fmt.Sprintf("no ring buffer: %v", err)
	}
	if err := probe.EnsureTracefs(); err != nil {
		return err.Error()
	}
	return ""
}

// childEnv names the action a re-executed test binary performs.
const childEnv = "OWL_E2E_CHILD"

// Main runs the tests of a package, or a child action when the binary was
// re-executed by Child. It fails the run when file descriptors leak (a
// link, map or reader left open).
func Main(m *testing.M, actions map[string]func(args []string) error) {
	if name := os.Getenv(childEnv); name != "" {
		action, ok := actions[name]
		if name == ia32Probe {
			action, ok = ia32Getpid, true
		}
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown child action %q\n", name)
			os.Exit(3)
		}
		if err := action(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	before := openFDs()
	code := m.Run()
	if code == 0 {
		// Closing is synchronous, but give finalizers a moment.
		deadline := time.Now().Add(2 * time.Second)
		for openFDs() > before && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if after := openFDs(); after > before {
			fmt.Fprintf(os.Stderr, "BPF file descriptors leaked: %d open before the tests, %d after\n", before, after)
			code = 1
		}
	}
	os.Exit(code)
}

// openFDs counts this process's descriptors of BPF objects and perf events:
// what a tool that forgot to close something would leave behind.
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		switch l {
		case "anon_inode:bpf-map", "anon_inode:bpf-prog", "anon_inode:bpf_link", "anon_inode:[perf_event]":
			n++
		}
	}
	return n
}

// Child returns a command that re-executes the test binary to perform the
// named action of Main with args, as another process.
func Child(action string, args ...string) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Env = append(os.Environ(), childEnv+"="+action)
	cmd.Stderr = os.Stderr
	return cmd
}

// Wait receives from ch until match accepts a value or the timeout ends.
func Wait[E any](t testing.TB, ch <-chan E, timeout time.Duration, what string, match func(E) bool) E {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case e := <-ch:
			if match(e) {
				return e
			}
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

// InSyscall waits until thread tid of this process is blocked in one of the
// syscall numbers, read from /proc/self/task/TID/syscall.
func InSyscall(tid int, nrs ...int) error {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/syscall", tid))
		if err != nil {
			return err
		}
		f := strings.Fields(string(b))
		for _, nr := range nrs {
			if len(f) > 0 && f[0] == fmt.Sprint(nr) {
				return nil
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("thread never blocked in the syscall")
}

// runtime is shared by the sources a test binary opens, as in one owl.
var runtime = probe.NewRuntime()

// Options are the options tests open tools with: every task, the hook
// kinds OWL_HOOKS forces (as the command layer does: make vmtest runs whole
// test binaries with OWL_HOOKS=kprobe), one runtime.
func Options() tool.Options {
	opts := tool.DefaultOptions()
	opts.Prefer = os.Getenv("OWL_HOOKS")
	opts.Runtime = runtime
	return opts
}

// Collect runs tr until the test ends and sends a copy of each event to the
// returned channel. Cleanup stops the reader, checks that nothing was lost
// and closes tr.
func Collect[E any](t testing.TB, tr *tool.Source[E]) <-chan E {
	t.Helper()
	ch := make(chan E, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tr.Run(ctx, func(e *E) {
			select {
			case ch <- *e:
			default:
				t.Errorf("test channel full: event dropped")
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if st, err := tr.Stats(); err != nil || st.Lost() != 0 {
			t.Errorf("lost events: %+v (%v)", st, err)
		}
		tr.Close()
	})
	return ch
}

// Own is Options for the test's own process only (-p): parallel test
// binaries do not see each other's events.
func Own() tool.Options {
	opts := Options()
	opts.Task.PID = os.Getpid()
	return opts
}

// CheckTask checks the task header of an event caused by this process on
// the calling thread: pid, tid, uid, comm, mount namespace and cgroup id.
func CheckTask(t testing.TB, got *event.Task) {
	t.Helper()
	var st unix.Stat_t
	// The calling thread's: /proc/self is the main thread's, which a test
	// that unshared mounts on a locked goroutine may have left in its own
	// namespace (Go wedges, rather than ends, a locked main thread).
	if err := unix.Stat("/proc/thread-self/ns/mnt", &st); err != nil {
		t.Fatal(err)
	}
	want := event.Task{PID: uint32(os.Getpid()), UID: uint32(os.Getuid()), MntNS: uint32(st.Ino)}
	copy(want.Comm[:], Comm(t))
	if got.PID != want.PID || got.UID != want.UID || got.Comm != want.Comm || got.MntNS != want.MntNS {
		t.Errorf("task: got pid %d uid %d comm %q mntns %d, want %d %d %q %d",
			got.PID, got.UID, got.Comm, got.MntNS, want.PID, want.UID, want.Comm, want.MntNS)
	}
	if got.TID == 0 || got.CgroupID == 0 {
		t.Errorf("task: tid %d, cgroup id %d: want both set", got.TID, got.CgroupID)
	}
	if time.Since(got.Time.Time).Abs() > time.Minute {
		t.Errorf("task: time %v is not now", got.Time)
	}
}
