package main

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/bench/internal/harness"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/profile"
)

// pyProgram runs work() ← spin() ← deep() (depth more deep() frames) ←
// <module> for the seconds each stdin line says, and prints the work done,
// the wall time and its own CPU time (ns).
const pyProgram = `import sys, time
DEPTH = int(sys.argv[1])
def work():
    s = 0
    for i in range(1000):
        s += i * i
    return s
def spin(secs):
    n, end = 0, time.monotonic() + secs
    while time.monotonic() < end:
        for _ in range(10):
            work()
        n += 10
    return n
def deep(d, secs):
    if d:
        return deep(d - 1, secs)
    return spin(secs)
print("ready", flush=True)
for line in sys.stdin:
    w, c = time.perf_counter_ns(), time.thread_time_ns()
    n = deep(DEPTH, float(line))
    print(n, time.perf_counter_ns() - w, time.thread_time_ns() - c, flush=True)
`

// pySlice is one slice of sampling, walk on or off.
type pySlice struct {
	walk    bool
	samples uint64  // the loop's samples
	named   uint64  // of which with work() named as a Python frame
	runs    uint64  // the sample program's runs: the loop's samples and the other tasks' (filtered out)
	runNs   float64 // the program's run time in the slice
	ns      float64 // per sample of the loop, once the other runs' time is taken out
}

// pythonWalk measures what the Python walk adds to each sample: a Python
// loop is sampled by profile at hz (in this process, pid filter, both
// stacks) in slices of slice, with the walk on and off in turns (off: the
// process taken out of owl_py_procs, so the native stacks stay). The
// kernel's BPF statistics give the sample program's run time and runs in
// each slice. The program also runs for every other task's samples (the
// pid filter is in it), about a microsecond each here, and how many of
// those a slice has varies with the machine's load: so the run time is
// fitted, by least squares over all slices, as a cost per sample of the
// loop with the walk off, one with it on, and one per other run. The
// difference between the first two is the walk's cost; the medians per
// slice (the other runs' fitted time taken out) are shown too. Slices,
// not whole runs, so that both modes see the same load.
func pythonWalk(python string, depth, slices int, slice time.Duration, hz int) error {
	if err := harness.EnsureTracefs(); err != nil {
		return err
	}
	cmd := exec.Command(python, "-c", pyProgram, strconv.Itoa(depth))
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { in.Close(); cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		return fmt.Errorf("%s did not start: %q", python, sc.Text())
	}
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return fmt.Errorf("enable BPF statistics: %w", err)
	}
	defer stats.Close()
	pid := cmd.Process.Pid
	opts := tool.DefaultOptions()
	opts.Task.PID = pid
	src, err := profile.Open(profile.Config{KStack: true, UStack: true, Freq: hz}, opts)
	if err != nil {
		return err
	}
	defer src.Close()
	var objs struct {
		Procs  *ebpf.Map     `ebpf:"owl_py_procs"`
		Sample *ebpf.Program `ebpf:"sample"`
	}
	if err := src.Assign(&objs); err != nil {
		return err
	}
	var rec [56]byte // struct owl_py_proc, put back as it was
	if err := objs.Procs.Lookup(uint32(pid), &rec); err != nil {
		return fmt.Errorf("the loop is not in the walk's table: %w", err)
	}
	runtime := func() (time.Duration, uint64, error) {
		st, err := objs.Sample.Stats()
		if err != nil {
			return 0, 0, err
		}
		return st.Runtime, st.RunCount, nil
	}
	// One run of the loop for all slices (it is killed at the end).
	if _, err := fmt.Fprintln(in, 86400); err != nil {
		return err
	}
	var results []pySlice
	for i := range 2 * slices {
		walk := i%2 == 1
		if walk {
			err = objs.Procs.Put(uint32(pid), rec)
		} else {
			err = objs.Procs.Delete(uint32(pid))
		}
		if err != nil {
			return err
		}
		// The samples of the last mode out, then the slice.
		if _, err := src.Stacks(time.Now()); err != nil {
			return err
		}
		rt0, n0, err := runtime()
		if err != nil {
			return err
		}
		time.Sleep(slice)
		rt1, n1, err := runtime()
		if err != nil {
			return err
		}
		// The few samples taken after the second read are counted here
		// without their run time: microseconds of a 500 ms slice.
		stacks, err := src.Stacks(time.Now())
		if err != nil {
			return err
		}
		res := pySlice{walk: walk, runs: n1 - n0, runNs: float64((rt1 - rt0).Nanoseconds())}
		for _, st := range stacks {
			res.samples += st.Count
			for _, fr := range st.UStack {
				if fr.Lang == "python" && fr.Symbol == "work" {
					res.named += st.Count
					break
				}
			}
		}
		if res.samples == 0 {
			return errors.New("no samples of the loop in a slice")
		}
		if walk && float64(res.named) < 0.9*float64(res.samples) {
			return fmt.Errorf("only %d of %d samples have work() named", res.named, res.samples)
		}
		if !walk && res.named != 0 {
			return fmt.Errorf("walk off: %d samples with work() named", res.named)
		}
		results = append(results, res)
		fmt.Fprintf(os.Stderr, "slice %d, walk %v: %d samples (%d named) of %d runs, %.0f ns/sample with the other runs\n",
			i+1, walk, res.samples, res.named, res.runs, res.runNs/float64(res.samples))
	}
	fit, err := fitSlices(results)
	if err != nil {
		return err
	}
	median := func(walk bool) float64 {
		var v []float64
		for _, r := range results {
			if r.walk == walk {
				v = append(v, (r.runNs-fit[2]*float64(r.runs-r.samples))/float64(r.samples))
			}
		}
		return harness.Median(v)
	}
	st, err := src.Stats()
	if err != nil {
		return err
	}
	fmt.Printf("%s, %d Python frames a stack, -F %d, %d slices of %v each, walk on and off in turns; lost %d\n\n", python, 4+depth, hz, slices, slice, st.Lost())
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "\tBPF run time per sample of the loop (ns): fitted\tmedian of slices\t")
	for i, walk := range []bool{false, true} {
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t\n", map[bool]string{false: "Python walk off", true: "Python walk on"}[walk], fit[i], median(walk))
	}
	fmt.Fprintf(w, "another task's sample (filtered out)\t%.0f\t-\t\n", fit[2])
	if err := w.Flush(); err != nil {
		return err
	}
	walk := fit[1] - fit[0]
	fmt.Printf("\nthe Python walk adds %.0f ns per sample (fitted; %.0f from the medians); at -F 99 that is %.4f %% of the sampled CPU\n",
		walk, median(true)-median(false), 100*walk*1e-9*99)
	return nil
}

// fitSlices fits run time = x0 × samples (walk off) + x1 × samples (walk
// on) + x2 × other runs, by least squares over the slices.
func fitSlices(slices []pySlice) ([3]float64, error) {
	var a [3][4]float64 // normal equations, augmented
	for _, s := range slices {
		row := [3]float64{0, 0, float64(s.runs - s.samples)}
		if s.walk {
			row[1] = float64(s.samples)
		} else {
			row[0] = float64(s.samples)
		}
		for i := range 3 {
			for j := range 3 {
				a[i][j] += row[i] * row[j]
			}
			a[i][3] += row[i] * s.runNs
		}
	}
	// Gauss-Jordan with partial pivoting.
	for c := range 3 {
		p := c
		for r := c + 1; r < 3; r++ {
			if math.Abs(a[r][c]) > math.Abs(a[p][c]) {
				p = r
			}
		}
		if a[p][c] == 0 {
			return [3]float64{}, errors.New("cannot fit the slices: too few, or no other runs")
		}
		a[c], a[p] = a[p], a[c]
		for r := range 3 {
			if r != c {
				f := a[r][c] / a[c][c]
				for k := c; k < 4; k++ {
					a[r][k] -= f * a[c][k]
				}
			}
		}
	}
	return [3]float64{a[0][3] / a[0][0], a[1][3] / a[1][1], a[2][3] / a[2][2]}, nil
}
