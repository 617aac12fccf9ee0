package faults

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools"
)

// A target says how a tool of the registry attaches for these tests.
// Tools not listed attach with no arguments (every tracepoint tool), so a
// new tool is covered as soon as it is registered; one that needs
// arguments fails here until it gets a line.
type target struct {
	// file: the tool probes a function in a file: its argument is the
	// probe specifier of spinWork in this test binary, which the workload
	// runs (in the guests too: no compiler or libc needed).
	file bool
	args []string // more arguments, besides -p
	// python: -p names a python3.11 process, which the tool needs;
	// otherwise fault runs give no -p (the tool traces every process,
	// so the workload's events flow).
	python bool
	// bash: a -p of this tool names a bash process (fault runs probe
	// /bin/bash without -p).
	bash bool
}

var targets = map[string]target{
	"funccount":    {file: true},
	"funclatency":  {file: true},
	"trace":        {file: true},
	"stackcount":   {file: true},
	"usdt":         {args: []string{"python:function__return"}, python: true},
	"ucalls":       {python: true},
	"uflow":        {python: true},
	"ugc":          {python: true},
	"uthreads":     {args: []string{"-l", "c"}, python: true},
	"bashreadline": {bash: true},
	"bashfunc":     {bash: true},
	"bashfunclat":  {bash: true},
}

// argv is the command line of tool: its target's arguments, and -p pid
// where pid is not "" (else the python target's where the tool needs it).
func (w *world) argv(t testing.TB, tool, pid string) []string {
	tg := targets[tool]
	argv := []string{tool}
	if tg.file {
		argv = append(argv, goFunc(w.exe))
	}
	argv = append(argv, tg.args...)
	if pid == "" && tg.python {
		pid = w.pythonPID(t)
	}
	if pid != "" {
		argv = append(argv, "-p", pid)
	}
	return argv
}

// owlRun is one exec'd owl.
type owlRun struct {
	args    []string
	cmd     *exec.Cmd
	start   time.Time
	ready   chan struct{} // closed at the "Tracing ..." line
	readyAt time.Time
	done    chan struct{} // closed once owl exited and was reaped
	state   *os.ProcessState

	mu     sync.Mutex
	stderr strings.Builder
	lines  int             // stdout lines
	stdout strings.Builder // the first maxStdout bytes of them
	owned  map[obj]string  // BPF objects owl was seen holding, named
}

// startOwl runs owl with args. While it runs, the BPF objects it holds
// are sampled from /proc/PID/fdinfo every few milliseconds and named, so
// that they can be looked for after it is gone.
func startOwl(t testing.TB, args ...string) *owlRun {
	t.Helper()
	r := &owlRun{args: args, cmd: exec.Command(owlBin, args...), ready: make(chan struct{}),
		done: make(chan struct{}), owned: map[obj]string{}}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	r.start = time.Now()
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			l := sc.Text()
			r.mu.Lock()
			r.stderr.WriteString(l + "\n")
			r.mu.Unlock()
			if strings.HasPrefix(l, "Tracing ") && strings.HasSuffix(l, "Hit Ctrl-C to end.") {
				r.readyAt = time.Now()
				close(r.ready)
			}
		}
	}()
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			r.mu.Lock()
			r.lines++
			if r.stdout.Len() < maxStdout {
				r.stdout.WriteString(sc.Text() + "\n")
			}
			r.mu.Unlock()
		}
		io.Copy(io.Discard, stdout)
	}()
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		r.sample()
	}()
	go func() {
		readers.Wait()
		r.cmd.Wait()
		r.state = r.cmd.ProcessState
		close(r.done)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
		<-sampled
	})
	return r
}

// sample records the BPF objects owl holds until it exits.
func (r *owlRun) sample() {
	pid := r.pidArg()
	for {
		select {
		case <-r.done:
			return
		default:
		}
		for o := range heldBy(pid) {
			r.mu.Lock()
			_, seen := r.owned[o]
			r.mu.Unlock()
			if seen {
				continue
			}
			n := name(o)
			r.mu.Lock()
			r.owned[o] = n
			r.mu.Unlock()
		}
		time.Sleep(3 * time.Millisecond)
	}
}

func (r *owlRun) pidArg() string { return strconv.Itoa(r.cmd.Process.Pid) }

// waitReady waits for the Tracing line, and says whether it came.
func (r *owlRun) waitReady(timeout time.Duration) bool {
	select {
	case <-r.ready:
		return true
	case <-r.done:
		// The line may have been read just before the exit.
		select {
		case <-r.ready:
			return true
		default:
			return false
		}
	case <-time.After(timeout):
		return false
	}
}

// waitExit waits for owl to end, failing t after timeout.
func (r *owlRun) waitExit(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(timeout):
		t.Fatalf("owl %v still runs %v after it was told to stop; stderr:\n%s", r.args, timeout, r.errText())
	}
}

func (r *owlRun) signal(sig syscall.Signal) { r.cmd.Process.Signal(sig) }

func (r *owlRun) errText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stderr.String()
}

// unavailable says why owl could not attach its tool on this kernel, ""
// when it did not fail that way (call it once owl exited without the
// Tracing line): status 2, and the tool, started from the registry in
// this process, finds no usable hook either (seccount and modsnoop here).
func (r *owlRun) unavailable() string {
	if r.state == nil || r.state.ExitCode() != 2 {
		return ""
	}
	if err := noHook(r.args[0]); err != nil {
		return err.Error()
	}
	return ""
}

// noHook is the registry's error for a tool without a usable hook on this
// kernel, nil for one that has one (or needs arguments to tell).
func noHook(name string) error {
	tl := tools.Find(name)
	if tl == nil {
		return nil
	}
	opts := e2e.Options()
	opts.NoReader = true
	s, err := tl.Start(opts)
	if err == nil {
		s.Close()
		return nil
	}
	if errors.Is(err, probe.ErrNoHook) && !errors.Is(err, tool.ErrNeedsArgs) {
		return err
	}
	return nil
}

// status describes how owl ended: "exit N" or "killed by SIG".
func (r *owlRun) status() string {
	ws, ok := r.state.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return "killed by " + unix.SignalName(ws.Signal())
	}
	return "exit " + strconv.Itoa(r.state.ExitCode())
}

// crashed reports the signs of a Go crash on stderr.
func (r *owlRun) crashed() bool {
	msg := r.errText()
	return strings.Contains(msg, "panic:") || strings.Contains(msg, "fatal error:") || strings.Contains(msg, "goroutine ")
}

// objects is what owl was seen holding.
func (r *owlRun) objects() map[obj]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[obj]string, len(r.owned))
	for o, n := range r.owned {
		m[o] = n
	}
	return m
}

// stdoutLines is how many lines owl wrote to stdout so far.
func (r *owlRun) stdoutLines() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lines
}

// maxStdout is how much of owl's stdout a run keeps.
const maxStdout = 4 << 20

// outText is what owl wrote to stdout so far (its first maxStdout bytes).
func (r *owlRun) outText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stdout.String()
}

// waitOut waits until owl's stdout holds s, and says whether it did.
func (r *owlRun) waitOut(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(r.outText(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// running reports whether owl still runs.
func (r *owlRun) running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}
