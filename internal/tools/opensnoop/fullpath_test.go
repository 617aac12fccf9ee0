package opensnoop

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
)

// onOwnThread runs fn on a new OS thread that first unshares flags
// (CLONE_FS: its own cwd, so chdir does not move the other tests;
// CLONE_NEWNS: its own mounts). The thread stays locked and so ends with
// fn: it never goes back to Go's pool with its own cwd or mounts.
func onOwnThread(flags int, fn func() error) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(flags); err != nil {
			done <- fmt.Errorf("unshare: %w", err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// tempDir is t.TempDir without symbolic links: the kernel's walk gives the
// real directories.
func tempDir(t *testing.T) string {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// openAt opens path relative to dfd read-only and closes it; the error is
// the open's.
func openAt(dfd int, path string) error {
	fd, err := unix.Openat(dfd, path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return err
}

// fullAndPlain traces the test's process twice, with -F and without.
func fullAndPlain(t *testing.T) (full, plain <-chan Event) {
	return open(t, Config{FullPath: true}, e2e.Own()), open(t, Config{}, e2e.Own())
}

// waitRel waits for the open of the relative path rel on both sources and
// checks the one without -F: the path as given, no full path.
func waitRel(t *testing.T, full, plain <-chan Event, rel string) Event {
	t.Helper()
	p := waitPath(t, plain, rel)
	if p.FullPath != "" || p.FullPathTruncated {
		t.Errorf("without -F: full_path %q truncated %v, want none", p.FullPath, p.FullPathTruncated)
	}
	var f flags
	if row := string(f.table().AppendRow(nil, &p)); !strings.HasSuffix(row, " "+rel+"\n") {
		t.Errorf("without -F the row is %q: want it to end with the path as given, %q", row, rel)
	}
	return waitPath(t, full, rel)
}

func checkFull(t *testing.T, e Event, want string) {
	t.Helper()
	if string(e.FullPath) != want || e.FullPathTruncated {
		t.Errorf("%s %q: full path %q (truncated %v), want %q", e.Syscall, e.Path, e.FullPath, e.FullPathTruncated, want)
	}
	f := flags{cfg: Config{FullPath: true}}
	if row := string(f.table().AppendRow(nil, &e)); !strings.HasSuffix(row, " "+want+"\n") {
		t.Errorf("-F row %q: want it to end with %q", row, want)
	}
}

// A path relative to the cwd (a thread's own, set with chdir) is joined to
// it; an absolute one is kept; the cwd "/" gives no double slash.
func TestFullPathCwd(t *testing.T) {
	full, plain := fullAndPlain(t)
	dir := tempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "owl-cwd-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(dir, "owl-abs-missing")
	err := onOwnThread(unix.CLONE_FS, func() error {
		if err := unix.Chdir(dir); err != nil {
			return err
		}
		if err := openAt(unix.AT_FDCWD, "owl-cwd-file"); err != nil {
			return err
		}
		openAt(unix.AT_FDCWD, "./no-such-dir/../owl-cwd-missing") // ENOENT
		openAt(unix.AT_FDCWD, abs)
		if err := unix.Chdir("/"); err != nil {
			return err
		}
		openAt(unix.AT_FDCWD, "owl-at-root-missing")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e := waitRel(t, full, plain, "owl-cwd-file")
	checkFull(t, e, dir+"/owl-cwd-file")
	if e.FD < 0 || e.Dfd != unix.AT_FDCWD {
		t.Errorf("event %+v: want a successful open at AT_FDCWD", e)
	}
	// Joined as given: ".." is not cleaned away (no-such-dir does not exist).
	e = waitRel(t, full, plain, "./no-such-dir/../owl-cwd-missing")
	checkFull(t, e, dir+"/./no-such-dir/../owl-cwd-missing")
	if e.Errno != int(unix.ENOENT) {
		t.Errorf("errno %d, want ENOENT", e.Errno)
	}
	checkFull(t, waitPath(t, full, abs), abs)
	checkFull(t, waitRel(t, full, plain, "owl-at-root-missing"), "/owl-at-root-missing")
}

// A path relative to a dfd is joined to dfd's directory (not the cwd), for
// openat and openat2; a dfd that is not open leaves the path as given.
func TestFullPathDfd(t *testing.T) {
	full, plain := fullAndPlain(t)
	dir := tempDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "d", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "d", "sub", "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dfd, err := unix.Open(filepath.Join(dir, "d"), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	if err := openAt(dfd, "sub/f"); err != nil {
		t.Fatal(err)
	}
	e := waitRel(t, full, plain, "sub/f")
	checkFull(t, e, dir+"/d/sub/f")
	if e.Syscall != "openat" || e.Dfd != int32(dfd) || e.FD < 0 {
		t.Errorf("event %+v: want a successful openat at dfd %d", e, dfd)
	}
	fd, err := unix.Openat2(dfd, "sub/../sub/f", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH})
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	e = waitRel(t, full, plain, "sub/../sub/f")
	checkFull(t, e, dir+"/d/sub/../sub/f")
	if e.Syscall != "openat2" {
		t.Errorf("syscall %s, want openat2", e.Syscall)
	}

	// A closed descriptor (below and above the table's size).
	closed, err := unix.Dup(dfd)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(closed)
	for _, bad := range []int{closed, 1 << 20} {
		rel := "owl-bad-dfd-" + strconv.Itoa(bad)
		if err := openAt(bad, rel); err != unix.EBADF {
			t.Fatalf("openat(%d): %v, want EBADF", bad, err)
		}
		e := waitRel(t, full, plain, rel)
		if e.FullPath != "" || e.FullPathTruncated || e.Errno != int(unix.EBADF) {
			t.Errorf("dfd %d: %+v, want EBADF and no full path", bad, e)
		}
		f := flags{cfg: Config{FullPath: true}}
		if row := string(f.table().AppendRow(nil, &e)); !strings.HasSuffix(row, " "+rel+"\n") {
			t.Errorf("-F row %q: want the path as given", row)
		}
	}
}

// Mount points are crossed: a tmpfs, a bind mount of a directory of it and
// /proc, in a mount namespace of the test's own (on one thread), so the
// host's mounts do not change.
func TestFullPathMounts(t *testing.T) {
	full, plain := fullAndPlain(t)
	dir := tempDir(t)
	mnt, bind := filepath.Join(dir, "tmpfs"), filepath.Join(dir, "bind")
	for _, d := range []string{mnt, bind} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var procDir string
	err := onOwnThread(unix.CLONE_NEWNS, func() error {
		// Nothing done here propagates to the host's namespace.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make / private: %w", err)
		}
		if err := unix.Mount("owl-test", mnt, "tmpfs", 0, "size=64k"); err != nil {
			return fmt.Errorf("mount tmpfs: %w", err)
		}
		if err := os.MkdirAll(filepath.Join(mnt, "a", "b"), 0o755); err != nil {
			return err
		}
		if err := unix.Mount(filepath.Join(mnt, "a"), bind, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind mount: %w", err)
		}
		for _, cwd := range []string{filepath.Join(mnt, "a"), filepath.Join(bind, "b")} {
			if err := unix.Chdir(cwd); err != nil {
				return err
			}
			openAt(unix.AT_FDCWD, "owl-in-"+filepath.Base(cwd)) // ENOENT
		}
		// /proc/self/fdinfo is /proc/PID/fdinfo: proc's own dentries.
		procDir = fmt.Sprintf("/proc/%d/fdinfo", os.Getpid())
		if err := unix.Chdir("/proc/self/fdinfo"); err != nil {
			return err
		}
		return openAt(unix.AT_FDCWD, "0")
	})
	if err != nil {
		t.Fatal(err)
	}
	checkFull(t, waitRel(t, full, plain, "owl-in-a"), mnt+"/a/owl-in-a")
	// Through the bind mount: the path it is mounted at, not the source's.
	checkFull(t, waitRel(t, full, plain, "owl-in-b"), bind+"/b/owl-in-b")
	checkFull(t, waitRel(t, full, plain, "0"), procDir+"/0")
}

// The walk stops at DirDepth names or DirBytes bytes: the innermost names
// are kept after ".../", and the event says it was cut.
func TestFullPathTruncated(t *testing.T) {
	full := open(t, Config{FullPath: true}, e2e.Own())
	for _, c := range []struct {
		name      string
		levels    int
		component string
		kept      int // innermost names kept
	}{
		{"depth", DirDepth + 8, "d", DirDepth},
		// 255-byte names take 256 bytes each; one starts only while
		// 256 bytes are left.
		{"bytes", 20, strings.Repeat("n", 255), DirBytes / 256},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := tempDir(t)
			rel := "owl-deep-" + c.name
			err := onOwnThread(unix.CLONE_FS, func() error {
				if err := unix.Chdir(dir); err != nil {
					return err
				}
				// One level at a time: the whole path is longer than
				// PATH_MAX with the long names.
				for range c.levels {
					if err := os.Mkdir(c.component, 0o755); err != nil {
						return err
					}
					if err := unix.Chdir(c.component); err != nil {
						return err
					}
				}
				openAt(unix.AT_FDCWD, rel)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			e := waitPath(t, full, rel)
			want := ".../" + strings.Repeat(c.component+"/", c.kept) + rel
			if string(e.FullPath) != want || !e.FullPathTruncated {
				t.Errorf("full path %q (truncated %v), want %q (truncated)", e.FullPath, e.FullPathTruncated, want)
			}
		})
	}
}

// owl opensnoop -F: rows with the full path, and on exit how many were
// cut.
func TestFullPathCommand(t *testing.T) {
	e2e.Require(t)
	dir := tempDir(t)
	cmd := Tool.Command()
	var stdout e2e.SyncBuffer
	stderr := &readyWriter{ready: make(chan struct{})}
	cmd.SetOut(&stdout)
	cmd.SetErr(stderr)
	cmd.SetArgs([]string{"-F", "-d", "2", "-p", strconv.Itoa(os.Getpid())})
	done := make(chan error, 1)
	go func() { done <- cmd.Execute() }()
	select {
	case <-stderr.ready:
	case err := <-done:
		t.Fatalf("opensnoop ended before tracing: %v", err)
	}
	err := onOwnThread(unix.CLONE_FS, func() error {
		if err := unix.Chdir(dir); err != nil {
			return err
		}
		openAt(unix.AT_FDCWD, "owl-cmd-shallow")
		for range DirDepth + 1 {
			if err := os.Mkdir("d", 0o755); err != nil {
				return err
			}
			if err := unix.Chdir("d"); err != nil {
				return err
			}
		}
		openAt(unix.AT_FDCWD, "owl-cmd-deep")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	for _, want := range []string{" " + dir + "/owl-cmd-shallow\n", " .../" + strings.Repeat("d/", DirDepth) + "owl-cmd-deep\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks a row ending with %q:\n%s", want, out)
		}
	}
	if msg := "owl: 1 full paths were cut"; !strings.Contains(stderr.String(), msg) {
		t.Errorf("stderr %q: want %q", stderr.String(), msg)
	}
}

// readyWriter closes ready once the command says it is tracing.
type readyWriter struct {
	e2e.SyncBuffer
	ready chan struct{}
	once  sync.Once
}

func (w *readyWriter) Write(p []byte) (int, error) {
	n, err := w.SyncBuffer.Write(p)
	if strings.Contains(w.SyncBuffer.String(), "Hit Ctrl-C to end.") {
		w.once.Do(func() { close(w.ready) })
	}
	return n, err
}
