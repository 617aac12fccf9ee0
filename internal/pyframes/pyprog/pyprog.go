// Package pyprog runs the Python programs the end-to-end tests of Python
// frames trace: leaf() called by mid() called by top(), leaf opening a
// file or connecting, from the main thread or another one, on each Python
// interpreter the machine has.
package pyprog

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/syms"
)

// Debian is the interpreter every test needs (apt python3.11).
const Debian = "/usr/bin/python3.11"

// Interp is a Python interpreter to test with.
type Interp struct {
	Name string // "debian-3.11", "pyenv-3.12.1"
	Path string
}

// pyenvVersions are the pyenv builds tested when present.
var pyenvVersions = []string{"3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0"}

// Interps returns Debian's python3.11 (the test fails without it: make
// test installs it) and the pyenv builds present under /root/.pyenv; the
// absent ones are logged as skipped.
func Interps(t *testing.T) []Interp {
	t.Helper()
	if _, err := os.Stat(Debian); err != nil {
		if e2e.InGuest() {
			// The qemu guests have busybox and the test binaries, no Python.
			t.Skipf("%s is not in the qemu guest: Python frames are tested on the host", Debian)
		}
		t.Fatalf("%s: %v (apt-get install python3.11; make test installs it)", Debian, err)
	}
	out := []Interp{{"debian-3.11", Debian}}
	for _, v := range pyenvVersions {
		minor := v[:strings.LastIndexByte(v, '.')]
		p := filepath.Join("/root/.pyenv/versions", v, "bin", "python"+minor)
		if _, err := os.Stat(p); err != nil {
			t.Logf("pyenv %s: not installed here (%s), not tested", v, p)
			continue
		}
		out = append(out, Interp{"pyenv-" + v, p})
	}
	return out
}

// script opens (or connects to) ARG from leaf(), on "go" from stdin, then
// waits for stdin to close: its code objects stay in memory until the
// test has read the frames. The markers name the lines the frames must
// carry.
const script = `import os, socket, sys, threading

MODE, ARG = sys.argv[1], sys.argv[2]

def leaf():
    if MODE.startswith("connect"):
        host, port = ARG.rsplit(":", 1)
        socket.create_connection((host, int(port))).close()  # LEAF
    else:
        with open(ARG, "w") as f:  # LEAF
            f.write("x")

def mid():
    leaf()  # MID

def top():
    mid()  # TOP

print("ready", flush=True)
sys.stdin.readline()
if MODE.endswith("thread"):
    t = threading.Thread(target=top)
    t.start()
    t.join()
else:
    top()  # MODULE
print("done", flush=True)
sys.stdin.read()
`

// Prog is a running program.
type Prog struct {
	Cmd    *exec.Cmd
	Path   string // the script
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

// Start starts the program with python: mode is "open", "open-thread",
// "connect" or "connect-thread", arg the path to open or the HOST:PORT to
// connect to. It returns once the program is ready; the test's cleanup
// ends it.
func Start(t *testing.T, python, mode, arg string) *Prog {
	t.Helper()
	if _, err := os.Stat(python); err != nil && e2e.InGuest() {
		t.Skipf("%s is not in the qemu guest: Python frames are tested on the host", python)
	}
	path := filepath.Join(t.TempDir(), "frames.py")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, path, mode, arg)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Prog{Cmd: cmd, Path: path, stdin: stdin, stdout: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("%s: %v", python, err)
		}
	})
	p.expect(t, "ready")
	return p
}

// Pid is the program's process id.
func (p *Prog) Pid() int { return p.Cmd.Process.Pid }

// Run makes the program call top() and waits until it returned.
func (p *Prog) Run(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	p.expect(t, "done")
}

func (p *Prog) expect(t *testing.T, want string) {
	t.Helper()
	line, err := p.stdout.ReadString('\n')
	if strings.TrimSpace(line) != want {
		t.Fatalf("program said %q (%v), want %q", line, err, want)
	}
}

// Line is the line of the script that carries marker ("# LEAF", ...): for
// open or connect, the LEAF line of that mode.
func (p *Prog) Line(mode, marker string) int {
	n := 0
	for i, l := range strings.Split(script, "\n") {
		if !strings.HasSuffix(l, "# "+marker) {
			continue
		}
		n++
		// Two LEAF lines: the first connects, the second opens.
		if marker != "LEAF" || strings.HasPrefix(mode, "connect") == (n == 1) {
			return i + 1
		}
	}
	return 0
}

// Check checks that stack holds the program's Python frames leaf, mid, top
// and then <module> (or threading's run), innermost first, with the
// script's file and lines, below at least one native frame (and for a
// connect, socket.create_connection).
func (p *Prog) Check(t *testing.T, mode string, stack []syms.Frame) {
	t.Helper()
	first := -1
	for i, f := range stack {
		if f.Lang == "python" && f.Symbol == "leaf" {
			first = i
			break
		}
	}
	if first < 1 {
		t.Fatalf("no frame above leaf() in %s", Format(stack))
	}
	want := []struct {
		name, marker string
	}{{"leaf", "LEAF"}, {"mid", "MID"}, {"top", "TOP"}}
	if !strings.HasSuffix(mode, "thread") {
		want = append(want, struct{ name, marker string }{"<module>", "MODULE"})
	}
	for i, w := range want {
		if first+i >= len(stack) {
			t.Fatalf("stack ends before %s: %s", w.name, Format(stack))
		}
		f := stack[first+i]
		if f.Lang != "python" || f.Symbol != w.name || f.File != p.Path || f.Line != p.Line(mode, w.marker) {
			t.Errorf("frame %d: %s, want %s (%s:%d) in %s", first+i, f, w.name, p.Path, p.Line(mode, w.marker), Format(stack))
		}
	}
	if strings.HasSuffix(mode, "thread") {
		// Below top(): threading's Thread.run (run before 3.11).
		if f := stack[first+len(want)]; f.Lang != "python" || !strings.HasSuffix(f.Symbol, "run") || !strings.HasSuffix(f.File, "threading.py") {
			t.Errorf("below top(): %s, want threading's run in %s", f, Format(stack))
		}
	}
	// Above leaf(): native frames (libc's), and for a connect the Python
	// function that connected, socket.create_connection.
	above := stack[:first]
	if strings.HasPrefix(mode, "connect") {
		if f := above[len(above)-1]; f.Lang != "python" || f.Symbol != "create_connection" || !strings.HasSuffix(f.File, "socket.py") {
			t.Errorf("above leaf(): %s, want socket's create_connection in %s", f, Format(stack))
		}
		above = above[:len(above)-1]
	}
	if len(above) == 0 {
		t.Errorf("no native frame above the Python frames in %s", Format(stack))
	}
	for _, f := range above {
		if f.Lang != "" {
			t.Errorf("python frame %s above the native ones in %s", f, Format(stack))
		}
	}
}

// Format prints a stack, one frame a line.
func Format(stack []syms.Frame) string {
	var b strings.Builder
	for _, f := range stack {
		fmt.Fprintf(&b, "\n\t%s [%s]", f, f.Module)
	}
	return b.String()
}
