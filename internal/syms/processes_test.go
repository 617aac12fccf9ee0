package syms

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
)

// clock is a settable time for Processes.now.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// newTestProcesses returns Processes on a clock the test advances.
func newTestProcesses(max int) (*Processes, *clock) {
	c := &clock{t: time.Now()}
	p := NewProcesses(NewCache(), max)
	p.now = c.now
	return p, c
}

// startSleep runs `sleep 30`, killed when the test ends.
func startSleep(t *testing.T) *exec.Cmd {
	t.Helper()
	sleep := e2e.Need(t, "sleep")
	cmd := exec.Command(sleep, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// Start returns once the child is forked, maybe before its exec: until
	// then its exe and mappings are still this test binary's.
	want := mustEval(sleep)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); err == nil && exe == want {
			break
		}
	}
	return cmd
}

// codeOf returns the first executable mapping of pid's program, whose
// start Resolve names at least by its module. It waits for the program to
// be mapped: a process that just exec'd may not be yet.
func codeOf(t *testing.T, pid int) Mapping {
	t.Helper()
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var exe string
		var maps []Mapping
		if exe, err = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil {
			continue
		}
		if maps, err = ReadMaps(pid); err != nil {
			continue
		}
		for _, m := range maps {
			if m.Exec() && m.Path == exe {
				return m
			}
		}
		err = fmt.Errorf("no executable mapping of %s", exe)
	}
	t.Fatalf("code of %d: %v", pid, err)
	return Mapping{}
}

// resolverOf returns the Resolver held for pid, nil if none.
func resolverOf(p *Processes, pid uint32) *Resolver {
	if e, ok := p.procs.peek(pid); ok {
		return e.r
	}
	return nil
}

// TestProcessesSweep drops a real process that exited, at the first sweep
// after it did, and not before.
func TestProcessesSweep(t *testing.T) {
	cmd := startSleep(t)
	pid := uint32(cmd.Process.Pid)
	code := codeOf(t, cmd.Process.Pid)
	p, clock := newTestProcesses(8)
	if f := p.Resolve(pid, code.Start); f.Module != code.Module() {
		t.Errorf("Resolve(%#x) = %+v, want module %s", code.Start, f, code.Module())
	}
	cmd.Process.Kill()
	cmd.Wait()
	// Until the sweep, the stacks the process sent before exiting still
	// resolve from the mappings it had.
	clock.t = clock.t.Add(sweepEvery - time.Millisecond)
	if f := p.Resolve(pid, code.Start); f.Module != code.Module() || p.Len() != 1 {
		t.Errorf("before the sweep: Resolve(%#x) = %+v, %d held; want module %s, 1 held", code.Start, f, p.Len(), code.Module())
	}
	clock.t = clock.t.Add(time.Millisecond)
	if f := p.Resolve(pid, code.Start); f != (Frame{Addr: code.Start, Symbol: Unknown}) {
		t.Errorf("exited process: Resolve(%#x) = %+v, want unknown", code.Start, f)
	}
	if p.Len() != 0 {
		t.Errorf("%d processes held after the sweep, want 0", p.Len())
	}
}

// TestProcessesRecycledPid checks that a pid with another start time gets
// a new Resolver, found by the sweep or by an address in none of the held
// mappings. The pid is the test's own: only its start time is faked.
func TestProcessesRecycledPid(t *testing.T) {
	pid := uint32(os.Getpid())
	addr := uint64(reflect.ValueOf(TestProcessesRecycledPid).Pointer())
	const name = "github.com/owlbpf/owl/internal/syms.TestProcessesRecycledPid"
	p, clock := newTestProcesses(8)
	start, reads := uint64(100), 0
	p.startTime = func(got uint32) (uint64, error) {
		if got != pid {
			t.Errorf("start time of pid %d, want %d", got, pid)
		}
		reads++
		return start, nil
	}
	resolve := func(what string) *Resolver {
		t.Helper()
		if f := p.Resolve(pid, addr); f.Symbol != name || f.Offset != 0 {
			t.Errorf("%s: Resolve(%#x) = %+v, want %s", what, addr, f, name)
		}
		return resolverOf(p, pid)
	}

	r1 := resolve("first")
	if r := resolve("again"); r != r1 || reads != 1 {
		t.Errorf("same process: resolver rebuilt (%v) or start time read %d times, want once", r != r1, reads)
	}

	start = 200 // the process exited and its pid was reused
	clock.t = clock.t.Add(sweepEvery)
	r2 := resolve("after the sweep")
	if r2 == nil || r2 == r1 {
		t.Fatal("sweep: a new start time kept the old resolver")
	}

	start = 300 // between sweeps: an address in none of the old mappings
	if f := p.Resolve(pid, 0x10); f != (Frame{Addr: 0x10, Symbol: Unknown}) {
		t.Errorf("Resolve(0x10) = %+v, want unknown", f)
	}
	r3 := resolverOf(p, pid)
	if r3 == nil || r3 == r2 {
		t.Fatal("unknown address: a new start time kept the old resolver")
	}
	if e, _ := p.procs.peek(pid); e.start != 300 {
		t.Errorf("held start time %d, want 300", e.start)
	}

	// Same start time: the mappings are reread in place.
	if f := p.Resolve(pid, 0x10); f.Symbol != Unknown || resolverOf(p, pid) != r3 || p.Len() != 1 {
		t.Errorf("same process, unknown address: %+v, resolver rebuilt %v, %d held", f, resolverOf(p, pid) != r3, p.Len())
	}
}

// TestProcessesExec symbolizes a process that exec'd after its Resolver
// was made: same pid and start time, new mappings, reread on the first
// address in none of the old ones.
func TestProcessesExec(t *testing.T) {
	sleep, sh := e2e.Need(t, "sleep"), e2e.Need(t, "sh")
	if a, _ := filepath.EvalSymlinks(sleep); a == mustEval(sh) {
		t.Skipf("sleep and sh are one program (%s, busybox): an exec would not change the code mapping", a)
	}
	cmd := exec.Command(sh, "-c", `read x; exec "$0" 30`, sleep)
	stdin, err := cmd.StdinPipe()
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
	pid := uint32(cmd.Process.Pid)
	p, _ := newTestProcesses(8)
	shell := codeOf(t, cmd.Process.Pid)
	if f := p.Resolve(pid, shell.Start); f.Module != shell.Module() {
		t.Fatalf("shell: Resolve(%#x) = %+v, want module %s", shell.Start, f, shell.Module())
	}
	r := resolverOf(p, pid)

	io.WriteString(stdin, "go\n")
	var code Mapping
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if code = codeOf(t, cmd.Process.Pid); code.Path != shell.Path {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell did not exec sleep")
		}
	}
	if f := p.Resolve(pid, code.Start); f.Module != code.Module() {
		t.Errorf("after exec: Resolve(%#x) = %+v, want module %s", code.Start, f, code.Module())
	}
	if resolverOf(p, pid) != r {
		t.Error("exec in the same process built a new resolver, want its mappings reread")
	}
}

// TestProcessesLRU holds at most max live processes, dropping the least
// recently used.
func TestProcessesLRU(t *testing.T) {
	var pids []uint32
	for range 3 {
		pids = append(pids, uint32(startSleep(t).Process.Pid))
	}
	p, clock := newTestProcesses(2)
	for _, i := range []int{0, 1, 0, 2} {
		// Each sweeps first: looking at every process is no use of them.
		clock.t = clock.t.Add(sweepEvery)
		p.Resolve(pids[i], 0x10)
	}
	if p.Len() != 2 {
		t.Errorf("%d processes held, want 2", p.Len())
	}
	for i, want := range []bool{true, false, true} {
		if _, ok := p.procs.peek(pids[i]); ok != want {
			t.Errorf("process %d held: %v, want %v", i, ok, want)
		}
	}
}

// TestProcessesGone gives unknown frames for a pid that names no process,
// and holds nothing for it.
func TestProcessesGone(t *testing.T) {
	cmd := startSleep(t)
	cmd.Process.Kill()
	cmd.Wait()
	p, _ := newTestProcesses(8)
	pid := uint32(cmd.Process.Pid)
	if f := p.Resolve(pid, 0x1234); f != (Frame{Addr: 0x1234, Symbol: Unknown}) || p.Len() != 0 {
		t.Errorf("Resolve = %+v with %d held, want unknown and none", f, p.Len())
	}
}

func TestReadStartTime(t *testing.T) {
	self, err := readStartTime(uint32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	child, err := readStartTime(uint32(startSleep(t).Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if self == 0 || child < self {
		t.Errorf("start times: test %d, its child %d", self, child)
	}
	if _, err := readStartTime(0); err == nil {
		t.Error("pid 0: no error")
	}
}

// statLine is a /proc/PID/stat line of a process named comm that started
// at start.
func statLine(comm string, start uint64) string {
	return fmt.Sprintf("9108 (%s) R 9106 9106 6160 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 %d 3133440 382 18446744073709551615 94382275219456 0 0 17 1 0 0\n", comm, start)
}

func TestParseStartTime(t *testing.T) {
	for _, c := range []struct {
		line string
		want uint64 // 0: an error
	}{
		{statLine("cat", 40611), 40611},
		{statLine("a) (b) S 1 2", 7), 7},
		{statLine(") (", 8), 8},
		{statLine("x)\n1 2 3", 9), 9},
		{statLine("", 10), 10},
		{"9108 (cat) R 9106 9106 6160 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 40611", 40611}, // no more fields
		{"9108 (cat) R 9106 9106 6160 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0", 0},           // truncated
		{"9108 (cat", 0},
		{"9108 cat R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", 0},
		{strings.Replace(statLine("cat", 1), " 1 3133440", " x 3133440", 1), 0},
		{strings.Replace(statLine("cat", 1), " 1 3133440", " -1 3133440", 1), 0},
		{"", 0},
		{")", 0},
	} {
		got, err := parseStartTime([]byte(c.line))
		if got != c.want || (err != nil) != (c.want == 0) {
			t.Errorf("parseStartTime(%q) = %d, %v; want %d", c.line, got, err, c.want)
		}
	}
}

func FuzzStartTime(f *testing.F) {
	f.Add([]byte(statLine("cat", 40611)), "cat", uint64(40611))
	f.Add([]byte(statLine(") (", 1)), "a) (b", uint64(0))
	f.Add([]byte("1 (x) S 2 3"), "", uint64(1<<63))
	f.Add([]byte(""), "\n)", uint64(5))
	f.Fuzz(func(t *testing.T, data []byte, comm string, start uint64) {
		if v, err := parseStartTime(data); err != nil && v != 0 {
			t.Fatalf("parseStartTime(%q) = %d with error %v", data, v, err)
		}
		// Whatever the process named itself, the fields after it count.
		line := statLine(comm, start)
		if v, err := parseStartTime([]byte(line)); err != nil || v != start {
			t.Fatalf("parseStartTime(%q) = %d, %v; want %d", line, v, err, start)
		}
		if len(comm) > 15 {
			return // longer than the kernel's: it could hold the fields that follow
		}
		// Cut anywhere before the start time, the line is an error.
		cut := strings.LastIndexByte(line, ')') + len(") R 9106 9106 6160 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 ")
		for _, n := range []int{0, len(line) / 2, cut} {
			if n <= cut {
				if _, err := parseStartTime([]byte(line[:n])); err == nil {
					t.Fatalf("parseStartTime(%q): no error", line[:n])
				}
			}
		}
	})
}

func mustEval(p string) string {
	a, _ := filepath.EvalSymlinks(p)
	return a
}
