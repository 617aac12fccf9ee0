package faults

import (
	"bufio"
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
)

// A target says how a tool of the registry attaches for these tests.
// Tools not listed attach with no arguments (every tracepoint tool), so a
// new tool is covered as soon as it is registered; one that needs
// arguments fails here until it gets a line.
type target struct {
	// args besides -p, given the test's world.
	args func(w *world, t testing.TB) []string
	// pid says which process -p names: "" none (the tool traces every
	// process, so the workload's events flow); "python" the python
	// target, which these tools need.
	pid string
}

var targets = map[string]target{
	"funccount":   {args: spinWorkArgs},
	"funclatency": {args: spinWorkArgs},
	"trace":       {args: spinWorkArgs},
	"stackcount":  {args: spinWorkArgs},
	"usdt":        {args: fixed("python:function__return"), pid: "python"},
	"ucalls":      {pid: "python"},
	"uflow":       {pid: "python"},
	"ugc":         {pid: "python"},
	"uthreads":    {args: fixed("-l", "c"), pid: "python"},
}

// spinWorkArgs probes spinWork in this test binary, which the workload
// runs (in the guests too: no compiler or libc needed).
func spinWorkArgs(w *world, _ testing.TB) []string { return []string{goFunc(w.exe)} }

func fixed(args ...string) func(*world, testing.TB) []string {
	return func(*world, testing.TB) []string { return args }
}

// argv is the command line of tool for fault runs: its target's
// arguments and -p where it needs one.
func (w *world) argv(t testing.TB, tool string) []string {
	tg := targets[tool]
	argv := []string{tool}
	if tg.args != nil {
		argv = append(argv, tg.args(w, t)...)
	}
	if tg.pid == "python" {
		argv = append(argv, "-p", w.pythonPID(t))
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
	lines  int            // stdout lines
	owned  map[obj]string // BPF objects owl was seen holding, named
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
// Tracing line).
func (r *owlRun) unavailable() string {
	if r.state == nil || r.state.ExitCode() != 2 {
		return ""
	}
	if msg := r.errText(); strings.Contains(msg, "no usable hook") {
		return strings.TrimSpace(msg)
	}
	return ""
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
