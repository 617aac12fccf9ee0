// Command startup measures how long `owl tcpconnect` takes from exec until it
// is tracing, and its peak RSS, idle and under a burst of loopback connects;
// it measures bpftrace 0.17 running the equivalent tracepoint program the
// same way, for comparison.
//
//	sudo go run ./bench/startup [-n 20] [-owl PATH]
//
// Every connect the harness makes goes to a listener on 127.0.0.1.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/owlbpf/owl/bench/internal/harness"
)

// bpftraceProgram is tcpconnect's tracepoint hook written for bpftrace:
// TCP_CLOSE (7) -> TCP_SYN_SENT (2), in the connecting task.
const bpftraceProgram = `tracepoint:sock:inet_sock_set_state /args->oldstate == 7 && args->newstate == 2/ { printf("%d %s\n", pid, comm); }`

const (
	readyTimeout = 30 * time.Second // from exec to the ready signal
	exitTimeout  = 10 * time.Second // from SIGINT to exit
	idleTimeout  = 2 * time.Second  // under load: no new line for this long ends the wait
	tickInterval = time.Millisecond // first-event runs: one connect per tick
	// hold is how long a tool keeps running after it is ready, before
	// SIGINT. bpftrace 0.17 misses a SIGINT that comes right after its
	// "Attaching" line, before it waits for events: it then sleeps in
	// epoll_wait until the next event arrives.
	hold = 100 * time.Millisecond
)

// tool is a tracer under test and how to read its output.
type tool struct {
	name        string
	argv        []string
	readyStdout bool   // the ready line is on stdout (bpftrace), not stderr (owl)
	readyPrefix string // the line the tool prints once it says it is tracing
	header      string // prefix of stdout lines that are not events
	// ours reports whether the fields of a stdout line are an event for one
	// of the harness's own connects.
	ours func(fields []string) bool
}

// mode is what one run measures.
type mode int

const (
	// announce: time until the tool's ready line, no load.
	announce mode = iota
	// firstEvent: time until the first event for a connect the harness
	// makes every tickInterval from just before exec.
	firstEvent
	// underLoad: wait for the first event as in firstEvent, then make
	// -connects connects and count the lines printed for them. (Waiting for
	// the ready line is not enough: bpftrace prints it before it attaches, and
	// the first connects of the burst would go unseen.)
	underLoad
)

// line is one line a tool printed, with when the harness read it.
type line struct {
	stdout bool
	text   string
	at     time.Duration // since just before exec
}

// result is what one run measured.
type result struct {
	ready      time.Duration
	maxRSS     int64         // KiB: ru_maxrss of the waited-for process
	hwm        int64         // KiB: VmHWM of the process just before SIGINT
	harnessRSS int64         // KiB: the harness's own RSS at exec (a floor for maxRSS)
	lines      int           // stdout lines other than headers and blank lines
	ours       int           // of those, lines for the harness's connects
	others     []string      // the first stdout lines that were not for those connects
	burst      time.Duration // under load: how long the connects took
	stderr     []string
}

func main() {
	n := flag.Int("n", 20, "runs of owl tcpconnect")
	owlPath := flag.String("owl", "", "owl binary to measure (default: build ./cmd/owl)")
	slowN := flag.Int("m", 5, "runs of bpftrace, and of the first-event measurement of each tool")
	connects := flag.Int("connects", 2000, "connects to 127.0.0.1 in the under-load run")
	bpftracePath := flag.String("bpftrace", "bpftrace", "bpftrace binary to compare with")
	flag.Parse()
	if err := run(*n, *slowN, *connects, *owlPath, *bpftracePath); err != nil {
		fmt.Fprintf(os.Stderr, "startup: %v\n", err)
		os.Exit(1)
	}
}

func run(n, slowN, connects int, owlPath, bpftracePath string) error {
	if n < 1 || slowN < 1 || connects < 1 {
		return errors.New("-n, -m and -connects must be at least 1")
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: sudo go run ./bench/startup")
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

	lb, err := listenLoopback()
	if err != nil {
		return err
	}
	defer lb.Close()

	pid := strconv.Itoa(os.Getpid())
	port := strconv.Itoa(lb.port)
	owl := tool{
		name:        "owl tcpconnect",
		argv:        []string{owlPath, "tcpconnect"},
		readyPrefix: "Tracing ",
		header:      "PID ",
		// PID COMM IP SADDR DADDR DPORT; COMM may hold blanks, so DADDR and
		// DPORT are taken from the end.
		ours: func(f []string) bool {
			return len(f) >= 6 && f[0] == pid && f[len(f)-2] == "127.0.0.1" && f[len(f)-1] == port
		},
	}
	fmt.Printf("owl:      %s (%s)\n", owlPath, rev)
	rows, loads, err := bench(owl, `"Tracing" on stderr`, n, slowN, connects, lb)
	if err != nil {
		return err
	}

	if bt, err := bpftraceTool(bpftracePath, pid); err != nil {
		fmt.Printf("bpftrace: skipped: %v\n", err)
	} else {
		fmt.Printf("bpftrace: %s (%s)\n", bt.argv[0], harness.BpftraceVersion(bt.argv[0]))
		r, l, err := bench(bt, `"Attaching" on stdout`, slowN, slowN, connects, lb)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
		loads = append(loads, l...)
	}

	fmt.Println()
	return report(rows, loads)
}

// bench measures t: runs times the time to its ready line, slowN times the
// time to its first event, and once its output and memory under load.
func bench(t tool, signal string, runs, slowN, connects int, lb *loopback) ([]row, []loadResult, error) {
	ready, err := measure(t, announce, runs, 0, lb)
	if err != nil {
		return nil, nil, err
	}
	first, err := measure(t, firstEvent, slowN, 0, lb)
	if err != nil {
		return nil, nil, err
	}
	load, err := measure(t, underLoad, 1, connects, lb)
	if err != nil {
		return nil, nil, err
	}
	rows := []row{
		{tool: t.name, signal: signal, results: ready},
		{tool: t.name, signal: "first event on stdout", results: first},
	}
	return rows, []loadResult{{tool: t.name, connects: connects, result: load[0]}}, nil
}

// bpftraceTool finds bpftrace; an error means the comparison is skipped.
func bpftraceTool(path, pid string) (tool, error) {
	p, err := exec.LookPath(path)
	if err != nil {
		return tool{}, fmt.Errorf("not installed: %w", err)
	}
	return tool{
		name: "bpftrace",
		argv: []string{p, "-e", bpftraceProgram},
		// bpftrace 0.17 prints this on stdout before it loads and attaches
		// the program (strace: write(1, "Attaching 1 probe...") comes before
		// BPF_PROG_LOAD and PERF_EVENT_IOC_SET_BPF), so it is an optimistic
		// ready signal; the first-event runs give the real one.
		readyStdout: true,
		readyPrefix: "Attaching ",
		header:      "Attaching ",
		ours:        func(f []string) bool { return len(f) >= 2 && f[0] == pid },
	}, nil
}

// measure runs t runs times in mode m and prints one line per run.
func measure(t tool, m mode, runs, connects int, lb *loopback) ([]result, error) {
	var results []result
	for i := range runs {
		r, err := runOnce(t, m, connects, lb)
		if err != nil {
			return nil, fmt.Errorf("%s, %s run %d: %w", t.name, m, i+1, err)
		}
		fmt.Fprintf(os.Stderr, "%-15s %-11s run %2d: ready %7.1f ms  maxrss %6.1f MB  VmHWM %6.1f MB  harness %5.1f MB\n",
			t.name, m, i+1, ms(r.ready), mb(r.maxRSS), mb(r.hwm), mb(r.harnessRSS))
		results = append(results, r)
	}
	return results, nil
}

func (m mode) String() string {
	switch m {
	case announce:
		return "announce"
	case firstEvent:
		return "first-event"
	case underLoad:
		return "under-load"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// runOnce starts t, waits until it is ready as m defines, applies the load of
// m, then stops it with SIGINT and collects its output and resource usage.
func runOnce(t tool, m mode, connects int, lb *loopback) (result, error) {
	var res result
	cmd := exec.Command(t.argv[0], t.argv[1:]...)

	// Lines from both pipes go to one channel, stamped when read. The buffer
	// holds every line of a run, so the readers never wait for this loop.
	lines := make(chan line, 4*connects+1024)
	var readEnds []*os.File        // read by the harness, with stdout or not
	var readStdout []bool          // for each of readEnds
	var closeAfterStart []*os.File // the child's ends
	defer func() {
		for _, f := range append(readEnds, closeAfterStart...) {
			f.Close()
		}
	}()
	pipe := func(stdout bool) (*os.File, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("pipe: %w", err)
		}
		readEnds = append(readEnds, r)
		readStdout = append(readStdout, stdout)
		closeAfterStart = append(closeAfterStart, w)
		return w, nil
	}

	// owl's ready line is on stderr: its idle runs send stdout to /dev/null.
	// Other runs read stdout for bpftrace's ready line or for events.
	if m == announce && !t.readyStdout {
		devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return res, fmt.Errorf("open %s: %w", os.DevNull, err)
		}
		closeAfterStart = append(closeAfterStart, devNull)
		cmd.Stdout = devNull
	} else {
		w, err := pipe(true)
		if err != nil {
			return res, err
		}
		cmd.Stdout = w
	}
	w, err := pipe(false)
	if err != nil {
		return res, err
	}
	cmd.Stderr = w

	// First-event and under-load runs connect from before exec, so the first
	// event printed shows when the probe began to see connects.
	stopTicker := func() {}
	if m == firstEvent || m == underLoad {
		stopTicker = lb.tick(tickInterval)
	}
	defer stopTicker()

	if res.harnessRSS, err = resetPeakRSS(); err != nil {
		return res, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, fmt.Errorf("start %s: %w", t.argv[0], err)
	}
	for _, f := range closeAfterStart {
		f.Close()
	}
	closeAfterStart = nil
	var readers sync.WaitGroup
	for i, r := range readEnds {
		stdout := readStdout[i]
		readers.Go(func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				lines <- line{stdout: stdout, text: sc.Text(), at: time.Since(start)}
			}
		})
	}
	allRead := make(chan struct{})
	go func() {
		readers.Wait()
		close(allRead)
	}()

	kill := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	// take handles one line: it counts events and keeps stderr for errors.
	take := func(l line) {
		switch {
		case !l.stdout:
			res.stderr = append(res.stderr, l.text)
		case strings.TrimSpace(l.text) == "" || strings.HasPrefix(l.text, t.header):
		default:
			res.lines++
			if t.ours(strings.Fields(l.text)) {
				res.ours++
			} else if len(res.others) < 5 {
				res.others = append(res.others, l.text)
			}
		}
	}

	// Wait for the ready signal.
	timeout := time.After(readyTimeout)
	for res.ready == 0 {
		select {
		case l := <-lines:
			take(l)
			switch m {
			case announce:
				if l.stdout == t.readyStdout && strings.HasPrefix(l.text, t.readyPrefix) {
					res.ready = l.at
				}
			case firstEvent, underLoad:
				if res.ours > 0 {
					res.ready = l.at
				}
			}
		case <-allRead:
			drain(lines, take)
			cmd.Wait()
			return res, fmt.Errorf("exited before it was ready (%v): %s", cmd.ProcessState, harness.LastLines(res.stderr))
		case <-timeout:
			kill()
			return res, fmt.Errorf("not ready after %v: %s", readyTimeout, harness.LastLines(res.stderr))
		}
	}
	stopTicker()

	if m == underLoad {
		// Count the burst only: let the lines of the ticker's connects
		// arrive, then start counting afresh.
		time.Sleep(hold)
		drain(lines, take)
		res.lines, res.ours, res.others = 0, 0, nil
		if err := waitForEvents(lb, connects, lines, take, &res); err != nil {
			kill()
			return res, err
		}
	}

	time.Sleep(hold) // the tool's output waits in the lines buffer
	if res.hwm, err = peakRSS(cmd.Process.Pid); err != nil {
		kill()
		return res, err
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		kill()
		return res, fmt.Errorf("SIGINT: %w", err)
	}
	timeout = time.After(exitTimeout)
	for done := false; !done; {
		select {
		case l := <-lines:
			take(l)
		case <-allRead:
			drain(lines, take)
			done = true
		case <-timeout:
			kill()
			return res, fmt.Errorf("still running %v after SIGINT", exitTimeout)
		}
	}
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("exit after SIGINT: %w: %s", err, harness.LastLines(res.stderr))
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return res, errors.New("no rusage for the process")
	}
	res.maxRSS = ru.Maxrss
	return res, nil
}

// waitForEvents makes connects connects while the lines keep being read,
// then waits until a line arrived for each or no line came for idleTimeout.
func waitForEvents(lb *loopback, connects int, lines <-chan line, take func(line), res *result) error {
	dialed := make(chan error, 1)
	start := time.Now()
	go func() {
		err := lb.connect(connects)
		res.burst = time.Since(start) // read only after dialed delivers
		dialed <- err
	}()
	dialing := true
	idle := time.NewTimer(idleTimeout)
	defer idle.Stop()
	for dialing || res.ours < connects {
		select {
		case l := <-lines:
			take(l)
			idle.Reset(idleTimeout)
		case err := <-dialed:
			if err != nil {
				return err
			}
			dialing = false
			idle.Reset(idleTimeout)
		case <-idle.C:
			if !dialing {
				return nil // fewer lines than connects: the report says so
			}
			idle.Reset(idleTimeout)
		}
	}
	return nil
}

func drain(lines <-chan line, take func(line)) {
	for {
		select {
		case l := <-lines:
			take(l)
		default:
			return
		}
	}
}

// resetPeakRSS sets the harness's own peak RSS to its current RSS and
// returns that, in KiB. Go starts children with clone(CLONE_VM|CLONE_VFORK),
// and exec folds the parent's peak RSS into the child's ru_maxrss: without
// the reset the harness's peak would show up as the tool's.
func resetPeakRSS() (int64, error) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		return 0, fmt.Errorf("reset peak RSS: %w", err)
	}
	return statusKiB("/proc/self/status", "VmRSS:")
}

// peakRSS is VmHWM of process pid, in KiB: its own peak RSS since exec.
func peakRSS(pid int) (int64, error) {
	return statusKiB("/proc/"+strconv.Itoa(pid)+"/status", "VmHWM:")
}

func statusKiB(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	for l := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(rest) // "1234 kB"
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("%s: bad %s line %q", path, key, l)
			}
			v, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", path, key, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s line", path, key)
}

// loopback is a TCP listener on 127.0.0.1 that accepts and closes every
// connection; the harness only ever connects to it.
type loopback struct {
	ln   net.Listener
	addr string
	port int
}

func listenLoopback() (*loopback, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1: %w", err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			c.Close()
		}
	}()
	a := ln.Addr().(*net.TCPAddr)
	return &loopback{ln: ln, addr: a.String(), port: a.Port}, nil
}

func (lb *loopback) Close() error { return lb.ln.Close() }

// dial makes one connect to the listener. Closing with linger 0 resets the
// connection, so thousands of connects leave no TIME_WAIT sockets behind.
func (lb *loopback) dial() error {
	c, err := net.DialTimeout("tcp4", lb.addr, time.Second)
	if err != nil {
		return fmt.Errorf("connect %s: %w", lb.addr, err)
	}
	c.(*net.TCPConn).SetLinger(0)
	return c.Close()
}

// connect makes n connects, one after the other.
func (lb *loopback) connect(n int) error {
	for range n {
		if err := lb.dial(); err != nil {
			return err
		}
	}
	return nil
}

// tick connects every interval until the returned stop is called; stop may
// be called more than once. Connect errors are ignored: a missed tick only
// delays the first event by one interval.
func (lb *loopback) tick(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			lb.dial()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// row is one line of the report table.
type row struct {
	tool    string
	signal  string
	results []result
}

type loadResult struct {
	tool     string
	connects int
	result   result
}

func report(rows []row, loads []loadResult) error {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "tool\tready signal\truns\tmin ms\tmedian ms\tp90 ms\tmax ms\tpeak RSS MB\tVmHWM MB\t")
	var harnessMax int64 // the largest harness RSS at exec of any run
	var floored []string
	for _, r := range rows {
		var ready, rss, hwm []float64
		for _, x := range r.results {
			ready = append(ready, ms(x.ready))
			rss = append(rss, mb(x.maxRSS))
			hwm = append(hwm, mb(x.hwm))
			harnessMax = max(harnessMax, x.harnessRSS)
			if x.maxRSS <= x.harnessRSS {
				floored = append(floored, r.tool)
			}
		}
		slices.Sort(ready)
		fmt.Fprintf(w, "%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n",
			r.tool, r.signal, len(ready), ready[0], harness.Median(ready), p90(ready), ready[len(ready)-1], harness.Median(rss), harness.Median(hwm))
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	fmt.Println()
	for _, l := range loads {
		r := l.result
		verdict := "OK: one line per connect"
		if r.ours != l.connects {
			verdict = fmt.Sprintf("MISMATCH: %d lines for %d connects", r.ours, l.connects)
		}
		fmt.Printf("under load: %s, %d connects to 127.0.0.1 in %.0f ms: %d event lines (%d for those connects), peak RSS %.1f MB, VmHWM %.1f MB: %s\n",
			l.tool, l.connects, ms(r.burst), r.lines, r.ours, mb(r.maxRSS), mb(r.hwm), verdict)
		for _, s := range r.others {
			fmt.Printf("  %s stdout: %s\n", l.tool, s)
		}
		for _, s := range r.stderr {
			if !strings.HasPrefix(s, "Tracing ") && !strings.Contains(s, "RLIMIT_MEMLOCK") {
				fmt.Printf("  %s stderr: %s\n", l.tool, s)
			}
		}
	}
	fmt.Println()
	fmt.Println("ms: from just before exec to the line the harness read. MB = 1024 KiB.")
	fmt.Println("peak RSS: ru_maxrss from wait4; it includes children the tool reaped (bpftrace's clang-14)")
	fmt.Printf("  and cannot be below the harness's own RSS at exec (at most %.1f MB in any run).\n", mb(harnessMax))
	if len(floored) > 0 {
		fmt.Printf("  WARNING: in some runs of %s the peak RSS is the harness's: use VmHWM.\n", strings.Join(slices.Compact(floored), ", "))
	}
	fmt.Printf("VmHWM: the tool process's own peak RSS, read %v after ready, just before SIGINT.\n", hold)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func mb(kib int64) float64       { return float64(kib) / 1024 }

// p90 is the nearest-rank 90th percentile of sorted values.
func p90(s []float64) float64 {
	i := int(math.Ceil(0.9*float64(len(s)))) - 1
	return s[max(0, i)]
}
