package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
)

// eperms makes n failed syscalls (EPERM) from this process: ptrace may not
// attach to its own thread group, root or not.
func eperms(n int) {
	for range n {
		unix.PtraceAttach(os.Getpid())
	}
}

// owl eperm -e | (sleep 12; wc -l): a SIGTERM must end owl promptly even
// while its output is a full pipe nobody reads; the events it could not
// write are counted as output queue loss on stderr, and nothing stays
// attached.
func TestSignalStopsOwlBlockedOnOutput(t *testing.T) {
	e2e.Require(t)
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) { signalBlocked(t, format) })
	}
}

func signalBlocked(t *testing.T, format string) {
	o := start(t, "eperm", "-e", "-o", format, "-p", strconv.Itoa(os.Getpid()))
	ids := linkIDs(t, o.cmd.Process.Pid)
	// Nobody reads owl's stdout: make failures until owl is stuck in
	// write(2) on it, then more, so that events are queued behind.
	deadline := time.Now().Add(10 * time.Second)
	for !writingStdout(t, o.cmd.Process.Pid) {
		eperms(1000)
		if time.Now().After(deadline) {
			t.Fatal("owl not blocked writing its stdout after 10 s of failures")
		}
	}
	eperms(20000)
	time.Sleep(300 * time.Millisecond) // owl reads the ring and queues the events

	exited := make(chan error, 1)
	stderr := make(chan string, 1)
	go func() {
		stderr <- o.rest() // until owl exits and closes it
		exited <- o.cmd.Wait()
	}()
	signaled := time.Now()
	o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("owl after SIGTERM with blocked output: %v, want status 0", err)
		}
	// drainGrace (1 s) and detaching: ~2 s here, over 3 s at times in
	// the 6.12 qemu guest (TCG). Blocked for good, it would never exit.
	case <-time.After(10 * time.Second):
		t.Fatalf("owl still runs 10 s after SIGTERM while its output is blocked")
	}
	t.Logf("owl exited %v after SIGTERM", time.Since(signaled).Round(time.Millisecond))
	msg := <-stderr
	t.Logf("stderr: %s", msg)
	m := regexp.MustCompile(`(\d+) output queue full`).FindStringSubmatch(msg)
	if m == nil || m[1] == "0" {
		t.Errorf("stderr %q: want the unwritten events counted as output queue full", msg)
	}
	if !regexp.MustCompile(`\d+ events not written`).MatchString(msg) {
		t.Errorf("stderr %q: want it to say how many events were not written", msg)
	}
	for _, id := range ids {
		if l, err := link.NewFromID(id); err == nil {
			l.Close()
			t.Errorf("link %d still attached after owl exited", id)
		}
	}
}

// writingStdout tells whether a thread of process pid is in write(2) on
// fd 1, from /proc/PID/task/TID/syscall ("NR ARG1 ...").
func writingStdout(t *testing.T, pid int) bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name(), "syscall"))
		f := strings.Fields(string(b))
		if len(f) > 1 && f[0] == strconv.Itoa(unix.SYS_WRITE) && f[1] == "0x1" {
			return true
		}
	}
	return false
}
