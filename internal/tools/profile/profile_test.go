package profile

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/pyframes/pyprog"
	"github.com/owlbpf/owl/internal/syms"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// freq is the tests' sampling rate, the benchmark's.
const freq = 99

// build compiles testdata/src into a temporary directory: C at -O0 with
// frame pointers (gcc omits them in leaf functions at -O1 even with
// -fno-omit-frame-pointer, and a frameless hot() would hide its caller),
// a Go directory with go build.
func build(t *testing.T, src string) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join("testdata", src))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(src), filepath.Ext(src)))
	var cmd *exec.Cmd
	if filepath.Ext(src) == ".c" {
		cmd = exec.Command(e2e.Need(t, "gcc"), "-O0", "-fno-omit-frame-pointer", "-o", bin, abs)
	} else {
		cmd = exec.Command(e2e.Need(t, "go"), "build", "-o", bin, ".")
		cmd.Dir = abs
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return bin
}

// start runs a busy test program (bounded to a minute), killed when the
// test ends.
func start(t *testing.T, name string, args ...string) *os.Process {
	t.Helper()
	cmd := exec.Command(name, append(args, "60")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process
}

// cpuTime is the CPU time process pid has run, from the scheduler's
// nanosecond accounting of each of its threads.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	var sum time.Duration
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + task.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Fatalf("schedstat %q: %v", b, err)
		}
		sum += time.Duration(ns)
	}
	return sum
}

// profileFor samples process pid at freq until it has run cpu of CPU time
// (on a loaded machine that takes longer than cpu of wall time) and
// returns the stacks, the CPU time it ran while sampled and the source's
// stats.
func profileFor(t *testing.T, cfg Config, pid int, cpu time.Duration) ([]Stack, time.Duration, *Source) {
	t.Helper()
	e2e.Require(t)
	opts := e2e.Options()
	opts.Task.PID = pid
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	before := cpuTime(t, pid)
	deadline := time.Now().Add(60 * time.Second)
	for cpuTime(t, pid)-before < cpu && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	ran := cpuTime(t, pid) - before
	stacks, err := src.Stacks(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return stacks, ran, src
}

// leafShares counts, for each function, the samples whose innermost user
// frame it is, and the samples in all.
func leafShares(stacks []Stack) (map[string]uint64, uint64) {
	leaf := map[string]uint64{}
	var all uint64
	for _, st := range stacks {
		all += st.Count
		if len(st.UStack) > 0 {
			leaf[st.UStack[0].Symbol] += st.Count
		}
	}
	return leaf, all
}

// checkHotProgram checks a profile of a hot/warm program: every stack is
// the program's, the samples match the CPU time it ran (frequency × time,
// within 25 %), hot is the busiest leaf with about 70 % of the hot and warm
// samples, called from spin, called from main.
func checkHotProgram(t *testing.T, stacks []Stack, ran time.Duration, pid int, hot, spin, main string) {
	t.Helper()
	leaf, all := leafShares(stacks)
	want := ran.Seconds() * freq
	t.Logf("%d samples for %v of CPU time (%.0f expected); leaf functions %v", all, ran, want, leaf)
	if float64(all) < 0.75*want || float64(all) > 1.25*want {
		t.Errorf("%d samples for %v of CPU time at %d Hz: want %.0f ± 25 %%", all, ran, freq, want)
	}
	for _, st := range stacks {
		if st.PID != uint32(pid) {
			t.Errorf("a stack of pid %d (%s), want only %d", st.PID, st.Comm.Bytes(), pid)
		}
	}
	best, bestN := "", uint64(0)
	for name, n := range leaf {
		if n > bestN {
			best, bestN = name, n
		}
	}
	if best != hot {
		t.Errorf("busiest function %q (%d of %d samples), want %q", best, bestN, all, hot)
	}
	hw := leaf[hot] + leaf[strings.Replace(hot, "hot", "warm", 1)]
	if share := float64(leaf[hot]) / float64(hw); hw == 0 || share < 0.6 || share > 0.8 {
		t.Errorf("%s has %d of the %d samples of hot and warm: want 70 ± 10 %%", hot, leaf[hot], hw)
	}
	// The whole stack: hot ← spin ← main.
	found := false
	for _, st := range stacks {
		if len(st.UStack) >= 3 && st.UStack[0].Symbol == hot && st.UStack[1].Symbol == spin && st.UStack[2].Symbol == main {
			found = true
		}
	}
	if !found {
		t.Errorf("no stack %s ← %s ← %s in %+v", hot, spin, main, stacks)
	}
}

// A C program: hot is on top, with 70 % of the samples, under spin and
// main; the samples are what its CPU time at 99 Hz makes.
func TestCProgram(t *testing.T) {
	e2e.Require(t)
	p := start(t, build(t, "hotwarm.c"))
	stacks, ran, src := profileFor(t, Config{UStack: true, KStack: true, Freq: freq}, p.Pid, 2*time.Second)
	checkHotProgram(t, stacks, ran, p.Pid, "hot", "spin", "main")
	if st, err := src.Stats(); err != nil || st.Lost() != 0 {
		t.Errorf("lost samples: %+v (%v)", st, err)
	}
}

// A Go program: the pclntab names main.hot, on top.
func TestGoProgram(t *testing.T) {
	e2e.Require(t)
	p := start(t, build(t, "hotgo"))
	stacks, ran, _ := profileFor(t, Config{UStack: true, Freq: freq}, p.Pid, 2*time.Second)
	checkHotProgram(t, stacks, ran, p.Pid, "main.hot", "main.spin", "main.main")
	for _, st := range stacks {
		if len(st.KStack) > 0 || st.KStackMissed {
			t.Errorf("-U: a kernel stack %+v", st)
		}
	}
}

// A Python program spends ~70 % in hot() and ~30 % in warm(), both called
// from spin() at module level: on Debian's python3.11 and the pyenv builds
// present, hot()'s share of their samples is within 10 points of the
// share of their CPU time the program measured itself (a nominal 70 %
// once came out at 59 % on a loaded machine, in samples and, presumably,
// in fact),
// whose number is what the program's CPU time at 99 Hz makes, and their
// stacks are hot ← spin ← <module> with the script's file and lines.
func TestPythonProgram(t *testing.T) {
	e2e.Require(t)
	script, err := filepath.Abs("testdata/hot.py")
	if err != nil {
		t.Fatal(err)
	}
	for _, py := range pyprog.Interps(t) {
		t.Run(py.Name, func(t *testing.T) {
			p, split := startSplit(t, py.Path, script)
			// Past the interpreter's start-up (~30 ms of CPU), whose
			// frames are the import system's, into the loop.
			for deadline := time.Now().Add(30 * time.Second); cpuTime(t, p.Pid) < 200*time.Millisecond && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			h0, w0 := split()
			stacks, ran, src := profileFor(t, Config{UStack: true, Freq: freq}, p.Pid, 3*time.Second)
			h1, w1 := split()
			checkPythonProgram(t, stacks, ran, script, (h1-h0)/(h1-h0+w1-w0))
			if st, err := src.Stats(); err != nil || st.Lost() != 0 {
				t.Errorf("lost samples: %+v (%v)", st, err)
			}
		})
	}
}

// Lines of testdata/hot.py's functions, their def lines included (a
// function's first instruction, before 3.12, is on it).
var hotLines = map[string][2]int{"hot": {8, 12}, "warm": {15, 19}, "spin": {22, 24}, "<module>": {27, 29}}

// startSplit starts testdata/hot.py under interpreter py; split asks it
// (SIGUSR1) for the CPU seconds it has spent in hot() and in warm().
func startSplit(t *testing.T, py, script string) (p *os.Process, split func() (hot, warm float64)) {
	t.Helper()
	cmd := exec.Command(py, script, "60")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return cmd.Process, func() (hot, warm float64) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		select {
		case l := <-lines:
			if _, err := fmt.Sscanf(l, "split %f %f", &hot, &warm); err != nil {
				t.Fatalf("hot.py said %q: %v", l, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("hot.py did not answer SIGUSR1 within 30 s")
		}
		return hot, warm
	}
}

func checkPythonProgram(t *testing.T, stacks []Stack, ran time.Duration, script string, measured float64) {
	t.Helper()
	var all, hot, warm uint64
	shapes := map[string]uint64{} // Python frames, outermost first
	for _, st := range stacks {
		all += st.Count
		var py []string
		for _, f := range st.UStack {
			if f.Lang != "python" {
				continue
			}
			if r, ok := hotLines[f.Symbol]; !ok || f.File != script || f.Line < r[0] || f.Line > r[1] {
				t.Errorf("frame %s, want one of %s's functions at their lines", f, script)
			}
			py = append([]string{f.Symbol}, py...)
		}
		shapes[strings.Join(py, ";")] += st.Count
		switch {
		case len(py) > 0 && py[len(py)-1] == "hot":
			hot += st.Count
		case len(py) > 0 && py[len(py)-1] == "warm":
			warm += st.Count
		}
	}
	t.Logf("%d samples for %v of CPU time: hot %d, warm %d; Python stacks %v", all, ran, hot, warm, shapes)
	if want := ran.Seconds() * freq; float64(all) < 0.75*want || float64(all) > 1.25*want {
		t.Errorf("%d samples for %v of CPU time at %d Hz: want %.0f ± 25 %%", all, ran, freq, want)
	}
	if n := shapes["<module>;spin;hot"]; n != hot {
		t.Errorf("%d samples of hot, %d of them under spin ← <module>", hot, n)
	}
	if n := shapes["<module>;spin;warm"]; n != warm {
		t.Errorf("%d samples of warm, %d of them under spin ← <module>", warm, n)
	}
	// hot and warm take nearly all the time: spin and the loop are a
	// few bytecodes per 10,000 iterations.
	if float64(hot+warm) < 0.9*float64(all) {
		t.Errorf("hot() and warm() have %d of %d samples: want ≥ 90 %%", hot+warm, all)
	}
	t.Logf("hot.py measured %.1f %% of its hot and warm time in hot()", 100*measured)
	if measured < 0.5 || measured > 0.9 {
		t.Errorf("hot.py measured %.0f %% of its time in hot(): want about 70 %%", 100*measured)
	}
	if share := float64(hot) / float64(hot+warm); math.Abs(share-measured) > 0.1 {
		t.Errorf("hot() has %d of the %d samples of hot and warm (%.0f %%): want the %.0f %% hot.py measured ± 10", hot, hot+warm, 100*share, 100*measured)
	}
}

// Every sample that finds no room is counted: a one-key counts table
// keeps one stack and counts the others' samples as map_full; a one-entry
// stack table keeps one stack and counts the rest as stack_unavailable,
// their samples kept under [Missed User Stack].
func TestLosses(t *testing.T) {
	e2e.Require(t)
	p := start(t, build(t, "hotwarm.c"))
	stacks, _, src := profileFor(t, Config{UStack: true, Freq: freq, Keys: 1}, p.Pid, time.Second)
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(stacks) != 1 || st.MapFull == 0 {
		t.Errorf("one-key table: %d stacks, %+v; want 1 stack and map_full > 0", len(stacks), st)
	}

	stacks, _, src = profileFor(t, Config{UStack: true, Freq: freq, Stacks: 1}, p.Pid, time.Second)
	st, err = src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var missed, kept uint64
	for _, s := range stacks {
		if s.UStackMissed {
			missed += s.Count
		} else {
			kept++
		}
	}
	if kept > 1 || missed == 0 || st.StackUnavailable < missed {
		t.Errorf("one-entry stack table: %d stacks kept, %d samples missed, %+v", kept, missed, st)
	}
}

// -D and DURATION, -d, -F: the command through cobra, with the text
// report BCC prints.
func TestCommand(t *testing.T) {
	e2e.Require(t)
	p := start(t, build(t, "hotwarm.c"))
	var out, errb bytes.Buffer
	cmd := command()
	cmd.SetArgs([]string{"-p", strconv.Itoa(p.Pid), "-F", strconv.Itoa(freq), "-d", "1"})
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	if want := "Tracing at 99 Hertz of PID " + strconv.Itoa(p.Pid) + " by user + kernel stack... Hit Ctrl-C to end.\n"; errb.String() != want {
		t.Errorf("stderr %q, want %q", errb.String(), want)
	}
	// Stacks are printed least to most sampled (as BCC), each as its
	// frames, the process line and the count; hot's whole stack is there.
	// Which of hot and warm is busiest is checkHotProgram's business: a 1 s
	// run on a loaded machine holds too few samples to tell here.
	text := strings.TrimRight(out.String(), "\n")
	prev, sawHot := 0, false
	for _, block := range strings.Split(text, "\n\n") {
		lines := strings.Split(block, "\n")
		n, err := strconv.Atoi(strings.TrimSpace(lines[len(lines)-1]))
		if err != nil || n < prev {
			t.Errorf("stack count line %q after a count of %d:\n%s", lines[len(lines)-1], prev, text)
			break
		}
		prev = n
		if len(lines) >= 5 && lines[0] == "    hot" && lines[1] == "    spin" && lines[2] == "    main" &&
			lines[len(lines)-2] == "    -                hotwarm ("+strconv.Itoa(p.Pid)+")" {
			sawHot = true
		}
	}
	if !sawHot {
		t.Errorf("no stack hot, spin, main of hotwarm (%d):\n%s", p.Pid, text)
	}

	// The whole system, folded: naming every process's stacks takes a
	// while after the run, and all of it is printed, ours included.
	out.Reset()
	errb.Reset()
	cmd = command()
	cmd.SetArgs([]string{"-F", strconv.Itoa(freq), "-f", "-D", "2"})
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	if !strings.Contains(out.String(), "hotwarm;[unknown] (libc.so.6);main;spin;hot ") {
		t.Errorf("no folded stack of hot in a profile of all threads:\n%s", out.String())
	}
}

func framesOf(names ...string) []syms.Frame {
	var fs []syms.Frame
	for _, n := range names {
		fs = append(fs, syms.Frame{Symbol: n})
	}
	return fs
}

// A process that exits before the end keeps its names: Learn, run once
// a second as the command does, read its files' build-ids while it ran.
// hotwarm's "3" runs 2 to 3 s (time(2) seconds): at least one Learn
// falls well inside its life ("2" ran as little as 1 s, racing the first).
func TestExitedProcess(t *testing.T) {
	e2e.Require(t)
	bin := build(t, "hotwarm.c")
	src, err := Open(Config{UStack: true, Freq: freq}, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cmd := exec.Command(bin, "3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			break wait
		case <-tick.C:
			if err := src.Learn(); err != nil {
				t.Fatal(err)
			}
		}
	}
	stacks, err := src.Stacks(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var hot, all uint64
	for _, st := range stacks {
		if st.PID != uint32(cmd.Process.Pid) {
			continue
		}
		all += st.Count
		if len(st.UStack) >= 3 && st.UStack[0].Symbol == "hot" && st.UStack[1].Symbol == "spin" {
			hot += st.Count
		}
	}
	if all == 0 || float64(hot) < 0.5*float64(all) {
		t.Errorf("exited process %d: %d samples, %d named hot ← spin: %+v", cmd.Process.Pid, all, hot, stacks)
	}
}
