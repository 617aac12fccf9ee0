// Command pyframes measures what walking Python frames adds to each event
// of `owl opensnoop --ustack`: a Python program opens and closes /dev/null
// N times from leaf() ← mid() ← top() (plus -depth more frames of
// recursion), timing its own loop, in rounds: untraced, then traced with
// --ustack with the Python walk on and off in turns (off: the process is
// taken out of the walk's table, so everything else, the native stack
// included, stays). It prints the loop's cost per open in each mode and,
// from the kernel's BPF statistics (kernel.bpf_stats_enabled), the entry
// program's run time per event, walk on and off, and owl's own CPU time
// per event (reading, naming, merging). Medians over the rounds.
//
//	sudo go run ./bench/pyframes [-n 20000] [-rounds 5] [-depth 0] [-python /usr/bin/python3.11]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/bench/internal/harness"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/opensnoop"
)

// program runs N opens for each line it reads and prints the loop's
// length in ns; depth adds recursive frames below top().
const program = `import os, sys, time
N, DEPTH = int(sys.argv[1]), int(sys.argv[2])
def leaf():
    os.close(os.open("/dev/null", os.O_RDONLY))
def mid():
    leaf()
def top():
    mid()
def deep(d):
    if d:
        return deep(d - 1)
    for _ in range(N):
        top()
print("ready", flush=True)
for line in sys.stdin:
    t = time.perf_counter_ns()
    deep(DEPTH)
    print(time.perf_counter_ns() - t, flush=True)
`

func main() {
	n := flag.Int("n", 20000, "opens per round")
	rounds := flag.Int("rounds", 5, "rounds of each traced mode")
	depth := flag.Int("depth", 0, "extra Python frames below top()")
	python := flag.String("python", "/usr/bin/python3.11", "the Python to run")
	flag.Parse()
	if err := run(*python, *n, *rounds, *depth); err != nil {
		fmt.Fprintln(os.Stderr, "pyframes:", err)
		os.Exit(1)
	}
}

type workload struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func (w *workload) round() (time.Duration, error) {
	if _, err := io.WriteString(w.in, "go\n"); err != nil {
		return 0, err
	}
	if !w.out.Scan() {
		return 0, fmt.Errorf("workload ended: %v", w.out.Err())
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(w.out.Text()), 10, 64)
	return time.Duration(ns), err
}

func run(python string, n, rounds, depth int) error {
	if err := harness.EnsureTracefs(); err != nil {
		return err
	}
	cmd := exec.Command(python, "-c", program, strconv.Itoa(n), strconv.Itoa(depth))
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { in.Close(); cmd.Wait() }()
	w := &workload{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	if !w.out.Scan() || w.out.Text() != "ready" {
		return fmt.Errorf("workload did not start: %q", w.out.Text())
	}
	var untraced []float64
	for range rounds {
		d, err := w.round()
		if err != nil {
			return err
		}
		untraced = append(untraced, float64(d.Nanoseconds())/float64(n))
	}

	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable BPF statistics: %w", err)
	}
	defer stats.Close()
	opts := tool.DefaultOptions()
	opts.Task.PID = cmd.Process.Pid
	src, err := opensnoop.Open(opensnoop.Config{UStack: true}, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	var objs struct {
		Procs *ebpf.Map     `ebpf:"owl_py_procs"`
		Enter *ebpf.Program `ebpf:"tp_enter_openat"`
	}
	if err := src.Assign(&objs); err != nil {
		return err
	}
	pid := uint32(cmd.Process.Pid)
	var rec [56]byte // struct owl_py_proc, put back as it was
	if err := objs.Procs.Lookup(pid, &rec); err != nil {
		return fmt.Errorf("the workload is not in the walk's table: %w", err)
	}
	var events, pyEvents atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(e *opensnoop.Event) {
			events.Add(1)
			for _, f := range e.UStack {
				if f.Lang == "python" && f.Symbol == "leaf" {
					pyEvents.Add(1)
					break
				}
			}
		})
	}()
	// The program also runs (and returns at once) for other processes'
	// opens: its time is divided by the workload's opens, and the walk's
	// cost is the difference between the two modes.
	progRun := func() (time.Duration, uint64, error) {
		st, err := objs.Enter.Stats()
		if err != nil {
			return 0, 0, err
		}
		return st.Runtime, st.RunCount, nil
	}
	loop := map[bool][]float64{}
	prog := map[bool][]float64{}
	reader := map[bool][]float64{} // owl's own CPU time (this process: decoding, naming)
	cpu := func() time.Duration {
		var ru unix.Rusage
		unix.Getrusage(unix.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	for r := range 2 * rounds {
		walk := r%2 == 0
		if walk {
			err = objs.Procs.Put(pid, rec)
		} else {
			err = objs.Procs.Delete(pid)
		}
		if err != nil {
			return err
		}
		rt0, c0, err := progRun()
		if err != nil {
			return err
		}
		cpu0, ev0 := cpu(), events.Load()
		d, err := w.round()
		if err != nil {
			return err
		}
		rt1, c1, err := progRun()
		if err != nil {
			return err
		}
		// Wait for the reader to have every event of the round.
		for deadline := time.Now().Add(10 * time.Second); events.Load()-ev0 < uint64(n) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		reader[walk] = append(reader[walk], float64((cpu()-cpu0).Nanoseconds())/float64(n))
		loop[walk] = append(loop[walk], float64(d.Nanoseconds())/float64(n))
		if c1-c0 >= uint64(n) {
			prog[walk] = append(prog[walk], float64((rt1-rt0).Nanoseconds())/float64(n))
		}
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		return err
	}
	st, _ := src.Stats()

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s, %d opens a round, %d rounds each, %d Python frames a stack\n", python, n, rounds, 4+depth+1)
	fmt.Fprintf(tw, "mode\tloop ns/open\tentry program ns/event\towl CPU ns/event\n")
	fmt.Fprintf(tw, "untraced\t%.0f\t-\t-\n", harness.Median(untraced))
	for _, walk := range []bool{false, true} {
		name := map[bool]string{false: "--ustack, Python walk off", true: "--ustack, Python walk on"}[walk]
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.0f\n", name, harness.Median(loop[walk]), harness.Median(prog[walk]), harness.Median(reader[walk]))
	}
	tw.Flush()
	fmt.Printf("walk adds %.0f ns per event in the kernel (BPF run time), %.0f ns per open to the loop\n",
		harness.Median(prog[true])-harness.Median(prog[false]), harness.Median(loop[true])-harness.Median(loop[false]))
	fmt.Printf("events %d (with leaf() named: %d), lost %d\n", events.Load(), pyEvents.Load(), st.Lost())
	return nil
}
