package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tracer is one traced process: owl, bpftrace or a libbpf tool.
type tracer struct {
	name  string   // row name: "owl opensnoop"
	argv  []string // command line; {PID} is replaced by the workload's pid
	ready string   // substring of the line saying the probes are attached
	// readyOn: "stderr" or "stdout"; "" means the first stdout line.
	readyOn string
	// stdout, when set, is a file the tracer writes its stdout to (not
	// read: /dev/null for throughput).
	stdout string
	// readyAfter, when set, is when the tracer counts as ready (no line
	// says so).
	readyAfter time.Duration
}

// running is a started tracer whose output lines are matched.
type running struct {
	cmd     *exec.Cmd
	start   time.Time
	readyAt time.Time
	// readyCPU is the CPU time the tracer's threads had used when it was
	// ready: unlike the wall time, barely moved by other load.
	readyCPU time.Duration
	ready    chan struct{}
	match    func(string) bool

	mu      sync.Mutex
	matched int
	lastAt  time.Time
	lost    uint64
	errTail []string
	done    chan struct{} // both pipes read to the end
}

var lostRE = regexp.MustCompile(`(?i)(?:owl: (\d+) events lost|lost (\d+) events)`)

// startTracer starts t and returns once it is ready (or fails). match
// tells the lines to count.
func startTracer(t tracer, pid int, match func(string) bool, timeout time.Duration) (*running, error) {
	argv := make([]string, len(t.argv))
	for i, a := range t.argv {
		argv[i] = strings.ReplaceAll(a, "{PID}", strconv.Itoa(pid))
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout io.Reader = strings.NewReader("")
	var err error
	if t.stdout != "" {
		f, err := os.OpenFile(t.stdout, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.Stdout = f
	} else if stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	// Reset the harness's own peak RSS: a child started by clone(CLONE_VM)
	// inherits it into ru_maxrss at exec.
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	r := &running{cmd: cmd, ready: make(chan struct{}), match: match, done: make(chan struct{})}
	r.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", t.name, err)
	}
	var once sync.Once
	markReady := func() {
		once.Do(func() {
			r.readyAt = time.Now()
			r.readyCPU = taskCPU(cmd.Process.Pid)
			close(r.ready)
		})
	}
	var wg sync.WaitGroup
	read := func(rd io.Reader, which string) {
		defer wg.Done()
		sc := bufio.NewScanner(rd)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		first := true
		for sc.Scan() {
			line := sc.Text()
			if which == t.readyOn || t.readyOn == "" && which == "stdout" {
				if t.readyOn == "" && first || t.ready != "" && strings.Contains(line, t.ready) {
					markReady()
				}
			}
			first = false
			if m := lostRE.FindStringSubmatch(line); m != nil {
				n, _ := strconv.ParseUint(m[1]+m[2], 10, 64)
				r.mu.Lock()
				r.lost += n
				r.mu.Unlock()
			}
			if which == "stderr" {
				r.mu.Lock()
				r.errTail = append(r.errTail[max(0, len(r.errTail)-5):], line)
				r.mu.Unlock()
				continue
			}
			if match != nil && match(line) {
				r.mu.Lock()
				r.matched++
				r.lastAt = time.Now()
				r.mu.Unlock()
			}
		}
		io.Copy(io.Discard, rd)
	}
	wg.Add(2)
	go read(stdout, "stdout")
	go read(stderr, "stderr")
	go func() { wg.Wait(); close(r.done) }()
	if t.readyAfter > 0 {
		go func() { time.Sleep(t.readyAfter); markReady() }()
	}
	select {
	case <-r.ready:
		return r, nil
	case <-r.done:
		r.cmd.Wait()
		return nil, fmt.Errorf("%s exited before it was ready: %s", t.name, r.tail())
	case <-time.After(timeout):
		r.stop(nil)
		return nil, fmt.Errorf("%s not ready after %v: %s", t.name, timeout, r.tail())
	}
}

func (r *running) tail() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.errTail, " | ")
}

func (r *running) count() (int, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.matched, r.lastAt
}

// waitLines waits until want lines matched, or none came for quiet.
func (r *running) waitLines(want int, quiet time.Duration) {
	start := time.Now()
	for {
		n, last := r.count()
		if n >= want {
			return
		}
		if last.IsZero() {
			last = start
		}
		if time.Since(last) > quiet {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop sends SIGINT (again every 500 ms, calling poke so that a tracer
// asleep in epoll notices: bpftrace 0.17 can miss an early SIGINT) and
// returns the peak RSS in KiB. After 15 s it kills.
func (r *running) stop(poke func()) (rssKiB int64) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		r.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-r.done:
		case <-time.After(500 * time.Millisecond):
			if poke != nil {
				poke()
			}
			if time.Now().Before(deadline) {
				continue
			}
			r.cmd.Process.Kill()
			<-r.done
		}
		break
	}
	r.cmd.Wait()
	if ru, ok := r.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}

// workload is one storm process.
type workload struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startWorkload(storm string, args ...string) (*workload, error) {
	cmd := exec.Command(storm, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start workload: %w", err)
	}
	return &workload{cmd: cmd, in: in, out: bufio.NewScanner(out)}, nil
}

func (w *workload) pid() int { return w.cmd.Process.Pid }

// run makes k calls at rate per second (0: as fast as it can) and returns
// the loop's wall time and the workload thread's CPU time.
func (w *workload) run(k, rate int) (wall, cpu time.Duration, err error) {
	if _, err := fmt.Fprintf(w.in, "%d %d\n", k, rate); err != nil {
		return 0, 0, fmt.Errorf("workload: %w", err)
	}
	if !w.out.Scan() {
		return 0, 0, fmt.Errorf("workload ended: %v", w.out.Err())
	}
	var wallNs, cpuNs int64
	if _, err := fmt.Sscan(w.out.Text(), &wallNs, &cpuNs); err != nil {
		return 0, 0, fmt.Errorf("workload said %q: %w", w.out.Text(), err)
	}
	return time.Duration(wallNs), time.Duration(cpuNs), nil
}

func (w *workload) close() {
	w.in.Close()
	w.cmd.Wait()
}

// taskCPU sums the CPU time of pid's threads (the first field of each
// thread's schedstat, in ns: a finer clock than /proc/PID/stat's ticks).
func taskCPU(pid int) time.Duration {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			sum += time.Duration(ns)
		}
	}
	return sum
}
