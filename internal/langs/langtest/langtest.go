// Package langtest starts the test programs of the runtime tools (Java,
// Python, Ruby; internal/langs/testdata) and talks to them: one command
// line in, one answer line out.
package langtest

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/owlbpf/owl/internal/e2e"
)

// Program is a running test program.
type Program struct {
	Cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// Testdata is the folder of the test programs.
func Testdata() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "testdata")
}

// Start starts argv and waits for its "ready" line.
func Start(t *testing.T, env []string, argv ...string) *Program {
	t.Helper()
	return StartIn(t, "", env, argv...)
}

// StartIn is Start in folder dir.
func StartIn(t *testing.T, dir string, env []string, argv ...string) *Program {
	t.Helper()
	p := &Program{Cmd: exec.Command(argv[0], argv[1:]...)}
	p.Cmd.Dir = dir
	p.Cmd.Env = append(os.Environ(), env...)
	p.Cmd.Stderr = os.Stderr
	var err error
	if p.in, err = p.Cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.Cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewReader(out)
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.in.Close()
		p.Cmd.Process.Kill()
		p.Cmd.Wait()
	})
	if ans := p.Say(t, ""); ans != "ready" {
		t.Fatalf("%s said %q, want ready", argv[0], ans)
	}
	return p
}

// Say sends line (none when empty) and returns the answer line.
func (p *Program) Say(t *testing.T, line string) string {
	t.Helper()
	if line != "" {
		if _, err := io.WriteString(p.in, line+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	ans, err := p.out.ReadString('\n')
	if err != nil {
		t.Fatalf("after %q: %v", line, err)
	}
	return strings.TrimSuffix(ans, "\n")
}

// PID is the program's process id.
func (p *Program) PID() int { return p.Cmd.Process.Pid }

// Java compiles Work.java and starts it with the JVM flags given.
func Java(t *testing.T, flags ...string) *Program {
	t.Helper()
	javac := e2e.Need(t, "javac")
	java := e2e.Need(t, "java")
	dir := t.TempDir()
	if out, err := exec.Command(javac, "-d", dir, filepath.Join(Testdata(), "Work.java")).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v: %s", err, out)
	}
	return Start(t, nil, append(append([]string{java}, flags...), "-cp", dir, "Work")...)
}

// C compiles testdata/NAME.c with cc -pthread and starts it.
func C(t *testing.T, name string) *Program {
	t.Helper()
	cc := e2e.Need(t, "cc")
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command(cc, "-O1", "-pthread", "-o", bin, filepath.Join(Testdata(), name+".c")).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v: %s", err, out)
	}
	return Start(t, nil, bin)
}
