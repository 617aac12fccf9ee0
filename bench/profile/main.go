// Command profile measures what `owl profile -F 99` costs the program it
// samples: a busy C loop counts the work it gets done in -secs seconds,
// untraced and while `owl profile -F 99 -p PID` samples it, in turns
// (untraced, traced, untraced, ...). The cost is 1 - traced / untraced
// work per CPU-second of the loop (CLOCK_THREAD_CPUTIME_ID), medians over
// -runs: on kernels without CONFIG_IRQ_TIME_ACCOUNTING (this project's
// 6.18) the time of the timer interrupt, the perf sample and the BPF
// program is charged to the task it interrupts, so this counts what
// sampling takes from the loop, and leaves out what the machine's other
// load takes (work per wall-clock second, shown too, counts both). Each
// traced run also checks that owl took 99 ± 20 % samples per second of the
// loop's CPU time.
//
// At 99 Hz the cost is close to what a loaded machine lets the medians
// tell apart (runs differ by ±2 %), so the loop is also sampled at -hi Hz
// (9999): 100 times the samples, a cost well above the noise, which
// divided by the samples per CPU-second is the cost of one sample; times
// 99 it is the cost at 99 Hz. bpftrace 0.17 counting user stacks at the
// same rates (profile:hz:N, @[ustack] = count()) is measured alike, when
// installed: what any BPF profiler pays for the timer interrupt and a
// stack walk on this machine.
//
// With -python PATH it measures instead what the Python walk adds to a
// sample of a Python loop (python.go).
//
//	sudo go run ./bench/profile [-runs 7] [-secs 3] [-F 99] [-hi 9999] [-owl PATH] [-bpftrace PATH]
//	sudo go run ./bench/profile -python /usr/bin/python3.11 [-depth 0] [-slices 20] [-slice 500ms] [-hi 9999]
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/owlbpf/owl/bench/internal/harness"
)

// program waits for a line on stdin, then runs work() for argv[1]
// seconds and prints the iterations done, the wall time and its own CPU
// time (ns).
const program = `#include <stdio.h>
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;

__attribute__((noinline)) void work(void)
{
	for (int i = 0; i < 1000; i++)
		sink += i * sink;
}

static long long ns(clockid_t c)
{
	struct timespec t;

	clock_gettime(c, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv)
{
	long long secs = atoll(argv[1]), n = 0, w0, c0, end;
	char line[16];

	if (!fgets(line, sizeof(line), stdin))
		return 1;
	w0 = ns(CLOCK_MONOTONIC);
	c0 = ns(CLOCK_THREAD_CPUTIME_ID);
	end = w0 + secs * 1000000000LL;
	do {
		for (int i = 0; i < 1000; i++)
			work();
		n += 1000;
	} while (ns(CLOCK_MONOTONIC) < end);
	printf("%lld %lld %lld\n", n, ns(CLOCK_MONOTONIC) - w0, ns(CLOCK_THREAD_CPUTIME_ID) - c0);
	return 0;
}
`

// result is one run of the loop.
type result struct {
	work      float64 // iterations
	wall, cpu float64 // ns
	samples   uint64  // the profiler's samples
	perWall   float64 // iterations per wall second
	perCPU    float64 // iterations per CPU second
}

// profiler is one way of sampling the loop.
type profiler struct {
	name string
	hz   int
	args func(pid int) []string
	// ready matches the profiler's ready line; onStdout: it is printed on
	// stdout (bpftrace), else on stderr (owl).
	ready    *regexp.Regexp
	onStdout bool
	// settle is waited after the ready line: bpftrace prints its line
	// before it attaches.
	settle time.Duration
	// count matches the sample counts of its output, which are added up.
	count *regexp.Regexp
}

func owlProfiler(owl string, hz int) profiler {
	return profiler{
		name: fmt.Sprintf("owl profile -F %d", hz),
		hz:   hz,
		args: func(pid int) []string {
			return []string{owl, "profile", "-F", strconv.Itoa(hz), "-f", "-p", strconv.Itoa(pid)}
		},
		ready: regexp.MustCompile(`^Tracing `),
		count: regexp.MustCompile(` (\d+)$`),
	}
}

func bpftraceProfiler(bpftrace string, hz int) profiler {
	return profiler{
		name: fmt.Sprintf("bpftrace profile:hz:%d", hz),
		hz:   hz,
		args: func(pid int) []string {
			return []string{bpftrace, "-e", fmt.Sprintf("profile:hz:%d /pid == %d/ { @[ustack] = count(); }", hz, pid)}
		},
		ready:    regexp.MustCompile(`^Attaching `),
		onStdout: true,
		settle:   time.Second,
		count:    regexp.MustCompile(`\]: (\d+)$`),
	}
}

func main() {
	runs := flag.Int("runs", 7, "runs of each kind (the table shows medians)")
	secs := flag.Int("secs", 3, "seconds of work per run")
	freq := flag.Int("F", 99, "the frequency measured")
	hi := flag.Int("hi", 9999, "a high frequency, to measure the cost of one sample")
	owlPath := flag.String("owl", "", "owl binary (default: build ./cmd/owl)")
	bpftrace := flag.String("bpftrace", "bpftrace", "bpftrace binary (skipped when missing)")
	python := flag.String("python", "", "measure the Python walk's cost per sample on a loop run by this Python instead")
	depth := flag.Int("depth", 0, "with -python: more Python frames below the loop (4 without)")
	slices := flag.Int("slices", 20, "with -python: slices of each kind, walk on and off")
	slice := flag.Duration("slice", 500*time.Millisecond, "with -python: length of a slice")
	flag.Parse()
	if *python != "" {
		if err := pythonWalk(*python, *depth, *slices, *slice, *hi); err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*runs, *secs, *freq, *hi, *owlPath, *bpftrace); err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		os.Exit(1)
	}
}

func run(runs, secs, freq, hi int, owl, bpftrace string) error {
	dir, err := os.MkdirTemp("", "owl-bench-profile")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rev := ""
	if owl == "" {
		if owl, rev, err = harness.BuildOwl(dir); err != nil {
			return err
		}
	} else {
		rev = harness.Revision(owl)
	}
	src, bin := filepath.Join(dir, "busy.c"), filepath.Join(dir, "busy")
	if err := os.WriteFile(src, []byte(program), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("gcc", "-O1", "-fno-omit-frame-pointer", "-o", bin, src).CombinedOutput(); err != nil {
		return fmt.Errorf("gcc: %v: %s", err, out)
	}
	profilers := []profiler{owlProfiler(owl, freq), owlProfiler(owl, hi)}
	version := "no bpftrace"
	if path, err := exec.LookPath(bpftrace); err == nil {
		profilers = append(profilers, bpftraceProfiler(path, freq), bpftraceProfiler(path, hi))
		version = harness.BpftraceVersion(path)
	}
	base := make([]result, 0, runs)
	traced := make([][]result, len(profilers))
	for r := range runs {
		u, err := loop(bin, secs, nil)
		if err != nil {
			return err
		}
		base = append(base, u)
		line := fmt.Sprintf("run %d: work per CPU-s untraced %.4g", r+1, u.perCPU)
		for i, p := range profilers {
			t, err := loop(bin, secs, &p)
			if err != nil {
				return fmt.Errorf("run %d, %s: %w", r+1, p.name, err)
			}
			// Samples against CPU time: a count this small is Poisson-like
			// on a loaded machine, hence the 3 sigma.
			want := t.cpu / 1e9 * float64(p.hz)
			if d := float64(t.samples) - want; d < -(0.2*want+3*math.Sqrt(want)) || d > 0.2*want+3*math.Sqrt(want) {
				return fmt.Errorf("run %d, %s: %d samples for %.2f s of CPU time", r+1, p.name, t.samples, t.cpu/1e9)
			}
			traced[i] = append(traced[i], t)
			line += fmt.Sprintf(", %s %.4g (%d samples in %.2f CPU-s)", p.name, t.perCPU, t.samples, t.cpu/1e9)
		}
		fmt.Fprintln(os.Stderr, line)
	}
	median := func(rs []result, f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		return harness.Median(v)
	}
	wall := func(r result) float64 { return r.perWall }
	cpu := func(r result) float64 { return r.perCPU }
	fmt.Printf("owl %s; %s; a busy loop for %d s per run, medians of %d runs of each kind, in turns\n\n", rev, version, secs, runs)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "\twork per CPU s\tcost\tper sample (µs)\twork per wall s\tcost (with others' load)\t")
	bc, bw := median(base, cpu), median(base, wall)
	fmt.Fprintf(w, "untraced\t%.4g\t-\t-\t%.4g\t-\t\n", bc, bw)
	for i, p := range profilers {
		tc, tw := median(traced[i], cpu), median(traced[i], wall)
		cost := 1 - tc/bc
		fmt.Fprintf(w, "%s\t%.4g\t%.2f %%\t%.1f\t%.4g\t%.2f %%\t\n", p.name, tc, 100*cost, 1e6*cost/float64(p.hz), tw, 100*(1-tw/bw))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	perSample := (1 - median(traced[1], cpu)/bc) / float64(hi)
	fmt.Printf("\nowl, one sample (from -F %d): %.1f µs of the sampled task's CPU; at -F %d that is %.2f %%\n", hi, 1e6*perSample, freq, 100*perSample*float64(freq))
	return nil
}

// loop starts the program; with p, starts the profiler on the program's
// pid and waits until it is ready before the loop starts, and stops it
// with SIGINT after; returns the loop's numbers and the samples the
// profiler printed.
func loop(bin string, secs int, p *profiler) (result, error) {
	var r result
	prog := exec.Command(bin, strconv.Itoa(secs))
	stdin, err := prog.StdinPipe()
	if err != nil {
		return r, err
	}
	stdout, err := prog.StdoutPipe()
	if err != nil {
		return r, err
	}
	if err := prog.Start(); err != nil {
		return r, err
	}
	defer prog.Process.Kill()
	var tracer *exec.Cmd
	counted := make(chan uint64, 1)
	if p != nil {
		args := p.args(prog.Process.Pid)
		tracer = exec.Command(args[0], args[1:]...)
		out, err := tracer.StdoutPipe()
		if err != nil {
			return r, err
		}
		errs, err := tracer.StderrPipe()
		if err != nil {
			return r, err
		}
		if err := tracer.Start(); err != nil {
			return r, err
		}
		defer tracer.Process.Kill()
		// One reader per pipe: each may hold the ready line, stdout holds
		// the counts.
		ready := make(chan error, 2)
		scan := func(rd io.Reader, readyHere, counts bool, n chan<- uint64) {
			sc := bufio.NewScanner(rd)
			sc.Buffer(make([]byte, 1<<16), 1<<20)
			var c uint64
			seen := false
			for sc.Scan() {
				if readyHere && !seen && p.ready.MatchString(sc.Text()) {
					seen = true
					ready <- nil
					continue
				}
				if m := p.count.FindStringSubmatch(sc.Text()); counts && m != nil {
					v, _ := strconv.ParseUint(m[1], 10, 64)
					c += v
				}
			}
			if readyHere && !seen {
				ready <- errors.New("ended before it was ready")
			}
			if n != nil {
				n <- c
			}
		}
		go scan(out, p.onStdout, true, counted)
		go scan(errs, !p.onStdout, false, nil)
		select {
		case err := <-ready:
			if err != nil {
				return r, err
			}
		case <-time.After(30 * time.Second):
			return r, errors.New("not ready within 30 s")
		}
		time.Sleep(p.settle)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return r, err
	}
	b, err := io.ReadAll(stdout)
	if err != nil {
		return r, err
	}
	if err := prog.Wait(); err != nil {
		return r, fmt.Errorf("%s: %w", bin, err)
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return r, fmt.Errorf("%s printed %q", bin, b)
	}
	for i, v := range []*float64{&r.work, &r.wall, &r.cpu} {
		if *v, err = strconv.ParseFloat(f[i], 64); err != nil {
			return r, fmt.Errorf("%s printed %q", bin, b)
		}
	}
	r.perWall, r.perCPU = r.work/(r.wall/1e9), r.work/(r.cpu/1e9)
	if tracer != nil {
		tracer.Process.Signal(syscall.SIGINT)
		select {
		case r.samples = <-counted:
		case <-time.After(30 * time.Second):
			return r, errors.New("did not end within 30 s of SIGINT")
		}
		if err := tracer.Wait(); err != nil {
			return r, err
		}
	}
	return r, nil
}
