// Package owltest runs the owl binary under test for the test packages of
// test/ (storms, bad input, soak): $OWL_BIN when set (the qemu guests),
// else one built from ./cmd/owl once per test binary.
package owltest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	bin       string
	buildErr  error
)

// Bin is the path of the owl binary under test.
func Bin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if bin = os.Getenv("OWL_BIN"); bin != "" {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		dir, err := os.MkdirTemp("", "owltest")
		if err != nil {
			buildErr = err
			return
		}
		bin = filepath.Join(dir, "owl")
		cmd := exec.Command(goTool(), "build", "-o", bin, "./cmd/owl")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build owl: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

// Cleanup removes a binary Bin built; call it at the end of TestMain.
func Cleanup() {
	if bin != "" && os.Getenv("OWL_BIN") == "" {
		os.RemoveAll(filepath.Dir(bin))
	}
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// Owl is a running owl process whose stdout is collected.
type Owl struct {
	Cmd    *exec.Cmd
	Args   []string
	stdout bytes.Buffer
	stderr *bufio.Reader
	outMu  sync.Mutex
	copied chan struct{}
}

// Start runs owl with args and waits (up to 60 s: kprobes attach slowly in
// the qemu guests) for its "Tracing ..." line on stderr.
func Start(t testing.TB, args ...string) *Owl {
	t.Helper()
	o := &Owl{Cmd: exec.Command(Bin(t), args...), Args: args, copied: make(chan struct{})}
	stdout, err := o.Cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := o.Cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	o.stderr = bufio.NewReader(stderr)
	if err := o.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if o.Cmd.ProcessState == nil {
			o.Cmd.Process.Kill()
			o.Cmd.Wait()
		}
	})
	go func() {
		// Read stdout all along: a full pipe would stall owl's writer.
		buf := make([]byte, 64<<10)
		for {
			n, err := stdout.Read(buf)
			o.outMu.Lock()
			o.stdout.Write(buf[:n])
			o.outMu.Unlock()
			if err != nil {
				close(o.copied)
				return
			}
		}
	}()
	ready := make(chan string, 1)
	go func() {
		line, _ := o.stderr.ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "Tracing ") {
			rest, _ := io.ReadAll(o.stderr)
			o.Cmd.Wait()
			t.Fatalf("owl %s: %s%s", strings.Join(args, " "), line, rest)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("owl %s: no Tracing line after 60 s", strings.Join(args, " "))
	}
	return o
}

// Pid is owl's process id.
func (o *Owl) Pid() int { return o.Cmd.Process.Pid }

// Stop sends SIGINT, waits for owl to end and returns its stdout and the
// rest of its stderr.
func (o *Owl) Stop(t testing.TB) (stdout, stderr string) {
	t.Helper()
	o.Cmd.Process.Signal(os.Interrupt)
	errb, _ := io.ReadAll(o.stderr)
	<-o.copied
	if err := o.Cmd.Wait(); err != nil {
		t.Errorf("owl %s after SIGINT: %v; stderr: %s", strings.Join(o.Args, " "), err, errb)
	}
	o.outMu.Lock()
	defer o.outMu.Unlock()
	return o.stdout.String(), string(errb)
}
