// Command bench measures owl against bpftrace 0.17 and libbpf-tools on the
// same work, alternating them run by run, and writes docs/PERFORMANCE.md:
//
//  1. start-up (process start → probes attached) and peak RSS of every owl
//     tool and the peers' equivalents, and of owl agent's default set;
//
//  2. added cost per event of streaming tools in storms of one system call
//     (setuid, failing openat, exec), against an empty BPF program on the
//     same tracepoints (the floor), with delivered, counted and silent loss;
//
//  3. counting in the kernel (funccount of a tracepoint) against the floor;
//
//  4. throughput: setuids -o json to /dev/null at rising event rates;
//
//  5. scale: funccount start-up and RSS with 10, 100 and 1000 functions.
//
//     sudo go run ./bench                       # full run, ~10 min; writes docs/PERFORMANCE.md
//     sudo go run ./bench -smoke                # seconds: every section once, tiny; checks counts
//     sudo go run ./bench -runs 7 -only storms  # more runs of one section
//
// The workload is workload/storm.c, built with gcc. No test asserts a time:
// the smoke run fails only on wrong counts (a line per event, counts equal
// to calls) and on tools that do not start.
package main

import (
	"bytes"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/bench/internal/harness"
)

//go:embed workload/storm.c
var stormSource []byte

type env struct {
	owl, storm, trueCopy string
	marker               string // in the names the storms open and exec: unique per harness run
	base                 string // another owl binary measured alongside ("owl@base" rows), or ""
	bpftrace             string // "" when not installed
	runs                 int
	smoke                bool
	noLibbpf             bool      // -peers=false
	tools                []string  // -tools: the start-up section measures only these owl tools
	out                  io.Writer // the report (markdown)
	problems             []string
}

func main() {
	var (
		owlPath = flag.String("owl", "", "owl binary to measure (default: build ./cmd/owl)")
		outPath = flag.String("out", "docs/PERFORMANCE.md", "write the report here (\"\" or -smoke: stdout only)")
		runs    = flag.Int("runs", 5, "runs of each measurement, alternating the tracers")
		smoke   = flag.Bool("smoke", false, "every section once with tiny sizes; fail on wrong counts")
		only    = flag.String("only", "", "comma-separated sections: startup,storms,counting,throughput,scale,detectors")
		peers   = flag.Bool("peers", true, "measure bpftrace and libbpf-tools too")
		base    = flag.String("base", "", "also measure this owl binary, as rows \"owl@base\" alternated with the others (before/after)")
		tools   = flag.String("tools", "", "comma-separated owl tools: start-up measures only these (and no peers)")
	)
	flag.Parse()
	var toolList []string
	if *tools != "" {
		toolList = strings.Split(*tools, ",")
	}
	if err := run(*owlPath, *base, *outPath, *runs, *smoke, *peers, *only, toolList); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(owlPath, base, outPath string, runs int, smoke, peers bool, only string, tools []string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (BPF)")
	}
	if err := harness.EnsureTracefs(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "owl-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rev := ""
	if owlPath == "" {
		if owlPath, rev, err = harness.BuildOwl(dir); err != nil {
			return err
		}
	} else {
		rev = harness.Revision(owlPath)
	}
	e := &env{owl: owlPath, base: base, runs: runs, smoke: smoke, noLibbpf: !peers, tools: tools}
	if smoke {
		e.runs, outPath = 1, ""
	}
	// Tracers without a pid filter see every process: names unique to this
	// run keep another harness's storms out of the counts.
	e.marker = fmt.Sprintf("owlb%d", os.Getpid()%100000000)
	if e.storm, e.trueCopy, err = buildWorkload(dir, e.marker); err != nil {
		return err
	}
	if p, err := exec.LookPath("bpftrace"); err == nil && peers {
		e.bpftrace = p
	}
	var report bytes.Buffer
	e.out = io.MultiWriter(&report, os.Stdout)
	header(e, rev)
	sections := []struct {
		name string
		fn   func(*env) error
	}{
		{"startup", startup}, {"storms", storms}, {"counting", counting},
		{"throughput", throughput}, {"scale", scale}, {"detectors", detectors},
	}
	for _, s := range sections {
		if only != "" && !slices.Contains(strings.Split(only, ","), s.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s\n", s.name)
		if err := s.fn(e); err != nil {
			e.problem("%s: %v", s.name, err)
		}
	}
	if len(e.problems) > 0 {
		fmt.Fprintf(e.out, "\n## Problems in this run\n\n")
		for _, p := range e.problems {
			fmt.Fprintf(e.out, "- %s\n", p)
		}
	}
	if outPath != "" {
		if err := os.WriteFile(outPath, append(report.Bytes(), readTail(outPath)...), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s\n", outPath)
	}
	if smoke && len(e.problems) > 0 {
		return fmt.Errorf("%d problems", len(e.problems))
	}
	return nil
}

// tailMarker starts the hand-written part of docs/PERFORMANCE.md (profiles,
// before/after): kept as is when the tables above it are regenerated.
const tailMarker = "<!-- written by hand below: kept by `make bench` -->"

func readTail(path string) []byte {
	old, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	if i := bytes.Index(old, []byte(tailMarker)); i >= 0 {
		return append([]byte("\n"), old[i:]...)
	}
	return nil
}

func (e *env) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	e.problems = append(e.problems, msg)
	fmt.Fprintln(os.Stderr, "PROBLEM:", msg)
}

// buildWorkload compiles storm.c, and copies /bin/true under a name that
// no other process execs (marker: at most 15 bytes, a comm), so that exec
// lines can be told apart.
func buildWorkload(dir, marker string) (storm, trueCopy string, err error) {
	src := filepath.Join(dir, "storm.c")
	if err := os.WriteFile(src, stormSource, 0o644); err != nil {
		return "", "", err
	}
	storm = filepath.Join(dir, "storm")
	if out, err := exec.Command("gcc", "-O1", "-o", storm, src).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("gcc storm.c: %v: %s", err, out)
	}
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		return "", "", err
	}
	trueCopy = filepath.Join(dir, marker)
	return storm, trueCopy, os.WriteFile(trueCopy, b, 0o755)
}

func header(e *env, rev string) {
	var uts unix.Utsname
	unix.Uname(&uts)
	bt := "not installed"
	if e.bpftrace != "" {
		bt = harness.BpftraceVersion(e.bpftrace)
	}
	libbpf := "not installed"
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "libbpf-tools").Output(); err == nil {
		libbpf = string(out)
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Fprintf(e.out, `# owl performance

Generated by `+"`make bench`"+` (`+"`go run ./bench`"+`) on %s. Do not edit above the
marker at the end: the next run rewrites it.

- machine: %s %s, %d CPUs, load average before the run %s
- owl: %s%s; bpftrace: %s; libbpf-tools: %s; %s
- %d runs of every measurement, the tracers alternated run by run (a new
  workload process and a new tracer each run); figures are medians with
  [min–max]. Ratios compare medians of the same run.

**These figures are only as quiet as the machine was.** The 2-CPU VM this
file was last written on is shared with other sessions building and testing;
absolute numbers move by ±50%% between runs, ratios less. Re-run `+"`make bench`"+`
on a quiet machine before quoting them.
`, time.Now().UTC().Format("2006-01-02 15:04 UTC"), unixStr(uts.Sysname[:]), unixStr(uts.Release[:]),
		runtime.NumCPU(), load, rev, baseNote(e), bt, libbpf, runtime.Version(), e.runs)
}

func unixStr(b []byte) string { return string(bytes.TrimRight(b, "\x00")) }

// stat is a median with its range.
type stat []float64

func (s stat) med() float64 { return harness.Median(s) }
func (s stat) String() string {
	if len(s) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s [%s–%s]", num(s.med()), num(slices.Min(s)), num(slices.Max(s)))
}

func num(v float64) string {
	switch {
	case v >= 100 || v <= -100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10 || v <= -10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// iwi sums the IRQ-work interrupts of all CPUs: how BPF output wakes its
// reader.
func iwi() uint64 {
	b, err := os.ReadFile("/proc/interrupts")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "IWI:" {
			var n uint64
			for _, x := range f[1:] {
				v, err := strconv.ParseUint(x, 10, 64)
				if err != nil {
					break
				}
				n += v
			}
			return n
		}
	}
	return 0
}

func baseNote(e *env) string {
	if e.base == "" {
		return ""
	}
	return "; owl@base: " + harness.Revision(e.base)
}

// withBase adds, after each owl tracer, the same run by the -base binary.
func withBase(e *env, ts []tracer) []tracer {
	if e.base == "" {
		return ts
	}
	var out []tracer
	for _, t := range ts {
		out = append(out, t)
		if strings.HasPrefix(t.name, "owl ") {
			b := t
			b.name = "owl@base " + strings.TrimPrefix(t.name, "owl ")
			b.argv = append([]string{e.base}, t.argv[1:]...)
			out = append(out, b)
		}
	}
	return out
}
