package opensnoop

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tool"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

func open(t *testing.T, cfg Config, opts tool.Options) <-chan Event {
	t.Helper()
	e2e.Require(t)
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return e2e.Collect(t, src)
}

// missing is a path under a directory that does not exist: opening it
// fails with ENOENT, even with O_CREAT.
func missing(t *testing.T, name string) string {
	return filepath.Join(t.TempDir(), "no-such-dir", name)
}

func waitPath(t *testing.T, events <-chan Event, path string) Event {
	t.Helper()
	return e2e.Wait(t, events, 10*time.Second, "the open of "+path, func(e Event) bool { return string(e.Path) == path })
}

// A failing openat from Go: path, flags, mode and errno, on the own pid.
func TestFailingOpenat(t *testing.T) {
	events := open(t, Config{}, e2e.Own())
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	path := missing(t, "owl-create")
	of := unix.O_CREAT | unix.O_WRONLY | unix.O_EXCL | unix.O_CLOEXEC
	if _, err := unix.Openat(unix.AT_FDCWD, path, of, 0o640); err != unix.ENOENT {
		t.Fatalf("openat: %v, want ENOENT", err)
	}
	e := waitPath(t, events, path)
	e2e.CheckTask(t, &e.Task)
	if e.TID != uint32(unix.Gettid()) {
		t.Errorf("tid %d, want %d", e.TID, unix.Gettid())
	}
	if e.Syscall != "openat" || e.FD != -1 || e.Errno != 2 || e.ErrnoName != "ENOENT" ||
		e.Flags != int32(of|unix.O_LARGEFILE) || e.Mode != 0o640 || e.Dfd != unix.AT_FDCWD || e.PathAtExit {
		t.Errorf("got %+v", e)
	}
	f := flags{extended: true}
	row := string(f.table().AppendRow(nil, &e))
	want := fmt.Sprintf("%-6d %-16s %4d %3d %08o %04o %s\n", os.Getpid(), e.Comm.String(), -1, 2, of|unix.O_LARGEFILE, 0o640, path)
	if row != want {
		t.Errorf("row\n%q, want\n%q", row, want)
	}
	if h := string(f.table().AppendHeader(nil)); h != "PID    COMM               FD ERR FLAGS    MODE PATH\n" {
		t.Errorf("header %q: want BCC's", h)
	}
}

// Successful opens through each syscall: the fd returned, no errno.
func TestEachSyscall(t *testing.T) {
	events := open(t, Config{}, e2e.Own())
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	fd, err := unix.Openat(unix.AT_FDCWD, a, unix.O_CREAT|unix.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	e := waitPath(t, events, a)
	if e.Syscall != "openat" || e.FD != int64(fd) || e.Errno != 0 || e.ErrnoName != "" {
		t.Errorf("openat: %+v, want fd %d", e, fd)
	}
	dfd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	fd2, err := unix.Openat2(dfd, "a", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd2)
	e = waitPath(t, events, "a")
	if e.Syscall != "openat2" || e.FD != int64(fd2) || e.Dfd != int32(dfd) || e.Flags != unix.O_RDONLY|unix.O_CLOEXEC || e.HasMode() {
		t.Errorf("openat2: %+v, want fd %d dfd %d", e, fd2, dfd)
	}
	if runtime.GOARCH == "amd64" {
		p, _ := unix.BytePtrFromString(filepath.Join(dir, "open"))
		r, _, errno := unix.Syscall(unix.SYS_OPEN, uintptr(unsafe.Pointer(p)), unix.O_RDONLY, 0)
		if errno != unix.ENOENT {
			t.Fatalf("open(2): %d %v, want ENOENT", r, errno)
		}
		e = waitPath(t, events, filepath.Join(dir, "open"))
		if e.Syscall != "open" || e.Errno != 2 || e.Dfd != unix.AT_FDCWD {
			t.Errorf("open: %+v", e)
		}
	}
}

// A path in a page the process never touched cannot be read at entry
// (BPF cannot fault it in): it is read at exit, once the kernel has.
func TestPathReadAtExit(t *testing.T) {
	events := open(t, Config{}, e2e.Own())
	path := missing(t, "owl-unpaged")
	file := filepath.Join(t.TempDir(), "path")
	if err := os.WriteFile(file, append([]byte(path), 0), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	// Not a byte of mem is read before the call.
	atFDCWD := unix.AT_FDCWD
	_, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFDCWD), uintptr(unsafe.Pointer(unsafe.SliceData(mem))), unix.O_RDONLY, 0, 0, 0)
	if errno != unix.ENOENT {
		t.Fatalf("openat: %v, want ENOENT", errno)
	}
	e := waitPath(t, events, path)
	if !e.PathAtExit || e.Errno != 2 {
		t.Errorf("path_at_exit %v errno %d: want true 2", e.PathAtExit, e.Errno)
	}
}

// -x, -f and -t are applied in the kernel. Events of one thread come in
// order, so an unwanted open made before a wanted one would show first.
func TestFilters(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  func(tid int) Config
		// skip is opened first and must not be printed, then want.
		skip, want func(path string) error
	}{
		{"-x", func(int) Config { return Config{Failed: true} },
			func(p string) error { return openClose(filepath.Dir(filepath.Dir(p)), unix.O_RDONLY) },
			func(p string) error { return openClose(p, unix.O_RDONLY) }},
		{"-f O_WRONLY -f O_CREAT", func(int) Config { return Config{Flags: []string{"O_WRONLY", "O_CREAT"}} },
			func(p string) error { return openClose(p, unix.O_RDWR) },
			func(p string) error { return openClose(p, unix.O_RDWR|unix.O_CREAT) }},
		{"-f O_RDONLY", func(int) Config { return Config{Flags: []string{"O_RDONLY"}} },
			func(p string) error { return openClose(p, unix.O_WRONLY) },
			func(p string) error { return openClose(p, unix.O_RDONLY) }},
		{"-t", func(tid int) Config { return Config{TID: tid} },
			func(p string) error { return onOtherThread(func() error { return openClose(p, unix.O_RDONLY) }) },
			func(p string) error { return openClose(p, unix.O_RDONLY) }},
		{"-n", func(int) Config { return Config{Name: "no-such-comm"} }, nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tid := unix.Gettid()
			events := open(t, c.cfg(tid), e2e.Own())
			path := missing(t, "owl-filter")
			if c.skip == nil {
				openClose(path, unix.O_RDONLY)
				deadline := time.After(500 * time.Millisecond)
				for {
					select {
					case e := <-events:
						t.Errorf("printed %q of comm %q", e.Path, e.Comm.String())
					case <-deadline:
						return
					}
				}
			}
			c.skip(path)
			c.want(path)
			// Opens of this test's directory only: the test's own opens of
			// tracefs while attaching come first.
			root := filepath.Dir(filepath.Dir(path))
			e := e2e.Wait(t, events, 10*time.Second, "an open in "+root, func(e Event) bool { return strings.HasPrefix(string(e.Path), root) })
			if string(e.Path) != path || e.TID != uint32(tid) {
				t.Errorf("first event: %+v; want the second open of %s, on thread %d", e, path, tid)
			}
		})
	}
}

// openClose opens path with flags and closes it; it returns the error.
func openClose(path string, flags int) error {
	fd, err := unix.Openat(unix.AT_FDCWD, path, flags, 0o600)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// onOtherThread runs fn on another OS thread and waits for it.
func onOtherThread(fn func() error) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread() // the thread goes back to the pool unlocked
		done <- fn()
	}()
	return <-done
}

// A one-page ring fills up: every open is delivered or counted as lost.
func TestRingFullCounted(t *testing.T) {
	e2e.Require(t)
	opts := e2e.Own()
	opts.RingBytes = 4096
	src, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dir := missing(t, "")
	const n = 300
	for i := range n {
		openClose(filepath.Join(dir, strconv.Itoa(i)), unix.O_RDONLY)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // deliver what the ring holds, then stop
	got := 0
	if err := src.Run(ctx, func(e *Event) {
		if strings.HasPrefix(string(e.Path), dir) {
			got++
		}
	}); err != nil {
		t.Fatal(err)
	}
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got+int(st.RingFull) != n || st.RingFull == 0 {
		t.Errorf("%d opens: %d delivered + %d ring_full, want the sum to be %d with some lost", n, got, st.RingFull, n)
	}
}

func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"-f", "O_NOPE"}, `unknown flag "O_NOPE"`},
		{[]string{"-f", "wronly"}, "unknown flag"},
		{[]string{"-t", "0"}, "--tid 0"},
		{[]string{"-d", "0"}, "--duration 0"},
		{[]string{"-p", "-3"}, "--pid -3"},
	} {
		cmd := Tool.Command()
		cmd.SetArgs(c.args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		if err == nil || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("opensnoop %q: %v (status %d); want one line saying %q, status 2", c.args, err, cli.ExitCode(err), c.says)
		}
	}
}

// Side by side with bpftrace's opensnoop.bt and libbpf-tools' opensnoop
// on one workload of opens that succeed and fail: every open of the
// workload either peer reports, owl reports too, with the same pid, fd,
// errno and path.
func TestSameOpensAsPeers(t *testing.T) {
	events := open(t, Config{}, e2e.Own())
	bpftrace, err := exec.LookPath("bpftrace")
	if err != nil {
		bpftrace = "/usr/bin/bpftrace" // StartTracer skips or fails on it
	}
	bt := e2e.StartTracer(t, bpftrace, "-B", "line", "/usr/sbin/opensnoop.bt")
	bt.WaitLine(t, "PID")
	lt := e2e.StartTracer(t, "/usr/sbin/opensnoop", "-p", strconv.Itoa(os.Getpid()))
	lt.WaitLinks(t, 2)

	dir := t.TempDir()
	var fds []int
	for i := range 12 {
		path := filepath.Join(dir, "f"+strconv.Itoa(i))
		flags := unix.O_RDONLY // fails: not there yet
		if i%2 == 0 {
			flags = unix.O_CREAT | unix.O_WRONLY
		}
		if fd, err := unix.Openat(unix.AT_FDCWD, path, flags, 0o600); err == nil {
			fds = append(fds, fd) // kept open: each open gets its own fd
		}
	}
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	ours := map[string]bool{} // "PID FD ERR PATH"
	for i := range 12 {
		e := waitPath(t, events, filepath.Join(dir, "f"+strconv.Itoa(i)))
		ours[fmt.Sprintf("%d %d %d %s", e.PID, e.FD, e.Errno, e.Path)] = true
	}
	// Both print PID COMM FD ERR PATH.
	workload := func(l string) ([]string, bool) {
		f := strings.Fields(l)
		return f, len(f) >= 5 && f[0] == strconv.Itoa(os.Getpid()) && strings.HasPrefix(f[4], dir+"/")
	}
	for _, c := range []struct {
		name string
		peer *e2e.Tracer
	}{
		{"bpftrace opensnoop.bt", bt},
		{"libbpf-tools opensnoop -p", lt},
	} {
		// Give the peer time to print what it has read: it drops what it
		// has not when it gets SIGINT.
		c.peer.WaitLines(func(l string) bool { _, ok := workload(l); return ok }, 12, 10*time.Second)
		matched := 0
		for _, l := range c.peer.Stop(t) {
			f, ok := workload(l)
			if !ok {
				continue
			}
			key := strings.Join([]string{f[0], f[2], f[3], f[4]}, " ")
			if !ours[key] {
				t.Errorf("%s reported %q, owl did not (owl: %q)", c.name, key, slices.Sorted(maps.Keys(ours)))
				continue
			}
			matched++
		}
		t.Logf("%s: %d of the workload's 12 opens reported, all of them by owl too", c.name, matched)
		if matched == 0 {
			t.Errorf("%s reported none of the workload's opens: nothing compared", c.name)
		}
	}
}
