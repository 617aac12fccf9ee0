package funclatency

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/uprobe"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// buildC builds testdata/target.c (what its arguments do is said there)
// as the issue asks: frame pointers, no inlining. The qemu guest has it
// prebuilt, static, by test/vm/run.sh (e2e.Program).
func buildC(t *testing.T) string {
	t.Helper()
	return e2e.Program(t, "funclatency/target", func() string {
		gcc := e2e.Need(t, "gcc")
		bin := filepath.Join(t.TempDir(), "target")
		if out, err := exec.Command(gcc, "-O1", "-fno-omit-frame-pointer", "-fno-inline", "-o", bin, "testdata/target.c").CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
		return bin
	})
}

// runTarget runs bin with args to its end and returns its output.
func runTarget(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return string(out)
}

// durations are the call lengths the target measured, from its output.
func durations(t *testing.T, out string) []uint64 {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("target printed %q: want its sum and a line of durations", out)
	}
	var ds []uint64
	for _, f := range strings.Fields(lines[1]) {
		d, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			t.Fatalf("target printed duration %q", f)
		}
		ds = append(ds, d)
	}
	return ds
}

// slack bounds how much longer a call is from its caller's clock than
// between its two uprobes: the traps of both, and scheduling between a
// trap and the BPF program's clock read. Tens of µs here; 0.75 ms on
// average in the qemu guest (TCG).
const slack = time.Millisecond

// checkSlots holds log2 slots counted in the kernel to the durations the
// target measured (ns). A call whose caller-side length minus slack falls
// in a lower slot may be counted in either; all others must match.
//
// durs[first] is the call in which the process hit its first uprobe: the
// kernel then sets up the process's uprobe area, which under qemu's TCG
// took 6 ms more than the call's own length (Debian 6.1 guest), so it may
// be counted in any lower slot.
func checkSlots(t *testing.T, slots, durs []uint64, unit Unit, first int) {
	t.Helper()
	want := make([]uint64, len(slots))
	var ambiguous, count, off uint64
	for i, d := range durs {
		hi := slotOf(d / unit.Nanoseconds())
		want[hi]++
		if i == first || d < uint64(slack) || slotOf((d-uint64(slack))/unit.Nanoseconds()) != hi {
			ambiguous++
		}
	}
	for i := range slots {
		count += slots[i]
		if slots[i] > want[i] {
			off += slots[i] - want[i]
		} else {
			off += want[i] - slots[i]
		}
	}
	if count != uint64(len(durs)) || off > 2*ambiguous {
		t.Errorf("slots %v, want %v from the target's own durations %v (%d near a bucket's low end)", trim(slots), trim(want), durs, ambiguous)
	}
}

// slotOf is the log2 slot of v, as the BPF program computes it.
func slotOf(v uint64) int {
	if v < 2 {
		return 0
	}
	return bits.Len64(v) - 1
}

func trim(slots []uint64) []uint64 {
	n := len(slots)
	for n > 0 && slots[n-1] == 0 {
		n--
	}
	return slots[:n]
}

func openOrFatal(t *testing.T, cfg Config) *Source {
	t.Helper()
	src, err := Open(cfg, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	if src.HasReader() {
		t.Error("funclatency opened a ring buffer reader: its histograms are in the kernel")
	}
	return src
}

func totals(t *testing.T, src *Source) []Hist {
	t.Helper()
	h, err := src.Totals(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// attachModes are the two ways uprobes attach: uprobe-multi links where
// the kernel has them (6.6+), and one uprobe per function.
var attachModes = []struct {
	name string
	each bool
}{{"uprobe-multi", false}, {"one uprobe each", true}}

// sleep_ms(5) 20 times: in the 4 -> 7 ms bucket unless the scheduler woke
// a sleeper late, as the target's own clock says; BCC's text.
func TestSleepMsInFourToSevenMs(t *testing.T) {
	e2e.Require(t)
	bin := buildC(t)
	for _, mode := range attachModes {
		t.Run(mode.name, func(t *testing.T) {
			src := openOrFatal(t, Config{Pattern: bin + ":sleep_ms", Unit: Msecs, each: mode.each})
			args := []string{"sleep"}
			for range 20 {
				args = append(args, "5")
			}
			durs := durations(t, runTarget(t, bin, args...))
			h := totals(t, src)
			if len(h) != 1 {
				t.Fatalf("want one histogram, got %d", len(h))
			}
			checkSlots(t, h[0].Slots, durs, Msecs, 0)
			var sum uint64
			for _, d := range durs {
				sum += d
			}
			// Between the probes: no more than the caller measured, and
			// at least the 5 ms nanosleep guarantees, per call.
			if h[0].Count != 20 || h[0].Total > sum/1e6 || h[0].Total < 20*5 || h[0].Avg != h[0].totalNs/20/1e6 || h[0].Avg < 5 {
				t.Errorf("count %d avg %d total %d msecs: the target measured %d ns in all", h[0].Count, h[0].Avg, h[0].Total, sum)
			}
			text := string(appendReport(nil, Msecs, h, false, false, time.Time{}))
			row := fmt.Sprintf("         4 -> 7          : %-8d |", h[0].Slots[2])
			avg := fmt.Sprintf("\navg = %d msecs, total: %d msecs, count: 20\n\n", h[0].Avg, h[0].Total)
			if !strings.HasPrefix(text, "\n     msecs               : count    distribution\n") || !strings.Contains(text, row) || !strings.HasSuffix(text, avg) {
				t.Errorf("report:\n%s", text)
			}
		})
	}
}

// Recursion: every level is paired with its own return. The levels of
// rec(4) last 2, 4, 6, 8 and 10 ms (a little more): per chain one call
// in 2 -> 3 ms, two in 4 -> 7 and two in 8 -> 15, as the target's clock
// tells. Pairing by thread alone would time one return per chain, from
// the last entry.
func TestRecursionPairsEachLevel(t *testing.T) {
	e2e.Require(t)
	bin := buildC(t)
	src := openOrFatal(t, Config{Pattern: bin + ":rec", Unit: Msecs})
	durs := durations(t, runTarget(t, bin, "rec", "6"))
	h := totals(t, src)[0]
	if h.Count != 30 || len(durs) != 30 {
		t.Errorf("count %d, %d durations: want 30 calls", h.Count, len(durs))
	}
	checkSlots(t, h.Slots, durs, Msecs, 4) // the first chain's outermost call
}

// -F: one histogram per function, named, each with its own count; a
// function not called has none.
func TestPerFunction(t *testing.T) {
	e2e.Require(t)
	bin := buildC(t)
	// Narrow: the guest's static target has all of libc's functions too,
	// and 6.1 attaches a uprobe and a uretprobe to each (no uprobe-multi).
	src := openOrFatal(t, Config{Pattern: bin + ":[rsw][elo][cer]*", Unit: Usecs, PerFunc: true})
	names := map[string]bool{}
	for _, f := range src.Funcs() {
		names[f.Name] = true
	}
	for _, n := range []string{"sleep_ms", "rec"} {
		if !names[n] {
			t.Fatalf("pattern [rsw][elo][cer]* did not match %s: %v", n, names)
		}
	}
	runTarget(t, bin, "rec", "2")
	runTarget(t, bin, "sleep", "1", "2", "3")
	got := map[string]uint64{}
	for _, h := range totals(t, src) {
		got[h.Func] = h.Count
		if h.Unit != "usecs" {
			t.Errorf("%s: unit %q", h.Func, h.Unit)
		}
	}
	// rec(4) twice: 10 recs, each calling sleep_ms once; then 3 sleeps.
	if got["rec"] != 10 || got["sleep_ms"] != 13 {
		t.Errorf("counts %v: want rec 10, sleep_ms 13", got)
	}
	if _, ok := got["work"]; ok {
		t.Errorf("work was not called, yet has a histogram: %v", got)
	}
}

// Since gives each interval its own calls; Totals keeps them all.
func TestIntervals(t *testing.T) {
	e2e.Require(t)
	bin := buildC(t)
	src := openOrFatal(t, Config{Pattern: bin + ":work"})
	runTarget(t, bin, "work", "100")
	first, err := src.Since(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	runTarget(t, bin, "work", "250")
	second, err := src.Since(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	third, err := src.Since(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	all := totals(t, src)
	if first[0].Count != 100 || second[0].Count != 250 || third[0].Count != 0 || all[0].Count != 350 {
		t.Errorf("intervals %d, %d, %d, total %d: want 100, 250, 0 and 350", first[0].Count, second[0].Count, third[0].Count, all[0].Count)
	}
	if len(third[0].Buckets) != 0 || string(appendReport(nil, Nsecs, third, false, false, time.Time{})) != "\n" {
		t.Errorf("an empty interval prints more than a blank line: %+v", third[0])
	}
}

// -p: only the calls of that process are timed.
func TestPidFilter(t *testing.T) {
	e2e.Require(t)
	bin := buildC(t)
	child := exec.Command(bin, "wait", "sleep", "1", "1")
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	child.Stdout = &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	opts := e2e.Options()
	opts.Task.PID = child.Process.Pid
	src, err := Open(Config{Pattern: bin + ":sleep_ms"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	runTarget(t, bin, "sleep", "1", "1", "1") // another process: not timed
	stdin.Write([]byte("go\n"))
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	if h := totals(t, src)[0]; h.Count != 2 {
		t.Errorf("-p %d: %d calls timed, want its 2", child.Process.Pid, h.Count)
	}
}

// Calls testdata/goapp makes, and what it prints.
const (
	goSleeps = 4 * 5
	goWorks  = 4 * 5 * 250
	goDeeps  = 4 * 5 * 101
)

var goWant = func() string {
	total := 0
	for g := 0; g < 4; g++ {
		for i := 0; i < 5; i++ {
			total += 50 // deep(100): n&1 for n in 1..100
			for j := 0; j < 250; j++ {
				total += (i*250+j)*2 + 1
			}
		}
	}
	return strconv.Itoa(total) + "\n"
}()

// buildGo builds testdata/goapp twice: with its symbol table and DWARF,
// and stripped (-ldflags=-s), where only the pclntab names functions and
// the goid offset comes from the Go version. The qemu guest has both
// prebuilt by test/vm/run.sh (e2e.Program).
func buildGo(t *testing.T) map[string]string {
	t.Helper()
	bins := map[string]string{}
	for name, ldflags := range map[string]string{"full": "", "stripped": "-s"} {
		bins[name] = e2e.Program(t, "funclatency/go-"+name, func() string {
			goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
			if _, err := os.Stat(goTool); err != nil {
				goTool = e2e.Need(t, "go")
			}
			bin := filepath.Join(t.TempDir(), name)
			cmd := exec.Command(goTool, "build", "-ldflags="+ldflags, "-o", bin, ".")
			cmd.Dir = "testdata/goapp"
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build %s: %v\n%s", name, err, out)
			}
			return bin
		})
	}
	return bins
}

// A Go program traced for its whole run finishes normally with the right
// output, and every call of each function is in its histogram.
func TestGoProgramCompletesAndCountsEveryCall(t *testing.T) {
	e2e.Require(t)
	bins := buildGo(t)
	for _, mode := range attachModes {
		for _, name := range []string{"full", "stripped"} {
			bin := bins[name]
			t.Run(name+", "+mode.name, func(t *testing.T) {
				src := openOrFatal(t, Config{Pattern: bin + ":main.*", Unit: Msecs, PerFunc: true, each: mode.each})
				for _, f := range src.Funcs() {
					if !f.Go || len(f.Rets) == 0 {
						t.Errorf("%s: Go %v, %d RETs", f.Name, f.Go, len(f.Rets))
					}
				}
				if out := runTarget(t, bin); out != goWant {
					t.Errorf("traced program printed %q, want %q", out, goWant)
				}
				got := map[string]Hist{}
				for _, h := range totals(t, src) {
					got[h.Func] = h
				}
				want := map[string]uint64{"main.sleepMs": goSleeps, "main.work": goWorks, "main.deep": goDeeps}
				for fn, n := range want {
					if got[fn].Count != n {
						t.Errorf("%s: %d calls timed, want %d", fn, got[fn].Count, n)
					}
				}
				// main.main ends in os.Exit: entered, never returned.
				if h, ok := got["main.main"]; ok {
					t.Errorf("main.main never returns, yet has %d calls timed", h.Count)
				}
				// Every sleep lasts 5 ms or more (more under this load: the
				// program's own clock agrees); a return paired with another
				// goroutine's entry would make shorter ones.
				if s := got["main.sleepMs"]; s.Slots[0]+s.Slots[1] != 0 {
					t.Errorf("sleepMs(5): buckets %v, want none below 4 ms", s.Buckets)
				}
			})
		}
	}
}

// libbpf-tools' funclatency on the same binary and workload, at the same
// time: bucket for bucket the same histogram.
func TestSameAsLibbpfTools(t *testing.T) {
	e2e.Require(t)
	const peer = "/usr/sbin/funclatency"
	e2e.Need(t, peer)
	bin := buildC(t)
	src := openOrFatal(t, Config{Pattern: bin + ":sleep_ms", Unit: Msecs})

	cmd := exec.Command(peer, "-m", bin+":sleep_ms")
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Its stdout is a pipe, so "Tracing" comes only at its end: wait for
	// its two uprobes (perf events) instead.
	waitPerfEvents(t, cmd.Process.Pid, 2)

	// Durations far from powers of two, so that the few microseconds
	// between the two tools' probes cannot move a call across a bucket.
	runTarget(t, bin, "sleep", "1", "1", "1", "3", "3", "5", "5", "5", "5", "11", "11", "20")
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\n%s", peer, err, stdout.String())
	}
	theirs := parseHist(t, stdout.String())
	h := totals(t, src)[0]
	ours := h.Buckets
	t.Logf("libbpf-tools:\n%s", stdout.String())
	// The same text too, given libbpf-tools' label ("msec"; BCC's
	// funclatency and owl say "msecs").
	if text := string(output.AppendLog2Hist(nil, h.Slots, "msec")); !strings.Contains(stdout.String(), "\n"+text) {
		t.Errorf("owl's histogram text is not libbpf-tools':\n%s", text)
	}
	if len(theirs) == 0 || len(ours) != len(theirs) {
		t.Fatalf("owl's buckets %v, libbpf-tools' %v", ours, theirs)
	}
	for i := range ours {
		if ours[i] != theirs[i] {
			t.Errorf("bucket %d: owl %v, libbpf-tools %v", i, ours[i], theirs[i])
		}
	}
}

// waitPerfEvents waits until process pid holds n perf-event descriptors.
func waitPerfEvents(t *testing.T, pid, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		have := 0
		for _, e := range ents {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); l == "anon_inode:[perf_event]" {
				have++
			}
		}
		if have >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d did not attach %d probes within 10 s", pid, n)
}

var histRow = regexp.MustCompile(`^\s*(\d+) -> (\d+)\s+: (\d+)\s+\|`)

// parseHist reads the rows of a printed log2 histogram.
func parseHist(t *testing.T, text string) []output.Bucket {
	t.Helper()
	var rows []output.Bucket
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		m := histRow.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		var b output.Bucket
		b.Low, _ = strconv.ParseUint(m[1], 10, 64)
		b.High, _ = strconv.ParseUint(m[2], 10, 64)
		b.Count, _ = strconv.ParseUint(m[3], 10, 64)
		rows = append(rows, b)
	}
	return rows
}

// The command, in-process: text as BCC's funclatency prints it, and JSON,
// in milliseconds (-m) and microseconds (-u, as BCC's); the buckets as the
// target's own clock says.
func TestCommand(t *testing.T) {
	e2e.Require(t)
	bin := buildC(t)
	for _, c := range []struct {
		name string
		args []string
		unit Unit
	}{
		{"text", []string{"-m"}, Msecs},
		{"json", []string{"-m", "-o", "json"}, Msecs},
		{"text -u", []string{"-u"}, Usecs},
	} {
		t.Run(c.name, func(t *testing.T) {
			var durs []uint64
			stdout := runCommand(t, append(c.args, bin+":sleep_ms"), func() {
				durs = durations(t, runTarget(t, bin, "sleep", "4", "4", "4", "4", "0"))
			})
			label := c.unit.Label()
			if !slices.Contains(c.args, "json") {
				head := fmt.Sprintf("\n%10s               : count    distribution\n", label) +
					"         0 -> 1          : "
				if !strings.HasPrefix(stdout, head) || !regexp.MustCompile(`\navg = \d+ `+label+`, total: \d+ `+label+`, count: 5\n\n$`).MatchString(stdout) {
					t.Errorf("output:\n%s\nwant it to start with\n%s", stdout, head)
				}
				checkSlots(t, slotsOf(t, parseHist(t, stdout)), durs, c.unit, 0)
				return
			}
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if len(lines) != 2 {
				t.Fatalf("want a histogram line and a lost line, got:\n%s", stdout)
			}
			var h struct {
				Func    string          `json:"func"`
				Unit    string          `json:"unit"`
				Count   uint64          `json:"count"`
				Total   uint64          `json:"total"`
				Avg     uint64          `json:"avg"`
				Buckets []output.Bucket `json:"buckets"`
			}
			if err := json.Unmarshal([]byte(lines[0]), &h); err != nil {
				t.Fatal(err)
			}
			if h.Func != bin+":sleep_ms" || h.Unit != label || h.Count != 5 || h.Avg > h.Total/5 || h.Avg+1 < h.Total/5 || h.Total < 15 {
				t.Errorf("JSON %s", lines[0])
			}
			checkSlots(t, slotsOf(t, h.Buckets), durs, c.unit, 0)
			if !strings.HasPrefix(lines[1], `{"lost":0`) {
				t.Errorf("last line %s", lines[1])
			}
		})
	}
}

// -u is BCC's microseconds, not the uid filter of other tools, which
// stays --uid; -u with -m is bad input.
func TestUnitFlags(t *testing.T) {
	cmd := command()
	if f := cmd.Flags().ShorthandLookup("u"); f == nil || f.Name != "microseconds" {
		t.Errorf("-u is %+v, want --microseconds", f)
	}
	if f := cmd.Flags().Lookup("uid"); f == nil || f.Shorthand != "" {
		t.Errorf("--uid is %+v, want it without a shorthand", f)
	}
	e2e.Require(t) // the command checks privileges before its flags
	for _, args := range [][]string{{"-u", "-m", "c:malloc"}, {"--uid", "-1", "c:malloc"}} {
		cmd := command()
		cmd.SetArgs(args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		if err := cmd.Execute(); cli.ExitCode(err) != 2 {
			t.Errorf("funclatency %v: %v, exit status %d; want 2", args, err, cli.ExitCode(err))
		}
	}
}

// More calls in flight than the table of starts holds: the LRU evicts
// starts, and every return that finds none is counted (unpaired_return),
// so each call is either timed or counted as lost, exactly.
func TestEvictedStartsAreCounted(t *testing.T) {
	e2e.Require(t)
	bin := buildC(t)
	const threads, rounds, table = 64, 4, 8
	for _, mode := range attachModes {
		t.Run(mode.name, func(t *testing.T) {
			src := openOrFatal(t, Config{Pattern: bin + ":hold", each: mode.each, starts: table})
			runTarget(t, bin, "threads", strconv.Itoa(threads), strconv.Itoa(rounds))
			timed := totals(t, src)[0].Count
			st, err := src.Stats()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d calls: %d timed, %d unpaired returns", threads*rounds, timed, st.UnpairedReturn)
			// All threads of a round are in hold() at once; the table
			// keeps at most its size of their starts.
			if timed+st.UnpairedReturn != threads*rounds || st.UnpairedReturn < rounds*(threads-table) || st.Lost() != st.UnpairedReturn {
				t.Errorf("%d timed + %d unpaired, stats %+v: want %d calls in all, at least %d unpaired", timed, st.UnpairedReturn, st, threads*rounds, rounds*(threads-table))
			}
			if msg := st.Message(); !strings.Contains(msg, fmt.Sprintf("%d returns without a start", st.UnpairedReturn)) {
				t.Errorf("lost message %q", msg)
			}
		})
	}
}

//go:noinline
func waitFor(ch chan int) int { return <-ch }

// A Go call begun before tracing reaches a RET uprobe without a start:
// counted, not timed. A C call begun before tracing is neither: its
// uretprobe is set at entry, so its return is never seen.
func TestCallBegunBeforeTracing(t *testing.T) {
	e2e.Require(t)
	t.Run("Go", func(t *testing.T) {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		ch, done := make(chan int), make(chan int)
		go func() { done <- waitFor(ch) }()
		// Attach once the goroutine is blocked in waitFor.
		for buf := make([]byte, 1<<20); !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("funclatency.waitFor(")); {
			time.Sleep(time.Millisecond)
		}
		src, err := Open(Config{Pattern: self + ":*/funclatency.waitFor"}, e2e.Own())
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		ch <- 1
		<-done
		buffered := make(chan int, 2)
		buffered <- 1
		buffered <- 2
		waitFor(buffered)
		waitFor(buffered)
		st, err := src.Stats()
		if h := totals(t, src)[0]; h.Count != 2 || st.UnpairedReturn != 1 || err != nil {
			t.Errorf("%d calls timed, stats %+v (%v): want 2 timed and 1 unpaired return", h.Count, st, err)
		}
	})
	t.Run("C", func(t *testing.T) {
		bin := buildC(t)
		child := exec.Command(bin, "sleep", "1500", "1", "1")
		var out bytes.Buffer
		child.Stdout = &out
		started := time.Now()
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		defer child.Process.Kill()
		// Attach while the first sleep_ms(1500) is under way (attaching
		// takes ~1 s in the qemu guest).
		time.Sleep(50 * time.Millisecond)
		opts := e2e.Options()
		opts.Task.PID = child.Process.Pid
		src, err := Open(Config{Pattern: bin + ":sleep_ms"}, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if time.Since(started) > 1400*time.Millisecond {
			t.Skipf("attached %v after starting the program: its first call may be over", time.Since(started))
		}
		if err := child.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
		st, err := src.Stats()
		if h := totals(t, src)[0]; h.Count != 2 || st.Lost() != 0 || err != nil {
			t.Errorf("%d calls timed, stats %+v (%v): want the 2 begun after attaching timed, nothing lost", h.Count, st, err)
		}
	})
}

// slotsOf turns printed buckets back into log2 slots, checking that they
// are the consecutive power-of-two ranges print_log2_hist prints.
func slotsOf(t *testing.T, buckets []output.Bucket) []uint64 {
	t.Helper()
	slots := make([]uint64, output.Log2Slots)
	for i, b := range buckets {
		if b.Low != lowOf(i) || b.High != lowOf(i+1)-1 {
			t.Errorf("bucket %d is %d -> %d", i, b.Low, b.High)
		}
		slots[i] = b.Count
	}
	return slots
}

// lowOf is the low end of log2 bucket i as print_log2_hist shows it.
func lowOf(i int) uint64 {
	if i == 0 {
		return 0
	}
	return 1 << i
}

// runCommand runs `owl funclatency args` in-process, calls work once it
// traces, then ends it as Ctrl-C would and returns its stdout.
func runCommand(t *testing.T, args []string, work func()) string {
	t.Helper()
	cmd := command()
	cmd.SetArgs(args)
	var stdout bytes.Buffer
	cmd.SetOut(&stdout)
	tracing := make(chan struct{})
	cmd.SetErr(&announce{w: os.Stderr, tracing: tracing})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	select {
	case <-tracing:
	case err := <-done:
		t.Fatalf("funclatency %v: %v", args, err)
	case <-time.After(10 * time.Second):
		t.Fatal("funclatency did not start tracing")
	}
	work()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("funclatency %v: %v", args, err)
	}
	return stdout.String()
}

// announce closes tracing when the command says it traces.
type announce struct {
	w       *os.File
	tracing chan struct{}
	once    sync.Once
}

func (a *announce) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("Tracing ")) {
		a.once.Do(func() { close(a.tracing) })
	}
	return a.w.Write(p)
}

// Bad patterns are bad input: one line, exit 2, before anything loads.
func TestBadPatterns(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "text")
	os.WriteFile(notELF, []byte("hello"), 0o644)
	for _, pattern := range []string{"", dir + "/missing:f", notELF + ":f", "/proc/self/exe:no_such_function_anywhere"} {
		_, err := Resolve(Config{Pattern: pattern}, 0)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v", pattern, err)
		}
	}
}

// -l lists what would be timed, without tracing.
func TestList(t *testing.T) {
	bin := buildC(t)
	cmd := command()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"-l", bin + ":[rw][eo][cr]*"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := "rec\nwork\n"
	if e2e.Prebuilt() {
		// Static (qemu guest): libc's own functions are in the program
		// too, recvmsg among them.
		want = "rec\nrecvmsg\nwork\n"
	}
	if out.String() != want {
		t.Errorf("-l printed %q, want %q", out.String(), want)
	}
}

// The report prints -F sections and -T's time as BCC's funclatency.
func TestReportText(t *testing.T) {
	slots := make([]uint64, output.Log2Slots)
	slots[1] = 2
	a := newHist(time.Time{}, "a", Usecs, slots, 5000)
	slots = make([]uint64, output.Log2Slots)
	slots[0] = 1
	b := newHist(time.Time{}, "b", Usecs, slots, 1999)
	now := time.Date(2024, 1, 2, 3, 4, 5, 0, time.Local)
	got := string(appendReport(nil, Usecs, []Hist{a, b}, true, true, now))
	want := "\n03:04:05\n" +
		"\nFunction = a\n" +
		"     usecs               : count    distribution\n" +
		"         0 -> 1          : 0        |                                        |\n" +
		"         2 -> 3          : 2        |****************************************|\n" +
		"\nFunction = b\n" +
		"     usecs               : count    distribution\n" +
		"         0 -> 1          : 1        |****************************************|\n" +
		"\navg = 2 usecs, total: 6 usecs, count: 3\n\n"
	if got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
	if a.Avg != 2 || a.Total != 5 || b.Avg != 1 || b.Total != 1 {
		t.Errorf("a: avg %d total %d; b: avg %d total %d", a.Avg, a.Total, b.Avg, b.Total)
	}
}

// Started from the registry with the default config, there is nothing to
// time: an error, not a tool attached to nothing.
func TestStartWithoutPattern(t *testing.T) {
	e2e.Require(t)
	s, err := Tool.Start(e2e.Options())
	if err == nil {
		s.Close()
		t.Fatal("started without a pattern")
	}
	if !errors.Is(err, ErrNoPattern) && !strings.Contains(err.Error(), ErrNoPattern.Error()) {
		t.Errorf("error %v, want one about the missing pattern", err)
	}
}

// Open's error for a pattern that resolves to nothing is a PatternError,
// which the command turns into exit status 2.
func TestOpenBadPattern(t *testing.T) {
	_, err := Open(Config{Pattern: "/no/such/file:f"}, e2e.Options())
	var perr *PatternError
	if !errors.As(err, &perr) || !errors.Is(err, uprobe.ErrNoFile) {
		t.Errorf("error %v (%T), want a PatternError for a missing file", err, err)
	}
	e2e.Require(t) // the command checks privileges first
	cmd := command()
	cmd.SetArgs([]string{"/no/such/file:f"})
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); cli.ExitCode(err) != 2 || strings.Contains(err.Error(), "\n") {
		t.Errorf("command: %v, exit status %d; want one line and 2", err, cli.ExitCode(err))
	}
}
