package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tracer is another tracer (bpftrace, a libbpf-tools binary) running as a
// subprocess for a side-by-side test, its stdout read line by line as it
// comes.
type Tracer struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	eof   chan struct{}
}

// StartTracer starts path with args; where it is not installed, t skips or
// fails as Need says (the qemu guests have no peers). The peer runs under
// stdbuf -oL: libbpf-tools write to a pipe block-buffered, and a test must
// see their lines as they come to know when they have caught up
// (bpftrace: pass -B line).
func StartTracer(t *testing.T, path string, args ...string) *Tracer {
	t.Helper()
	Need(t, path)
	argv := append([]string{path}, args...)
	if stdbuf, err := exec.LookPath("stdbuf"); err == nil {
		argv = append([]string{stdbuf, "-oL"}, argv...)
	}
	p := &Tracer{cmd: exec.Command(argv[0], argv[1:]...), eof: make(chan struct{})}
	p.cmd.Stderr = os.Stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.eof)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.eof
		p.cmd.Wait()
	})
	return p
}

// count is how many lines so far satisfy match.
func (p *Tracer) count(match func(string) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if match(l) {
			n++
		}
	}
	return n
}

// WaitLine waits until the peer has printed a line starting with prefix
// (bpftrace prints its BEGIN header once every probe is attached).
func (p *Tracer) WaitLine(t *testing.T, prefix string) {
	t.Helper()
	if !p.WaitLines(func(l string) bool { return strings.HasPrefix(l, prefix) }, 1, 30*time.Second) {
		t.Fatalf("%v never printed %q", p.cmd.Args, prefix)
	}
}

// WaitLines waits up to timeout until n lines satisfy match, and says
// whether they did. A peer polls its buffer at its own pace and drops what
// it has not read when it gets SIGINT: wait for the lines a workload should
// give before Stop, or the comparison sees only what the peer had read.
func (p *Tracer) WaitLines(match func(string) bool, n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if p.count(match) >= n {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitLinks waits until the peer holds n BPF links (libbpf attaches each
// tracepoint with one, and libbpf-tools print no ready line).
func (p *Tracer) WaitLinks(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.links() >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%v did not attach %d BPF links within 30 s", p.cmd.Args, n)
}

// links counts the BPF links of the peer's process tree (stdbuf execs the
// peer, so the pid is the peer's own).
func (p *Tracer) links() int {
	pid := p.cmd.Process.Pid
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	have := 0
	for _, e := range ents {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); l == "anon_inode:bpf_link" {
			have++
		}
	}
	return have
}

// Stop ends the peer with SIGINT and returns all its lines.
func (p *Tracer) Stop(t *testing.T) []string {
	t.Helper()
	if !Interrupt(p.cmd.Process, p.eof, 20*time.Second) {
		t.Fatalf("%v did not end on SIGINT", p.cmd.Args)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

// Interrupt sends proc SIGINT until done is closed, every half second, and
// says whether done closed within timeout. One SIGINT is not enough:
// bpftrace 0.17 can miss one that comes early and then waits for events
// that may never come (see bench/README.md).
func Interrupt(proc *os.Process, done <-chan struct{}, timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		proc.Signal(syscall.SIGINT)
		select {
		case <-done:
			return true
		case <-deadline:
			return false
		case <-time.After(500 * time.Millisecond):
		}
	}
}
