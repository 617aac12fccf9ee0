package agent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
)

// setresuids makes n setresuid(-1, -1, -1) calls (which change nothing)
// on one thread and returns its tid: raw, so that each is one call
// (Go's wrapper repeats it on every thread).
func setresuids(n int) int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for range n {
		unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), ^uintptr(0), ^uintptr(0))
	}
	return unix.Gettid()
}

// records is enough setuids records to pass a rotation size of 1 MiB
// (a record is ~500 bytes).
const records = 4000

// devNullOK reports whether /dev/null is still the null device, and puts
// it back if not (a sink that rotated it renamed it and made a regular
// file in its place).
func devNullOK(t *testing.T) bool {
	t.Helper()
	var st unix.Stat_t
	ok := unix.Stat("/dev/null", &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == unix.Mkdev(1, 3)
	if !ok {
		os.Remove("/dev/null")
		if err := unix.Mknod("/dev/null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Errorf("restoring /dev/null: %v (rm -f /dev/null; mknod -m 666 /dev/null c 1 3)", err)
		}
		unix.Chmod("/dev/null", 0o666)
	}
	if old, _ := filepath.Glob("/dev/null-*"); len(old) > 0 {
		t.Errorf("rotated copies of /dev/null: %v", old)
		for _, p := range old {
			os.Remove(p)
		}
	}
	return ok
}

// The JSON sink writes to /dev/null past its rotation size without
// rotating it: /dev/null stays the null device.
func TestJSONDevNull(t *testing.T) {
	e2e.Require(t)
	t.Cleanup(func() { devNullOK(t) })
	port := freePort(t)
	a := startAgent(t, fmt.Sprintf("tools: [{name: setuids, pid: %d}]\n", os.Getpid()),
		"--json", "/dev/null", "--json-max-size-mb", "1", "--json-max-backups", "1",
		"--metrics-address", fmt.Sprintf("127.0.0.1:%d", port))
	a.metrics = fmt.Sprintf("127.0.0.1:%d", port)
	setresuids(records)
	deadline := time.Now().Add(30 * time.Second)
	for a.Metric(t, `owl_export_records_total{sink="json"}`) < records && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	written := a.Metric(t, `owl_export_records_total{sink="json"}`)
	failed := a.Metric(t, `owl_export_failed_records_total{sink="json"}`)
	stopProcess(a.cmd)
	t.Logf("%.0f records written to /dev/null, %.0f failed", written, failed)
	if written < records || failed != 0 {
		t.Errorf("%d setresuid calls: %.0f records written, %.0f failed", records, written, failed)
	}
	if !devNullOK(t) {
		t.Errorf("/dev/null is no longer the null device")
	}
}

// The JSON sink writes to a fifo plainly: every record reaches the reader
// past the rotation size, and the fifo stays a fifo.
func TestJSONFifo(t *testing.T) {
	e2e.Require(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "events")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// The reader: it opens the fifo (waiting for the agent) and counts
	// the records of this process's thread, which it learns once the
	// calls are made.
	tidc := make(chan int, 1)
	type result struct {
		lines, ours, bytes int
		err                error
	}
	done := make(chan result, 1)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer f.Close()
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		tid := <-tidc
		r := result{lines: len(lines), err: sc.Err()}
		for _, l := range lines {
			r.bytes += len(l) + 1
			if strings.Contains(l, fmt.Sprintf(`"tid":%d,`, tid)) && strings.Contains(l, `"tool":"setuids"`) {
				r.ours++
			}
		}
		done <- r
	}()
	port := freePort(t)
	a := startAgent(t, fmt.Sprintf("tools: [{name: setuids, pid: %d}]\n", os.Getpid()),
		"--json", fifo, "--json-max-size-mb", "1", "--json-max-backups", "1",
		"--metrics-address", fmt.Sprintf("127.0.0.1:%d", port))
	a.metrics = fmt.Sprintf("127.0.0.1:%d", port)
	tidc <- setresuids(records)
	deadline := time.Now().Add(30 * time.Second)
	for a.Metric(t, `owl_export_records_total{sink="json"}`) < records && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	stopProcess(a.cmd) // closes the fifo: the reader sees its end
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the fifo's reader saw no end")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("%d lines (%d bytes) through the fifo, %d of this test's %d calls", r.lines, r.bytes, r.ours, records)
	if r.bytes <= 1<<20 {
		t.Errorf("%d bytes: not past the rotation size", r.bytes)
	}
	if r.ours != records {
		t.Errorf("%d setresuid calls, %d records through the fifo", records, r.ours)
	}
	st, err := os.Lstat(fifo)
	if err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("%s is no longer a fifo: %v %v", fifo, st.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files beside the fifo (rotated copies?): %v", ents)
	}
}

// A JSON path that cannot be written is bad input: exit 2 and one line,
// before any tool starts.
func TestJSONBadPath(t *testing.T) {
	e2e.Require(t)
	for _, c := range []struct{ path, want string }{
		{t.TempDir(), "is a directory"},
		{"/nonexistent-owl-dir/events.json", "no such file or directory"},
		// sysfs refuses writing a read-only attribute, even to root.
		{"/sys/kernel/btf/vmlinux", "permission denied"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, owlBin, "agent", "--tools", "setuids", "--json", c.path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("--json %s: %v, want exit status 2; stderr:\n%s", c.path, err, stderr.String())
			continue
		}
		msg := strings.TrimSuffix(stderr.String(), "\n")
		if strings.Contains(msg, "\n") || !strings.Contains(msg, c.path) || !strings.Contains(msg, c.want) {
			t.Errorf("--json %s: stderr %q, want one line naming the path and %q", c.path, msg, c.want)
		}
	}
}

// A regular file is still rotated by size.
func TestJSONFileRotates(t *testing.T) {
	e2e.Require(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "events.json")
	a := startAgent(t, fmt.Sprintf("tools: [{name: setuids, pid: %d}]\njson: %s\njson-max-size-mb: 1\njson-max-backups: 2\n", os.Getpid(), out))
	setresuids(3 * records)
	// Stopping drains the ring: every record is written by the time the
	// agent exits.
	stopProcess(a.cmd)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	t.Logf("files: %v", names)
	if len(ents) < 2 {
		t.Errorf("no rotation past 1 MiB: %v", names)
	}
}
