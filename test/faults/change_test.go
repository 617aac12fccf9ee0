package faults

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tools"
)

// endsWith checks that owl ended by itself within timeout with status 0
// and a stderr line holding want, without a crash, leaving none of its
// BPF objects behind.
func endsWith(t *testing.T, r *owlRun, want string, timeout time.Duration) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		t.Fatalf("owl %v still runs %v after its process exited; stderr:\n%s", r.args, timeout, r.errText())
	}
	if st := r.status(); st != "exit 0" {
		t.Errorf("owl %v: %s, want exit 0; stderr:\n%s", r.args, st, r.errText())
	}
	if !strings.Contains(r.errText(), want) {
		t.Errorf("owl %v: stderr %q, want a line with %q", r.args, r.errText(), want)
	}
	if r.crashed() {
		t.Errorf("owl %v crashed; stderr:\n%s", r.args, r.errText())
	}
	if left := stillThere(r.objects()); len(left) > 0 {
		t.Errorf("owl %v: %d BPF objects still in the kernel: %v", r.args, len(left), left)
	}
}

// -p of a process that exits ends every tool that takes -p, with one line
// ("owl: process N exited") and status 0: owl holds a pidfd of the
// process, so a recycled pid is never traced in its place.
func TestPIDExitEndsTool(t *testing.T) {
	skipInGuest(t)
	e2e.Require(t)
	w := newWorld(t)
	for _, tl := range tools.All() {
		info := tl.Info()
		if !info.Task {
			continue // no -p
		}
		t.Run(info.Name, func(t *testing.T) {
			// Mostly waiting for owl to start: two at a time.
			t.Parallel()
			var p *proc
			switch tg := targets[info.Name]; {
			case tg.python:
				p = startPython(t, nil)
			case tg.bash:
				p = startBash(t)
			default:
				p = startSpin(t)
			}
			argv := w.argv(t, info.Name, p.pidArg())
			r := startOwl(t, argv...)
			if !r.waitReady(60 * time.Second) {
				r.waitExit(t, 10*time.Second)
				if why := r.unavailable(); why != "" {
					t.Skipf("no hook for %s on this kernel: %s", info.Name, why)
				}
				t.Fatalf("owl %v: %s before the Tracing line; stderr:\n%s", argv, r.status(), r.errText())
			}
			time.Sleep(200 * time.Millisecond)
			p.kill()
			endsWith(t, r, "owl: process "+p.pidArg()+" exited", 15*time.Second)
		})
	}
}

// The -p process exits while owl starts (reading its maps, files, probes):
// owl ends with status 0 and says so, or, when the process was gone before
// owl looked, refuses the pid (status 2, one line); never anything else.
func TestPIDExitWhileStarting(t *testing.T) {
	skipInGuest(t)
	e2e.Require(t)
	rng := seed(t)
	w := newWorld(t)
	runs := 3
	if soak {
		runs = 20
	}
	for _, name := range []string{"opensnoop", "funccount", "ucalls"} {
		t.Run(name, func(t *testing.T) {
			for range runs {
				var p *proc
				if targets[name].python {
					p = startPython(t, nil)
				} else {
					p = startSpin(t)
				}
				argv := w.argv(t, name, p.pidArg())
				r := startOwl(t, argv...)
				time.Sleep(time.Duration(rng.Int64N(int64(500 * time.Millisecond))))
				p.kill()
				r.waitExit(t, 30*time.Second)
				msg := r.errText()
				switch st := r.status(); {
				case st == "exit 0" && strings.Contains(msg, "owl: process "+p.pidArg()+" exited"):
				case st == "exit 2" && strings.TrimSpace(msg) == "owl: --pid "+p.pidArg()+": no such process":
				default:
					t.Errorf("owl %v, its process killed while it started: %s; stderr:\n%s", argv, st, msg)
				}
				if r.crashed() {
					t.Errorf("owl %v crashed; stderr:\n%s", argv, msg)
				}
				if left := stillThere(r.objects()); len(left) > 0 {
					t.Errorf("owl %v: BPF objects still in the kernel: %v", argv, left)
				}
			}
		})
	}
}

// A traced process execs (same pid, new image): owl keeps tracing it,
// then ends when it exits. An exec from a thread other than the leader
// leaves the kernel's uprobe filter on a thread that is gone: owl attaches
// them again and says so.
func TestExecMidTrace(t *testing.T) {
	skipInGuest(t)
	e2e.Require(t)
	w := newWorld(t)
	marker := filepath.Join(t.TempDir(), "after-exec")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, from string }{
		{"opensnoop", "leader"}, {"opensnoop", "thread"}, {"funccount", "leader"}, {"funccount", "thread"},
	} {
		name := c.name
		t.Run(name+"/"+c.from, func(t *testing.T) {
			p := startProc(t, nil, e2e.Child("execer", c.from, marker), "")
			argv := w.argv(t, name, p.pidArg())
			r := startOwl(t, argv...)
			if !r.waitReady(60 * time.Second) {
				t.Fatalf("owl %v: %s; stderr:\n%s", argv, r.status(), r.errText())
			}
			io.WriteString(p.stdin, "exec\n")
			if name == "opensnoop" && !r.waitOut(marker, 10*time.Second) {
				t.Errorf("owl %v: no open of %s by the new image; stdout:\n%s", argv, marker, r.outText())
			}
			// The new image's first spinWork call, however slowly it starts.
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(marker + ".spun"); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the exec'd image never called spinWork (no %s.spun)", marker)
				}
			}
			time.Sleep(100 * time.Millisecond)
			if !r.running() {
				t.Fatalf("owl %v ended when its process exec'd: %s; stderr:\n%s", argv, r.status(), r.errText())
			}
			p.stdin.Close() // the new image ends
			endsWith(t, r, "owl: process "+p.pidArg()+" exited", 15*time.Second)
			if name == "funccount" && !strings.Contains(r.outText(), "spinWork") {
				t.Errorf("owl %v counted no spinWork calls of the new image; stdout:\n%s", argv, r.outText())
			}
			// Only uprobes are filtered on a thread; opensnoop has none.
			said := strings.Contains(r.errText(), "owl: process "+p.pidArg()+" exec'd from thread ")
			if want := name == "funccount" && c.from == "thread"; said != want {
				t.Errorf("owl %v: said it attached uprobes again: %v, want %v; stderr:\n%s", argv, said, want, r.errText())
			}
		})
	}
}

// copyFile copies this test binary to path: a file to replace and delete.
func copyExe(t *testing.T, exe, path string) {
	t.Helper()
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// The file a tool probes is replaced on disk (a new inode moved over it)
// and then deleted while the process that runs it goes on: owl keeps
// tracing the old inode (uprobes hold it), names the function (stacks,
// counts) and ends cleanly. Then a tool started with -p on the process
// whose binary is gone finds the function through the process.
func TestProbedFileReplacedAndDeleted(t *testing.T) {
	skipInGuest(t)
	e2e.Require(t)
	w := newWorld(t)
	for name, tg := range targets {
		if !tg.file {
			continue
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			app := filepath.Join(dir, "app")
			copyExe(t, w.exe, app)
			cmd := exec.Command(app)
			cmd.Env = append(os.Environ(), "OWL_E2E_CHILD=spin")
			p := startProc(t, nil, cmd, "ready")
			argv := append([]string{name, goFunc(app)}, targets[name].args...)
			r := startOwl(t, argv...)
			if !r.waitReady(60 * time.Second) {
				t.Fatalf("owl %v: %s; stderr:\n%s", argv, r.status(), r.errText())
			}
			time.Sleep(200 * time.Millisecond)
			copyExe(t, w.exe, app+".new")
			if err := os.Rename(app+".new", app); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
			if err := os.Remove(app); err != nil {
				t.Fatal(err)
			}
			lines := r.stdoutLines()
			time.Sleep(300 * time.Millisecond)
			if !r.running() {
				t.Fatalf("owl %v ended when its file was replaced and deleted: %s; stderr:\n%s", argv, r.status(), r.errText())
			}
			if name == "trace" && r.stdoutLines() <= lines {
				t.Errorf("owl %v: no calls traced after the file was deleted (%d lines before, %d after)", argv, lines, r.stdoutLines())
			}
			r.signal(syscall.SIGINT)
			r.waitExit(t, 30*time.Second)
			check(t, r, fault{syscall.SIGINT, streaming})
			if name != "funclatency" && !strings.Contains(r.outText(), "spinWork") {
				t.Errorf("owl %v: spinWork not named in its output:\n%s", argv, r.outText())
			}

			// The binary is gone from disk; -p finds it through the process.
			argv = append([]string{name, spinWorkName}, targets[name].args...)
			argv = append(argv, "-p", p.pidArg())
			r = startOwl(t, argv...)
			if !r.waitReady(60 * time.Second) {
				t.Fatalf("owl %v, its process's binary deleted: %s; stderr:\n%s", argv, r.status(), r.errText())
			}
			time.Sleep(300 * time.Millisecond)
			r.signal(syscall.SIGINT)
			r.waitExit(t, 30*time.Second)
			check(t, r, fault{syscall.SIGINT, streaming})
			if name != "funclatency" && !strings.Contains(r.outText(), "spinWork") {
				t.Errorf("owl %v: spinWork not named in its output:\n%s", argv, r.outText())
			}
		})
	}
}

// A traced container's mount namespace goes away (its only process, in a
// mount namespace of its own, exits): owl --mntns, given the namespace's
// inode or its path, keeps running (nothing matches any more) and ends
// cleanly on Ctrl-C.
func TestMountNamespaceGoesAway(t *testing.T) {
	skipInGuest(t)
	e2e.Require(t)
	for _, how := range []string{"inode", "path"} {
		t.Run(how, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "in-namespace")
			if err := os.WriteFile(marker, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			p, ino := nsChild(t, marker)
			ns := strconv.FormatUint(ino, 10)
			if how == "path" {
				ns = "/proc/" + p.pidArg() + "/ns/mnt"
			}
			argv := []string{"opensnoop", "--mntns", ns}
			r := startOwl(t, argv...)
			if !r.waitReady(60 * time.Second) {
				t.Fatalf("owl %v: %s; stderr:\n%s", argv, r.status(), r.errText())
			}
			if !r.waitOut(marker, 10*time.Second) {
				t.Errorf("owl %v: no open of %s in the namespace; stdout:\n%s", argv, marker, r.outText())
			}
			p.stdin.Close() // its only process ends: the namespace goes
			<-p.done
			time.Sleep(500 * time.Millisecond)
			if !r.running() {
				t.Fatalf("owl %v ended when the namespace went away: %s; stderr:\n%s", argv, r.status(), r.errText())
			}
			r.signal(syscall.SIGINT)
			r.waitExit(t, 30*time.Second)
			check(t, r, fault{syscall.SIGINT, streaming})
		})
	}
}

// nsChild starts opener(marker) in a mount namespace of its own and
// returns it with the namespace's inode, once it is in it.
func nsChild(t *testing.T, marker string) (*proc, uint64) {
	t.Helper()
	cmd := e2e.Child("opener", marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	p := startProc(t, nil, cmd, "")
	var self, st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/mnt", &self); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := syscall.Stat("/proc/"+p.pidArg()+"/ns/mnt", &st); err == nil && st.Ino != self.Ino {
			return p, st.Ino
		}
		if time.Now().After(deadline) {
			t.Fatal("the child is not in a mount namespace of its own")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
