// Command setuids measures what tracing costs a process that calls
// setuid(0) in a tight loop: the same storm of calls untraced, traced by
// `owl setuids -p PID`, and traced by bpftrace 0.17 running the book's
// setuids.bt. Every traced run reads the tracer's stdout through a pipe and
// counts its lines, so printing is part of the cost, and checks that one line
// was printed per call and that no event was lost.
//
//	sudo go run ./bench/setuids [-n 300000] [-runs 3] [-owl PATH]
//	sudo go run ./bench/setuids -breakdown [-cpuprofile FILE]
//
// -breakdown runs owl's setuids probe inside the harness instead, in steps
// (empty programs, BPF only, reader, decoding, printing, and a what-if with
// BPF_RB_NO_WAKEUP), to show where the cost per event goes; see
// breakdown.go.
//
// Other sessions may share the machine: each measurement waits for idle
// CPUs first and is repeated when other processes were busy during it.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/owlbpf/owl/bench/internal/harness"

	"golang.org/x/sys/unix"
)

// workloadEnv makes the bench binary run as the workload: see workloadMain.
const workloadEnv = "OWL_BENCH_SETUIDS_WORKLOAD"

const (
	readyTimeout = 30 * time.Second       // from exec to the first warm-up event
	exitTimeout  = 10 * time.Second       // from SIGINT to exit
	idleTimeout  = 3 * time.Second        // no new line for this long ends the wait for lines
	warmWait     = 20 * time.Millisecond  // wait for each warm-up call's line
	settle       = 200 * time.Millisecond // after the first warm-up line, for the others to arrive
	// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ).
	clockTick = 10 * time.Millisecond
)

// idleWait is how long to wait, before each measurement, for other
// processes to use less than busyWarning % of a CPU (-idle-wait).
var idleWait = 10 * time.Minute

// retries is how many times a measurement is repeated when other processes
// used more than busyWarning % of a CPU during its storm (-retries).
var retries = 5

// defaultScripts are where distributions install the book's setuids.bt.
var defaultScripts = []string{"/usr/sbin/setuids.bt", "/usr/share/bpftrace/tools/setuids.bt"}

func main() {
	if os.Getenv(workloadEnv) != "" {
		if err := workloadMain(); err != nil {
			fmt.Fprintf(os.Stderr, "setuids workload: %v\n", err)
			os.Exit(1)
		}
		return
	}
	n := flag.Int("n", 300000, "setuid(0) calls per measurement")
	runs := flag.Int("runs", 3, "measurements of each kind (the report shows the median)")
	owlPath := flag.String("owl", "", "owl binary to measure (default: build ./cmd/owl)")
	bpftracePath := flag.String("bpftrace", "bpftrace", "bpftrace binary to compare with")
	script := flag.String("script", "", "setuids.bt to run with bpftrace (default: "+strings.Join(defaultScripts, " or ")+")")
	breakdown := flag.Bool("breakdown", false, "run owl's probe in-process, step by step, instead of the comparison")
	cpuProfile := flag.String("cpuprofile", "", "with -breakdown: write a CPU profile of the first storm of the step that is owl to this file")
	flag.DurationVar(&idleWait, "idle-wait", idleWait, "before each measurement, wait up to this long for other processes to leave the CPUs idle (0: do not wait)")
	flag.IntVar(&retries, "retries", retries, "measure again, at most this many times, when other processes used the CPUs during a storm")
	flag.Parse()
	var err error
	if *breakdown {
		err = runBreakdown(*n, *runs, *cpuProfile)
	} else {
		err = run(*n, *runs, *owlPath, *bpftracePath, *script)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "setuids bench: %v\n", err)
		os.Exit(1)
	}
}

// workloadMain is the traced process. It locks its thread, says "ready",
// then for each number K read from stdin calls setuid(0) K times with raw
// syscalls on that one thread and answers "elapsed NS" with the wall time of
// the loop. (Go's syscall.Setuid would repeat the call on every thread.)
func workloadMain() error {
	runtime.LockOSThread()
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	if err := out.Flush(); err != nil {
		return fmt.Errorf("write ready: %w", err)
	}
	for in.Scan() {
		k, err := strconv.Atoi(in.Text())
		if err != nil {
			return fmt.Errorf("bad request %q: %w", in.Text(), err)
		}
		start := time.Now()
		for range k {
			if _, _, errno := unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0); errno != 0 {
				return fmt.Errorf("setuid(0): %w", errno)
			}
		}
		elapsed := time.Since(start)
		fmt.Fprintf(out, "elapsed %d\n", elapsed.Nanoseconds())
		if err := out.Flush(); err != nil {
			return fmt.Errorf("write elapsed: %w", err)
		}
	}
	if err := in.Err(); err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	return nil
}

// workload is a running workload process.
type workload struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// startWorkload re-executes the bench binary as the workload and waits for
// its "ready".
func startWorkload() (*workload, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), workloadEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("workload stdin: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("workload stdout: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start workload %s: %w", exe, err)
	}
	w := &workload{cmd: cmd, in: in, out: bufio.NewReader(out)}
	line, err := w.out.ReadString('\n')
	if err != nil || line != "ready\n" {
		w.stop()
		return nil, fmt.Errorf("workload did not say ready: %q, %v", line, err)
	}
	return w, nil
}

func (w *workload) pid() int { return w.cmd.Process.Pid }

// calls makes the workload call setuid(0) k times and returns how long its
// loop took.
func (w *workload) calls(k int) (time.Duration, error) {
	if _, err := fmt.Fprintf(w.in, "%d\n", k); err != nil {
		return 0, fmt.Errorf("send request to workload: %w", err)
	}
	line, err := w.out.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("read workload's answer: %w", err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "elapsed ")
	if !ok {
		return 0, fmt.Errorf("workload answered %q", line)
	}
	ns, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("workload answered %q: %w", line, err)
	}
	return time.Duration(ns), nil
}

// stop closes the workload's stdin, which ends it, and waits for it.
func (w *workload) stop() error {
	w.in.Close()
	if err := w.cmd.Wait(); err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	return nil
}

// tool is a tracer under test.
type tool struct {
	name string
	argv func(pid int) []string
	// readyStdout: the ready line is on stdout (bpftrace), not stderr (owl).
	readyStdout bool
	readyPrefix string
}

// result is one measurement.
type result struct {
	calls   int
	elapsed time.Duration // the workload's loop
	warm    int           // warm-up calls made before the storm
	printed int64         // event lines for the storm's calls
	others  int64         // event lines of other processes
	lost    int64         // as the tracer reported it
	cpu     time.Duration // tracer's CPU from the storm's start until its last line
	drain   time.Duration // from the end of the loop until the last line was read
	irq     irqCounts     // interrupts on all CPUs from the storm's start until the last line
	busy    busyCPU       // CPU use of the machine in that time
	stderr  []string
}

func (r result) perCall() float64 { return float64(r.elapsed.Nanoseconds()) / float64(r.calls) }

func run(n, runs int, owlPath, bpftracePath, script string) error {
	if n < 1 || runs < 1 {
		return errors.New("-n and -runs must be at least 1")
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: sudo go run ./bench/setuids")
	}
	if err := harness.EnsureTracefs(); err != nil {
		return err
	}
	var rev string
	if owlPath == "" {
		dir, err := os.MkdirTemp("", "owl-bench-")
		if err != nil {
			return fmt.Errorf("temp dir: %w", err)
		}
		defer os.RemoveAll(dir)
		if owlPath, rev, err = harness.BuildOwl(dir); err != nil {
			return err
		}
	} else {
		rev = harness.Revision(owlPath)
	}
	fmt.Printf("owl:      %s (%s)\n", owlPath, rev)
	tools := []tool{{
		name:        "owl setuids",
		argv:        func(pid int) []string { return []string{owlPath, "setuids", "-p", strconv.Itoa(pid)} },
		readyPrefix: "Tracing ",
	}}
	if bt, err := bpftraceTool(bpftracePath, script); err != nil {
		fmt.Printf("bpftrace: skipped: %v\n", err)
	} else {
		fmt.Printf("bpftrace: %s (%s) %s\n", bt.argv(0)[0], harness.BpftraceVersion(bt.argv(0)[0]), bt.argv(0)[1])
		tools = append(tools, bt)
	}
	fmt.Printf("calls:    %d setuid(0) per measurement, %d measurements of each kind, on %d CPUs\n\n", n, runs, runtime.NumCPU())

	// Interleave the kinds, so a slow phase of the machine hits all alike.
	untraced := make([]result, 0, runs)
	traced := make([][]result, len(tools))
	for i := range runs {
		r, err := undisturbed("untraced", func() (result, error) { return measureUntraced(n) },
			func(r result) float64 { return r.busy.othersPercent() })
		if err != nil {
			return fmt.Errorf("untraced, run %d: %w", i+1, err)
		}
		logRun("untraced", i, r)
		untraced = append(untraced, r)
		for j, t := range tools {
			r, err := undisturbed(t.name, func() (result, error) { return measureTraced(t, n) },
				func(r result) float64 { return r.busy.othersPercent() })
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", t.name, i+1, err)
			}
			logRun(t.name, i, r)
			traced[j] = append(traced[j], r)
		}
	}
	fmt.Fprintln(os.Stderr)
	return report(n, untraced, tools, traced)
}

func logRun(name string, i int, r result) {
	fmt.Fprintf(os.Stderr, "%-20s run %d: %8.1f ns/call  %7d lines for %d calls  lost %d  others' lines %d  warm-up %d  tracer CPU %6.0f ms  drain %6.0f ms  IWI %7d  IPI %7d  other processes' CPU %3.0f%%\n",
		name, i+1, r.perCall(), r.printed, r.calls, r.lost, r.others, r.warm, ms(r.cpu), ms(r.drain), r.irq.iwi, r.irq.ipi, r.busy.othersPercent())
}

func measureUntraced(n int) (result, error) {
	if err := waitIdle(); err != nil {
		return result{}, err
	}
	w, err := startWorkload()
	if err != nil {
		return result{}, err
	}
	s0, err := takeSample(w.pid())
	if err != nil {
		w.stop()
		return result{}, err
	}
	d, err := w.calls(n)
	if err != nil {
		w.stop()
		return result{}, err
	}
	s1, err := takeSample(w.pid())
	if err != nil {
		w.stop()
		return result{}, err
	}
	if err := w.stop(); err != nil {
		return result{}, err
	}
	return result{calls: n, elapsed: d, irq: s1.irq.sub(s0.irq), busy: s1.since(s0)}, nil
}

// measureTraced starts a workload, then t tracing it; once a warm-up call
// shows up in t's output, the workload makes its n calls. The run then
// waits for t to print them, stops it with SIGINT and reads what it says
// about lost events.
func measureTraced(t tool, n int) (res result, err error) {
	res.calls = n
	if err := waitIdle(); err != nil {
		return res, err
	}
	w, err := startWorkload()
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := w.stop(); serr != nil && err == nil {
			err = serr
		}
	}()

	pid := w.pid()
	argv := t.argv(pid)
	cmd := exec.Command(argv[0], argv[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, fmt.Errorf("stdout pipe: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return res, fmt.Errorf("stderr pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s: %w", argv[0], err)
	}
	kill := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}

	c := newCounter(pid, t.readyStdout, t.readyPrefix)
	e := &errLines{ready: make(chan struct{}), prefix: t.readyPrefix, wantReady: !t.readyStdout}
	var readers sync.WaitGroup
	readers.Go(func() { c.read(stdout) })
	readers.Go(func() { e.read(stderr) })
	allRead := make(chan struct{})
	go func() {
		readers.Wait()
		close(allRead)
	}()
	ready := e.ready
	if t.readyStdout {
		ready = c.ready
	}

	// Wait for the ready line, then make warm-up calls until one is printed.
	deadline := time.After(readyTimeout)
	select {
	case <-ready:
	case <-allRead:
		cmd.Wait()
		return res, fmt.Errorf("exited before it was ready (%v): %s", cmd.ProcessState, harness.LastLines(e.lines()))
	case <-deadline:
		kill()
		return res, fmt.Errorf("no ready line after %v: %s", readyTimeout, harness.LastLines(e.lines()))
	}
	for c.ours.Load() == 0 {
		select {
		case <-deadline:
			kill()
			return res, fmt.Errorf("no warm-up call printed after %v: %s", readyTimeout, harness.LastLines(e.lines()))
		case <-allRead:
			cmd.Wait()
			return res, fmt.Errorf("exited during warm-up (%v): %s", cmd.ProcessState, harness.LastLines(e.lines()))
		default:
		}
		if _, err := w.calls(1); err != nil {
			kill()
			return res, err
		}
		res.warm++
		for wait := time.Now().Add(warmWait); c.ours.Load() == 0 && time.Now().Before(wait); {
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(settle)
	base := c.ours.Load()
	baseOthers := c.others.Load()

	// The storm.
	cpu0, err := processCPU(cmd.Process.Pid)
	if err != nil {
		kill()
		return res, err
	}
	s0, err := takeSample(pid, cmd.Process.Pid)
	if err != nil {
		kill()
		return res, err
	}
	if res.elapsed, err = w.calls(n); err != nil {
		kill()
		return res, err
	}
	loopEnd := time.Now()

	// Wait for the lines: until there is one per call, or none came for
	// idleTimeout.
	last, lastAt := c.ours.Load(), time.Now()
	for last-base < int64(n) && time.Since(lastAt) < idleTimeout {
		time.Sleep(10 * time.Millisecond)
		if now := c.ours.Load(); now != last {
			last, lastAt = now, time.Now()
		}
	}
	res.printed = last - base
	if at := c.lastAt.Load(); at > loopEnd.UnixNano() {
		res.drain = time.Duration(at - loopEnd.UnixNano())
	}
	cpu1, err := processCPU(cmd.Process.Pid)
	if err != nil {
		kill()
		return res, err
	}
	res.cpu = cpu1 - cpu0
	s1, err := takeSample(pid, cmd.Process.Pid)
	if err != nil {
		kill()
		return res, err
	}
	res.irq = s1.irq.sub(s0.irq)
	res.busy = s1.since(s0)

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		kill()
		return res, fmt.Errorf("SIGINT: %w", err)
	}
	// bpftrace 0.17 can sleep through a SIGINT until its next event. A
	// setuid(0) of the harness's own wakes it; it is not the workload's, so
	// it is not counted.
	poke := time.NewTicker(500 * time.Millisecond)
	defer poke.Stop()
	timeout := time.After(exitTimeout)
	for exited := false; !exited; {
		select {
		case <-allRead:
			exited = true
		case <-poke.C:
			if err := setuidSelf(); err != nil {
				kill()
				return res, err
			}
		case <-timeout:
			kill()
			return res, fmt.Errorf("still running %v after SIGINT", exitTimeout)
		}
	}
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("exit after SIGINT: %w: %s", err, harness.LastLines(e.lines()))
	}
	// Lines that came after the wait ended still count.
	res.printed = c.ours.Load() - base
	res.others = c.others.Load() - baseOthers
	res.stderr = e.lines()
	res.lost = c.lost.Load() + lostIn(res.stderr)
	return res, nil
}

// setuidSelf calls setuid(0) once, on one thread of the harness: a no-op for
// root that tracers of setuid see.
func setuidSelf() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, _, errno := unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0); errno != 0 {
		return fmt.Errorf("setuid(0) in the harness: %w", errno)
	}
	return nil
}

// counter reads a tracer's stdout and counts event lines, and of those the
// ones whose PID is the workload's. An event line is, after any leading
// times (HH:MM:SS), a line that starts with a PID, as both owl and
// setuids.bt print them. bpftrace prints time() and printf() as separate
// records, and its per-CPU buffers may deliver them out of order: so one
// line may hold two times, or a time and the "Lost N events" line.
type counter struct {
	pid         []byte
	readyPrefix []byte // nil: the ready line is not on stdout
	ready       chan struct{}
	ours        atomic.Int64
	others      atomic.Int64
	lost        atomic.Int64 // from bpftrace's "Lost N events" lines
	lastAt      atomic.Int64 // UnixNano when ours last grew
}

func newCounter(pid int, readyStdout bool, readyPrefix string) *counter {
	c := &counter{pid: []byte(strconv.Itoa(pid)), ready: make(chan struct{})}
	if readyStdout {
		c.readyPrefix = []byte(readyPrefix)
	}
	return c
}

func (c *counter) read(r io.Reader) {
	br := bufio.NewReaderSize(r, 1<<20)
	isReady := false
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue // a line longer than 1 MiB is no event
		}
		if len(line) > 0 {
			c.take(line, &isReady)
		}
		if err != nil {
			io.Copy(io.Discard, br)
			return
		}
	}
}

func (c *counter) take(line []byte, isReady *bool) {
	if !*isReady && c.readyPrefix != nil && bytes.HasPrefix(line, c.readyPrefix) {
		*isReady = true
		close(c.ready)
		return
	}
	f, rest := nextField(line)
	for isClock(f) {
		f, rest = nextField(rest)
	}
	switch {
	case isNumber(f):
		if bytes.Equal(f, c.pid) {
			c.ours.Add(1)
			c.lastAt.Store(time.Now().UnixNano())
		} else {
			c.others.Add(1)
		}
	case string(f) == "Lost":
		f1, _ := nextField(rest)
		if v, err := strconv.ParseInt(string(f1), 10, 64); err == nil {
			c.lost.Add(v)
		}
	}
}

// nextField splits off the first blank-separated field of b.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n') {
		i++
	}
	j := i
	for j < len(b) && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' {
		j++
	}
	return b[i:j], b[j:]
}

func isClock(f []byte) bool {
	return len(f) == 8 && f[2] == ':' && f[5] == ':'
}

func isNumber(f []byte) bool {
	for _, c := range f {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(f) > 0
}

// errLines collects a tracer's stderr and signals its ready line.
type errLines struct {
	mu        sync.Mutex
	all       []string
	prefix    string
	wantReady bool
	ready     chan struct{}
}

func (e *errLines) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l := sc.Text()
		e.mu.Lock()
		e.all = append(e.all, l)
		e.mu.Unlock()
		if e.wantReady && strings.HasPrefix(l, e.prefix) {
			e.wantReady = false
			close(e.ready)
		}
	}
	io.Copy(io.Discard, r)
}

func (e *errLines) lines() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.all)
}

// lostIn adds up what the stderr lines say was lost: owl prints
// "owl: N events lost: ..." at exit, bpftrace "Lost N events".
func lostIn(lines []string) int64 {
	var n int64
	for _, l := range lines {
		f := strings.Fields(l)
		var s string
		switch {
		case len(f) >= 4 && f[0] == "owl:" && f[2] == "events" && f[3] == "lost:":
			s = f[1]
		case len(f) >= 3 && f[0] == "Lost" && f[2] == "events":
			s = f[1]
		default:
			continue
		}
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			n += v
		}
	}
	return n
}

// processCPU is the user and system time of all threads of process pid.
func processCPU(pid int) (time.Duration, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	// The command name, field 2, is in parentheses and may hold blanks.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: no ')' in %q", path, b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: only %d fields", path, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%s: utime/stime: %w", path, err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// bpftraceTool finds bpftrace and setuids.bt; an error means the comparison
// is skipped.
func bpftraceTool(path, script string) (tool, error) {
	p, err := exec.LookPath(path)
	if err != nil {
		return tool{}, fmt.Errorf("not installed: %w", err)
	}
	if script == "" {
		for _, s := range defaultScripts {
			if _, err := os.Stat(s); err == nil {
				script = s
				break
			}
		}
		if script == "" {
			return tool{}, fmt.Errorf("setuids.bt not found in %s: pass -script", strings.Join(defaultScripts, " or "))
		}
	} else if _, err := os.Stat(script); err != nil {
		return tool{}, fmt.Errorf("script: %w", err)
	}
	return tool{
		name: "bpftrace setuids.bt",
		// setuids.bt has no pid filter: it traces every process, and the
		// counter takes only the workload's lines.
		argv: func(int) []string { return []string{p, script} },
		// bpftrace 0.17 prints this on stdout before it attaches: the
		// warm-up calls make up for that.
		readyStdout: true,
		readyPrefix: "Attaching ",
	}, nil
}

func report(n int, untraced []result, tools []tool, traced [][]result) error {
	base := harness.Median(perCalls(untraced))
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "\truns\tns/call\tmin\tmax\tadded ns/event\tlines/calls\tlost\ttracer CPU ns/event\tdrain ms\tIWI/event\tIPI/event\tothers' CPU %\t")
	iwi, ipi := irqPerCall(untraced)
	fmt.Fprintf(w, "untraced\t%d\t%.0f\t%.0f\t%.0f\t\t\t\t\t\t%.3f\t%.3f\t%.0f\t\n",
		len(untraced), base, slices.Min(perCalls(untraced)), slices.Max(perCalls(untraced)), iwi, ipi, maxOthers(untraced))
	added := make([]float64, len(tools))
	var problems []string
	for i, t := range tools {
		rs := traced[i]
		pc := perCalls(rs)
		added[i] = harness.Median(pc) - base
		var cpu, drain []float64
		var printed, lost int64
		for j, r := range rs {
			cpu = append(cpu, float64(r.cpu.Nanoseconds())/float64(r.calls))
			drain = append(drain, ms(r.drain))
			printed += r.printed
			lost += r.lost
			if r.printed != int64(r.calls) || r.lost != 0 {
				problems = append(problems, fmt.Sprintf("%s run %d: %d lines for %d calls, %d lost", t.name, j+1, r.printed, r.calls, r.lost))
			}
			for _, l := range r.stderr {
				if !strings.HasPrefix(l, "Tracing ") && !strings.Contains(l, "RLIMIT_MEMLOCK") {
					problems = append(problems, fmt.Sprintf("%s run %d stderr: %s", t.name, j+1, l))
				}
			}
		}
		iwi, ipi := irqPerCall(rs)
		fmt.Fprintf(w, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%d/%d\t%d\t%.0f\t%.0f\t%.3f\t%.3f\t%.0f\t\n",
			t.name, len(rs), harness.Median(pc), slices.Min(pc), slices.Max(pc), added[i],
			printed, n*len(rs), lost, harness.Median(cpu), harness.Median(drain), iwi, ipi, maxOthers(rs))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	fmt.Println()
	if len(tools) == 2 && added[1] > 0 {
		ratio := added[0] / added[1]
		verdict := "MET"
		if ratio > 0.1 {
			verdict = "MISSED"
		}
		fmt.Printf("owl added / bpftrace added: %.0f / %.0f ns = %.3f (goal <= 0.1: %s)\n", added[0], added[1], ratio, verdict)
	}
	if len(problems) == 0 {
		fmt.Println("every traced run: one line per call, nothing lost")
	}
	busy := maxOthers(untraced)
	for _, rs := range traced {
		busy = max(busy, maxOthers(rs))
	}
	if busy > busyWarning {
		fmt.Printf("WARNING: other processes used up to %.0f%% of a CPU during a storm: the machine was not idle and the numbers are not reliable.\n", busy)
	}
	for _, p := range problems {
		fmt.Println("PROBLEM:", p)
	}
	fmt.Println()
	fmt.Println("ns/call: the workload's loop time / calls, median of the runs (min, max).")
	fmt.Println("added ns/event: median traced ns/call - median untraced ns/call.")
	fmt.Println("lines/calls: event lines with the workload's PID over all runs. lost: as the tracer reported it.")
	fmt.Println("tracer CPU: utime+stime of the tracer from the storm's start until its last line (10 ms ticks) / calls.")
	fmt.Println("drain: from the end of the workload's loop until the tracer's last line was read.")
	fmt.Println("IWI: IRQ-work interrupts (BPF output waking its reader); IPI: rescheduling and function-call\n  interrupts (waking a task on another CPU); on all CPUs (/proc/interrupts) during the storm, per call.")
	fmt.Println("others' CPU: the highest, over the runs, CPU use of processes other than the workload, the tracer and")
	fmt.Println("  the harness during the storm (/proc/stat), in % of one CPU.")
	return nil
}

func perCalls(rs []result) []float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, r.perCall())
	}
	return v
}

// busyWarning is the CPU use of other processes, in % of one CPU, above
// which the report says the machine was not idle.
const busyWarning = 25

// maxOthers is the highest CPU use of other processes over rs.
func maxOthers(rs []result) float64 {
	m := 0.0
	for _, r := range rs {
		m = max(m, r.busy.othersPercent())
	}
	return m
}

// irqPerCall is the median over rs of IWI and IPI interrupts per call.
func irqPerCall(rs []result) (iwi, ipi float64) {
	var a, b []float64
	for _, r := range rs {
		a = append(a, float64(r.irq.iwi)/float64(r.calls))
		b = append(b, float64(r.irq.ipi)/float64(r.calls))
	}
	return harness.Median(a), harness.Median(b)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// irqCounts are interrupt counts summed over all CPUs.
type irqCounts struct {
	iwi int64 // IRQ work interrupts: how BPF output wakes its reader
	ipi int64 // rescheduling and function call interrupts: waking a task on another CPU
}

func (a irqCounts) sub(b irqCounts) irqCounts {
	return irqCounts{iwi: a.iwi - b.iwi, ipi: a.ipi - b.ipi}
}

// readIRQs reads the IWI, RES and CAL lines of /proc/interrupts.
func readIRQs() (irqCounts, error) {
	var c irqCounts
	b, err := os.ReadFile("/proc/interrupts")
	if err != nil {
		return c, fmt.Errorf("read /proc/interrupts: %w", err)
	}
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		var dst *int64
		switch f[0] {
		case "IWI:":
			dst = &c.iwi
		case "RES:", "CAL:":
			dst = &c.ipi
		default:
			continue
		}
		// Per-CPU counts follow the name, then the description.
		for _, v := range f[1:] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				break
			}
			*dst += n
		}
	}
	return c, nil
}

// busyCPU is how the CPUs were used during a storm.
type busyCPU struct {
	wall   time.Duration
	busy   time.Duration // all CPUs, not idle (/proc/stat)
	others time.Duration // of that, not the workload, the tracer or the harness
}

// othersPercent is the CPU time of other processes, in percent of one CPU
// during the storm: other sessions' builds and tests on the machine.
func (b busyCPU) othersPercent() float64 {
	if b.wall <= 0 {
		return 0
	}
	return 100 * max(0, b.others.Seconds()) / b.wall.Seconds()
}

// undisturbed runs measure until other processes used less than
// busyWarning % of a CPU during its storm (others reports that), at most
// retries+1 times; it keeps the last measurement, which the report flags.
func undisturbed[R any](name string, measure func() (R, error), others func(R) float64) (R, error) {
	for attempt := 0; ; attempt++ {
		r, err := measure()
		if err != nil || others(r) < busyWarning || attempt >= retries {
			return r, err
		}
		fmt.Fprintf(os.Stderr, "%s: other processes used %.0f%% of a CPU during the storm: measuring again\n", name, others(r))
	}
}

// waitIdle waits until other processes used less than busyWarning % of a
// CPU for a whole second, or until idleWait has passed: other sessions'
// builds and test VMs on the same CPUs would slow the workload and the
// tracers unevenly.
func waitIdle() error {
	if idleWait <= 0 {
		return nil
	}
	deadline := time.Now().Add(idleWait)
	var lastSay time.Time
	for {
		s0, err := takeSample()
		if err != nil {
			return err
		}
		time.Sleep(time.Second)
		s1, err := takeSample()
		if err != nil {
			return err
		}
		busy := s1.since(s0).othersPercent()
		if busy < busyWarning {
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "machine still busy after %v (other processes: %.0f%% of a CPU): measuring anyway\n", idleWait, busy)
			return nil
		}
		if time.Since(lastSay) > 30*time.Second {
			fmt.Fprintf(os.Stderr, "waiting for an idle machine: other processes use %.0f%% of a CPU\n", busy)
			lastSay = time.Now()
		}
	}
}

// sample is what the harness reads just before and just after a storm.
type sample struct {
	at    time.Time
	busy  time.Duration // all CPUs, not idle
	procs time.Duration // the given processes and the harness itself
	irq   irqCounts
}

func takeSample(pids ...int) (sample, error) {
	s := sample{at: time.Now()}
	var err error
	if s.busy, err = machineBusy(); err != nil {
		return s, err
	}
	for _, pid := range pids {
		d, err := processCPU(pid)
		if err != nil {
			return s, err
		}
		s.procs += d
	}
	self, err := selfCPU()
	if err != nil {
		return s, err
	}
	s.procs += self
	if s.irq, err = readIRQs(); err != nil {
		return s, err
	}
	return s, nil
}

func (s sample) since(s0 sample) busyCPU {
	busy := s.busy - s0.busy
	return busyCPU{wall: s.at.Sub(s0.at), busy: busy, others: busy - (s.procs - s0.procs)}
}

// machineBusy is the CPU time of all CPUs that was not idle: user, nice,
// system, irq and softirq of the "cpu" line of /proc/stat.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system (idle iowait) irq softirq
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: field %d of %q: %w", i, line, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * clockTick, nil
}
