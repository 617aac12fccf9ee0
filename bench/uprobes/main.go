// Command uprobes measures what counting and timing a user function costs
// per call: a C program calls work(i) N times in a loop and measures the
// loop with its own clock, untraced, then traced by `owl funccount`,
// bpftrace 0.17's count(), `owl funclatency` and libbpf-tools' funclatency,
// in turns. The cost per call is (traced loop - untraced loop) / N, medians
// over -runs. Each traced run also checks that the tracer saw all N calls.
//
//	sudo go run ./bench/uprobes [-n 10000000] [-runs 3] [-owl PATH]
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
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

// program calls work(i) argv[1] times and prints the loop's length in ns.
// noinline and -O1: one real call per iteration, as in the tests.
const program = `#include <stdio.h>
#include <stdlib.h>
#include <time.h>

__attribute__((noinline)) long work(long i)
{
	return i * 2 + 1;
}

int main(int argc, char **argv)
{
	long n = atol(argv[1]), sum = 0;
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		sum += work(i);
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%lld %ld\n", (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec), sum);
	return 0;
}
`

// tracer is one way of tracing work: the command, how to tell it is
// ready, and how to read the number of calls it saw from its output.
type tracer struct {
	name string
	args []string
	// ready is owl's line on stderr; nil: the tracer is ready once it
	// holds a perf event (its uprobe): bpftrace prints its line before it
	// attaches (see bench/README.md), libbpf-tools' is block-buffered.
	ready *regexp.Regexp
	calls func(out string) (uint64, error)
}

func main() {
	n := flag.Int64("n", 10_000_000, "calls of work per run")
	runs := flag.Int("runs", 3, "runs of each kind (the table shows medians)")
	owlPath := flag.String("owl", "", "owl binary (default: build ./cmd/owl)")
	flag.Parse()
	if err := run(*n, *runs, *owlPath); err != nil {
		fmt.Fprintln(os.Stderr, "uprobes:", err)
		os.Exit(1)
	}
}

func run(n int64, runs int, owl string) error {
	if err := harness.EnsureTracefs(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "owl-bench-uprobes")
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
	src := filepath.Join(dir, "loop.c")
	bin := filepath.Join(dir, "loop")
	if err := os.WriteFile(src, []byte(program), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("gcc", "-O1", "-o", bin, src).CombinedOutput(); err != nil {
		return fmt.Errorf("gcc: %v: %s", err, out)
	}
	fn := bin + ":work"
	tracers := []tracer{
		{name: "owl funccount", args: []string{owl, "funccount", "-o", "json", fn},
			ready: regexp.MustCompile(`^Tracing `), calls: jsonField(`"count":(\d+)`)},
		{name: "bpftrace count()", args: []string{"bpftrace", "-e", "uprobe:" + fn + " { @[func] = count(); }"},
			calls: jsonField(`\]: (\d+)`)},
		{name: "owl funclatency", args: []string{owl, "funclatency", "-o", "json", fn},
			ready: regexp.MustCompile(`^Tracing `), calls: jsonField(`"count":(\d+)`)},
		{name: "libbpf-tools funclatency", args: []string{"/usr/sbin/funclatency", fn},
			calls: histCount},
	}
	base := make([]float64, 0, runs)
	traced := make([][]float64, len(tracers))
	for r := range runs {
		ns, err := loop(bin, n)
		if err != nil {
			return err
		}
		base = append(base, ns)
		fmt.Fprintf(os.Stderr, "run %d: untraced %.0f ms\n", r+1, ns/1e6)
		for i, t := range tracers {
			ns, err := tracedLoop(t, bin, n)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			traced[i] = append(traced[i], ns)
			fmt.Fprintf(os.Stderr, "run %d: %s %.0f ms\n", r+1, t.name, ns/1e6)
		}
	}
	fmt.Printf("owl %s; %s; %d calls of work per run, medians of %d runs\n\n", rev, harness.BpftraceVersion("bpftrace"), n, runs)
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "tracer\tloop (ms)\tns per call\tadded ns per call\t")
	b := harness.Median(base)
	fmt.Fprintf(w, "untraced\t%.0f\t%.1f\t-\t\n", b/1e6, b/float64(n))
	for i, t := range tracers {
		m := harness.Median(traced[i])
		fmt.Fprintf(w, "%s\t%.0f\t%.1f\t%.1f\t\n", t.name, m/1e6, m/float64(n), (m-b)/float64(n))
	}
	return w.Flush()
}

// loop runs the program and returns the loop's length in ns.
func loop(bin string, n int64) (float64, error) {
	out, err := exec.Command(bin, strconv.FormatInt(n, 10)).Output()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", bin, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return 0, fmt.Errorf("%s printed %q", bin, out)
	}
	return strconv.ParseFloat(f[0], 64)
}

// tracedLoop starts t, waits until it traces, runs the loop, stops t with
// SIGINT and checks it saw n calls.
func tracedLoop(t tracer, bin string, n int64) (float64, error) {
	cmd := exec.Command(t.args[0], t.args[1:]...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer cmd.Process.Kill()
	ready := make(chan struct{}, 2)
	outs := make(chan string, 2)
	watch := func(r io.Reader) {
		var all strings.Builder
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if t.ready != nil && t.ready.MatchString(sc.Text()) {
				ready <- struct{}{}
			}
			all.WriteString(sc.Text() + "\n")
		}
		outs <- all.String()
	}
	go watch(stdout)
	go watch(stderr)
	if t.ready == nil {
		go waitPerfEvent(cmd.Process.Pid, ready)
	}
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		return 0, errors.New("not ready within 30 s")
	}
	ns, err := loop(bin, n)
	if err != nil {
		return 0, err
	}
	cmd.Process.Signal(syscall.SIGINT)
	text := <-outs + <-outs
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("%v: %s", err, text)
	}
	calls, err := t.calls(text)
	if err != nil {
		return 0, fmt.Errorf("%w in %q", err, text)
	}
	if calls != uint64(n) {
		return 0, fmt.Errorf("saw %d calls of %d: %s", calls, n, text)
	}
	return ns, nil
}

// jsonField reads the calls from the first match of re.
func jsonField(re string) func(string) (uint64, error) {
	r := regexp.MustCompile(re)
	return func(out string) (uint64, error) {
		m := r.FindStringSubmatch(out)
		if m == nil {
			return 0, errors.New("no count")
		}
		return strconv.ParseUint(m[1], 10, 64)
	}
}

var histRow = regexp.MustCompile(`(?m)^\s*\d+ -> \d+\s+: (\d+)\s+\|`)

// histCount adds up the rows of a printed log2 histogram.
func histCount(out string) (uint64, error) {
	var sum uint64
	rows := histRow.FindAllStringSubmatch(out, -1)
	if rows == nil {
		return 0, errors.New("no histogram")
	}
	for _, m := range rows {
		v, _ := strconv.ParseUint(m[1], 10, 64)
		sum += v
	}
	return sum, nil
}

// waitPerfEvent signals ready once process pid holds a perf event
// descriptor, as a uprobe attached with perf_event_open is.
func waitPerfEvent(pid int, ready chan<- struct{}) {
	for range 3000 {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, e := range ents {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); l == "anon_inode:[perf_event]" {
				ready <- struct{}{}
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}
