package funccount

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/execwatch"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/uprobe"
)

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{
		// Waits for a line, then execs itself from a thread other than
		// its leader into "count".
		"execer": func([]string) error {
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				return err
			}
			return e2e.ExecOnThread(false, "count")
		},
		// Says "ready", waits for a line, calls countMe 555 times.
		"count": func([]string) error {
			fmt.Println("ready")
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				return err
			}
			for i := range 555 {
				countMe(i)
			}
			return nil
		},
	})
}

// buildProgram returns testdata/src built into a temporary directory: C
// and C++ with -O1 -fno-omit-frame-pointer -fno-inline (so every call is
// a call), a Go directory with go build, a .rs file with rustc. In the
// qemu guest it is the program test/vm/run.sh prebuilt as funccount/name
// (e2e.Program), static: keep its build line there in step with flags.
func buildProgram(t *testing.T, name, src string, flags ...string) string {
	t.Helper()
	return e2e.Program(t, "funccount/"+name, func() string {
		abs, err := filepath.Abs(filepath.Join("testdata", src))
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(t.TempDir(), name)
		var cmd *exec.Cmd
		switch filepath.Ext(src) {
		case ".c":
			cmd = exec.Command(e2e.Need(t, "gcc"), append([]string{"-O1", "-fno-omit-frame-pointer", "-fno-inline", "-o", bin, abs}, flags...)...)
		case ".cpp":
			cmd = exec.Command(e2e.Need(t, "g++"), append([]string{"-O1", "-fno-omit-frame-pointer", "-fno-inline", "-o", bin, abs}, flags...)...)
		case ".rs":
			cmd = exec.Command(e2e.Need(t, "rustc"), append([]string{"-o", bin, abs}, flags...)...)
		default:
			cmd = exec.Command(e2e.Need(t, "go"), append(append([]string{"build", "-o", bin}, flags...), ".")...)
			cmd.Dir = abs
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return bin
	})
}

// program is a test program that waits for a line on stdin.
type program struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

func start(t *testing.T, bin string, args ...string) *program {
	t.Helper()
	return startCmd(t, exec.Command(bin, args...))
}

func startCmd(t *testing.T, cmd *exec.Cmd) *program {
	t.Helper()
	p := &program{cmd: cmd}
	p.cmd.Stderr = os.Stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdout = bufio.NewReader(out)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stdin.Close()
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	return p
}

func (p *program) pid() int { return p.cmd.Process.Pid }

// run lets the program go and waits for it to end normally; it returns
// what it printed.
func (p *program) run(t *testing.T) string {
	t.Helper()
	fmt.Fprintln(p.stdin)
	out, _ := io.ReadAll(p.stdout)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("%s: %v (printed %q)", p.cmd.Path, err, out)
	}
	return string(out)
}

// counted maps "func" (or "func path") to its count.
func counted(t *testing.T, src *Source) map[string]uint64 {
	t.Helper()
	counts, err := src.Counts(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, c := range counts {
		got[string(c.Func)] += c.Count
	}
	return got
}

func checkCounts(t *testing.T, got, want map[string]uint64) {
	t.Helper()
	for f, n := range want {
		if got[f] != n {
			t.Errorf("%s: counted %d, want %d (all: %v)", f, got[f], n, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("counted %v, want %v", got, want)
	}
}

func resolveT(t *testing.T, patterns ...string) Config {
	t.Helper()
	cfg, err := Resolve(patterns, uprobe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// perfEvents counts this process's perf event descriptors: single uprobes
// have one each, uprobe-multi links none.
func perfEvents() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == "anon_inode:[perf_event]" {
			n++
		}
	}
	return n
}

// The C program calls work 1000 times and sleep_ms 20 times: exactly that
// is counted, with uprobe-multi links and with one uprobe per function,
// for its pid (-p) and for every process.
func TestCountsCFunctions(t *testing.T) {
	e2e.Require(t)
	bin := buildProgram(t, "work", "work.c")
	for _, c := range []struct {
		name string
		each bool
		pid  bool
	}{{"multi", false, true}, {"each", true, true}, {"all-processes", false, false}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := resolveT(t, bin+":work", bin+":sleep_*")
			cfg.each = c.each
			p := start(t, bin)
			opts := e2e.Options()
			if c.pid {
				opts.Task.PID = p.pid()
			}
			before := perfEvents()
			src, err := Open(cfg, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if src.HasReader() {
				t.Error("funccount opened a ring buffer reader")
			}
			multi := !c.each && src.Session.Hook.Kind == "uprobe" && perfEvents() == before
			if c.each && perfEvents()-before != 2 {
				t.Errorf("one uprobe each: %d perf events, want 2", perfEvents()-before)
			}
			t.Logf("uprobe-multi link: %v", multi)
			if out := p.run(t); out != "1000000\n" {
				t.Errorf("program printed %q", out)
			}
			checkCounts(t, counted(t, src), map[string]uint64{"work": 1000, "sleep_ms": 20})
			if st, err := src.Stats(); err != nil || st.Lost() != 0 {
				t.Errorf("stats %+v, %v", st, err)
			}
		})
	}
}

// A pid filter keeps other processes' calls out, even of the same file.
func TestCountsOnlyThePID(t *testing.T) {
	e2e.Require(t)
	bin := buildProgram(t, "work", "work.c")
	traced, other := start(t, bin), start(t, bin)
	opts := e2e.Options()
	opts.Task.PID = traced.pid()
	src, err := Open(resolveT(t, bin+":work"), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	other.run(t)
	traced.run(t)
	checkCounts(t, counted(t, src), map[string]uint64{"work": 1000})
}

// C++ methods match and print demangled: funccount './app:Shape::*'.
func TestCountsCPlusPlus(t *testing.T) {
	e2e.Require(t)
	bin := buildProgram(t, "shapes", "shapes.cpp")
	t.Chdir(filepath.Dir(bin))
	p := start(t, bin)
	stdout, stderr, err := runCommand(t, []string{"-p", fmt.Sprint(p.pid()), "./shapes:Shape::*"}, func() { p.run(t) })
	if err != nil {
		t.Fatalf("funccount: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, `Tracing 4 functions for "./shapes:Shape::*"... Hit Ctrl-C to end.`) {
		t.Errorf("stderr %q", stderr)
	}
	// BCC's funccount: a blank line, the header, "%-36s %8d" rows,
	// smallest count first.
	want := "\n" +
		"FUNC                                    COUNT\n" +
		"Shape::Shape(double, double)                1\n" +
		"Shape::name() const                         7\n" +
		"Shape::scale(double)                      200\n" +
		"Shape::area() const                       300\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
}

// Rust functions match and print demangled, by type or by module path:
// funccount './app:*Shape*' './app:shapes::geometry::*', exact counts.
func TestCountsRust(t *testing.T) {
	e2e.Require(t)
	bin := buildProgram(t, "shapes-rs", "shapes.rs", "-C", "opt-level=1")
	t.Chdir(filepath.Dir(bin))
	p := start(t, bin)
	patterns := []string{"./shapes-rs:*Shape*", "./shapes-rs:shapes::geometry::*"}
	stdout, stderr, err := runCommand(t, append([]string{"-p", fmt.Sprint(p.pid())}, patterns...), func() {
		if out := p.run(t); out != "642\n" {
			t.Errorf("program printed %q", out)
		}
	})
	if err != nil {
		t.Fatalf("funccount: %v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, `Tracing 4 functions for "./shapes-rs:*Shape*" "./shapes-rs:shapes::geometry::*"... Hit Ctrl-C to end.`) {
		t.Errorf("stderr %q", stderr)
	}
	row := func(name string, n int) string { return fmt.Sprintf("%-36s %8d\n", name, n) }
	want := "\nFUNC                                    COUNT\n" +
		row("shapes::Shape::new", 1) + row("shapes::geometry::perimeter", 7) +
		row("shapes::Shape::scale", 200) + row("shapes::Shape::area", 300)
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
}

const mallocs = 5000

// c:malloc with -p on a running process that mallocs a known number of
// times once signalled: exactly that many. The qemu guest's prebuilt
// program is static, with no libc to find: there malloc is the program's
// own (PATH:malloc).
func TestCountsMallocInProcess(t *testing.T) {
	e2e.Require(t)
	bin := buildProgram(t, "mallocs", "mallocs.c", "-fno-builtin")
	p := start(t, bin, fmt.Sprint(mallocs))
	if line, err := p.stdout.ReadString('\n'); line != "ready\n" {
		t.Fatalf("program printed %q (%v)", line, err)
	}
	pattern, in := "c:malloc", "libc"
	if e2e.Prebuilt() {
		pattern, in = bin+":malloc", filepath.Base(bin)
	}
	cfg, err := Resolve([]string{pattern}, uprobe.Options{PID: p.pid()})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Funcs) != 1 || !strings.Contains(filepath.Base(cfg.Funcs[0].Path), in) {
		t.Fatalf("%s resolved to %+v", pattern, cfg.Funcs)
	}
	opts := e2e.Options()
	opts.Task.PID = p.pid()
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := p.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if line, err := p.stdout.ReadString('\n'); line != "done\n" {
		t.Fatalf("program printed %q (%v)", line, err)
	}
	checkCounts(t, counted(t, src), map[string]uint64{"malloc": mallocs})
}

// A Go program, built plain and stripped: exact counts of non-inlined
// functions from the pclntab, through the command's JSON output, and the
// program completes normally.
func TestCountsGo(t *testing.T) {
	e2e.Require(t)
	for _, flags := range [][]string{nil, {"-ldflags=-s -w"}} {
		t.Run(strings.Join(append([]string{"plain"}, flags...), " "), func(t *testing.T) {
			name := "goapp"
			if flags != nil {
				name = "goapp-stripped"
			}
			bin := buildProgram(t, name, "goapp", flags...)
			p := start(t, bin)
			stdout, stderr, err := runCommand(t, []string{"-o", "json", bin + ":main.work", bin + ":main.gr*", bin + ":main.deep"}, func() {
				if out := p.run(t); out != "1000081\n" {
					t.Errorf("program printed %q", out)
				}
			})
			if err != nil {
				t.Fatalf("funccount: %v\n%s", err, stderr)
			}
			got := map[string]uint64{}
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			for _, line := range lines[:len(lines)-1] {
				var c struct {
					Time  time.Time `json:"time"`
					Func  string    `json:"func"`
					Count uint64    `json:"count"`
					Path  string    `json:"path"`
				}
				if err := json.Unmarshal([]byte(line), &c); err != nil || c.Path != bin || time.Since(c.Time) > time.Minute {
					t.Errorf("line %q: %+v, %v", line, c, err)
				}
				got[c.Func] = c.Count
			}
			checkCounts(t, got, map[string]uint64{"main.work": 1000, "main.greet": 20, "main.deep": 64})
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, `{"lost":0,`) {
				t.Errorf("last line %q", last)
			}
		})
	}
}

//go:noinline
func countMe(i int) int { return i + 1 }

// The test binary's own Go function, from its pclntab: needs no compiler,
// so it also runs in the qemu guest (Linux 6.1, no uprobe-multi links).
func TestCountsOwnGoFunction(t *testing.T) {
	e2e.Require(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, each := range []bool{false, true} {
		cfg := resolveT(t, self+":*/funccount.countMe")
		if len(cfg.Funcs) != 1 || !cfg.Funcs[0].Go {
			t.Fatalf("resolved to %+v", cfg.Funcs)
		}
		cfg.each = each
		src, err := Open(cfg, e2e.Own())
		if err != nil {
			t.Fatal(err)
		}
		sum := 0
		for i := range 777 {
			sum += countMe(i)
		}
		checkCounts(t, counted(t, src), map[string]uint64{"github.com/owlbpf/owl/internal/tools/funccount.countMe": 777})
		src.Close()
	}
}

// A -p process that execs from a thread other than its leader ends the
// thread the kernel filters its uprobes on: once attached again (what
// owl does when execwatch reports such an exec), the new image's calls
// are counted, exactly, with uprobe-multi links and one uprobe each.
func TestCountsAfterExecFromThread(t *testing.T) {
	e2e.Require(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, each := range []bool{false, true} {
		t.Run(fmt.Sprint("each=", each), func(t *testing.T) {
			p := startCmd(t, e2e.Child("execer"))
			cfg := resolveT(t, self+":*/funccount.countMe")
			cfg.each = each
			opts := e2e.Options()
			opts.Task.PID = p.pid()
			src, err := Open(cfg, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if !src.PIDFiltered() {
				t.Fatal("uprobes for one process are not filtered on it in the kernel")
			}
			w, err := execwatch.Start(p.pid())
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			fmt.Fprintln(p.stdin)
			tid, err := w.Next()
			if err != nil || tid == p.pid() {
				t.Fatalf("exec from a thread: reported thread %d of %d (%v)", tid, p.pid(), err)
			}
			if err := src.Relink(); err != nil {
				t.Fatal(err)
			}
			if line, err := p.stdout.ReadString('\n'); line != "ready\n" {
				t.Fatalf("the new image said %q (%v)", line, err)
			}
			p.run(t)
			checkCounts(t, counted(t, src), map[string]uint64{"github.com/owlbpf/owl/internal/tools/funccount.countMe": 555})
		})
	}
}

// t:GROUP:NAME counts a kernel tracepoint, with the same kernel -p filter.
func TestCountsTracepoint(t *testing.T) {
	e2e.Require(t)
	cfg := resolveT(t, "t:syscalls:sys_enter_getppid", "t:syscalls:sys_enter_getpgi?")
	if len(cfg.Tracepoints) != 2 {
		t.Fatalf("resolved to %+v", cfg.Tracepoints)
	}
	src, err := Open(cfg, e2e.Own())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	for range 123 {
		unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
	}
	for range 45 {
		unix.RawSyscall(unix.SYS_GETPGID, 0, 0, 0)
	}
	checkCounts(t, counted(t, src), map[string]uint64{"syscalls:sys_enter_getppid": 123, "syscalls:sys_enter_getpgid": 45})
}

// Bad patterns and flags are one line and exit status 2, before anything
// is loaded.
func TestBadPatternsExit2(t *testing.T) {
	e2e.Require(t) // the command checks privileges before resolving
	dir := t.TempDir()
	notELF := filepath.Join(dir, "notes.txt")
	os.WriteFile(notELF, []byte("hi\n"), 0o644)
	self, _ := os.Executable()
	for _, c := range []struct {
		args []string
		says string
	}{
		{nil, "give at least one PATTERN"},
		{[]string{"/nonexistent/app:work"}, "/nonexistent/app: no such file"},
		{[]string{notELF + ":work"}, "is not an ELF"},
		{[]string{self + ":owl_no_such_function"}, "no function matches"},
		{[]string{self + ":runtime.*"}, "use --max N"},
		{[]string{"--max", "5", self + ":*funccount.Test*"}, "use --max N"},
		{[]string{"--max", "0", "c:malloc"}, "--max 0"},
		{[]string{"owl_no_such_lib:f"}, "no such library"},
		{[]string{"work"}, "-p PID"},
		{[]string{"a:::b"}, "colons"},
		{[]string{"c:[x"}, "bad pattern"},
		{[]string{"t:owl_nosuch:nosuch"}, "no such tracepoint"},
		{[]string{"t:sched"}, "t:GROUP:NAME"},
		{[]string{"t:../..:x"}, "bad tracepoint pattern"},
		{[]string{"-i", "0", "c:malloc"}, "--interval"},
	} {
		before := perfEvents()
		_, stderr, err := runCommand(t, c.args, nil)
		if err == nil || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("funccount %q: %v (status %d), stderr %q; want one line saying %q, status 2", c.args, err, cli.ExitCode(err), stderr, c.says)
		}
		if perfEvents() != before {
			t.Errorf("funccount %q left perf events open", c.args)
		}
	}
}

// -l lists what the patterns match without tracing (nor privileges).
func TestList(t *testing.T) {
	bin := buildProgram(t, "work", "work.c")
	stdout, stderr, err := runCommand(t, []string{"-l", bin + ":sleep_*", bin + ":work", bin + ":wor?"}, nil)
	if err != nil || stderr != "" {
		t.Fatalf("funccount -l: %v, stderr %q", err, stderr)
	}
	if want := bin + ":sleep_ms\n" + bin + ":work\n"; stdout != want {
		t.Errorf("funccount -l printed %q, want %q", stdout, want)
	}
	stdout, _, err = runCommand(t, []string{"-l", "-o", "json", bin + ":work"}, nil)
	var m struct {
		Func, Path, Symbol string
		Offset             uint64
	}
	if err != nil || json.Unmarshal([]byte(stdout), &m) != nil || m.Func != "work" || m.Path != bin || m.Symbol != "work" || m.Offset == 0 {
		t.Errorf("funccount -l -o json: %q, %v", stdout, err)
	}
}

// With -i each report has the counts of its interval; -T stamps it.
func TestReports(t *testing.T) {
	n := []uint64{5, 0, 7}
	counts := func(now time.Time) ([]Count, error) {
		return []Count{{Func: "b", Count: n[0]}, {Func: "zero", Count: n[1]}, {Func: "a\n", Count: n[2]}}, nil
	}
	var buf e2e.SyncBuffer
	out := output.NewWriter[Count](&buf, output.Text, nil)
	r := reporter{out: out, counts: counts, timestamp: true, interval: true}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)
	r.report(at)
	n[0], n[2] = 6, 1007
	r.report(at)
	out.Close()
	row := func(name string, n int) string { return fmt.Sprintf("%-36s %8d\n", name, n) }
	head := "\n03:04:05\nFUNC                                    COUNT\n"
	want := head + row("b", 5) + row(`a\x0a`, 7) + head + row("b", 1) + row(`a\x0a`, 1000)
	if buf.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", buf.String(), want)
	}
}

// Side by side with bpftrace 0.17 on the same binary and workload:
// uprobe:PATH:work { @[probe] = count(); } agrees with owl. (bpftrace
// names func from the process, gone by the time it prints.)
func TestAgreesWithBpftrace(t *testing.T) {
	e2e.Require(t)
	bpftrace := e2e.Need(t, "bpftrace")
	bin := buildProgram(t, "work", "work.c")
	// bpftrace prints "Attaching 3 probes..." before it attaches them and
	// runs BEGIN once they all are.
	bt := exec.Command(bpftrace, "-e", fmt.Sprintf(`BEGIN { printf("ready\n"); } uprobe:%s:work, uprobe:%s:sleep_ms { @[probe] = count(); }`, bin, bin))
	btOut, err := bt.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var btErr e2e.SyncBuffer
	bt.Stderr = &btErr
	defer func() { t.Logf("bpftrace's stderr: %q", btErr.String()) }()
	if err := bt.Start(); err != nil {
		t.Fatal(err)
	}
	defer bt.Process.Kill()
	r := bufio.NewReader(btOut)
	for _, want := range []string{"Attaching 3 probes...\n", "ready\n"} {
		if line, err := r.ReadString('\n'); line != want {
			t.Fatalf("bpftrace printed %q (%v), want %q", line, err, want)
		}
	}
	src, err := Open(resolveT(t, bin+":work", bin+":sleep_ms"), e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	start(t, bin).run(t)
	owl := counted(t, src)
	var rest []byte
	read := make(chan struct{})
	go func() {
		defer close(read)
		rest, _ = io.ReadAll(r)
	}()
	if !e2e.Interrupt(bt.Process, read, 30*time.Second) {
		t.Fatal("bpftrace did not end on SIGINT")
	}
	bt.Wait()
	theirs := map[string]uint64{}
	for _, line := range strings.Split(string(rest), "\n") {
		// @[uprobe:/tmp/.../work:work]: 1000
		var probe string
		var n uint64
		if _, err := fmt.Sscanf(strings.NewReplacer("@[", "", "]:", " ").Replace(line), "%s %d", &probe, &n); err == nil {
			theirs[probe[strings.LastIndexByte(probe, ':')+1:]] = n
		}
	}
	t.Logf("owl %v, bpftrace %v", owl, theirs)
	checkCounts(t, theirs, owl)
	checkCounts(t, owl, map[string]uint64{"work": 1000, "sleep_ms": 20})
}

// runCommand runs `owl funccount args` in this process (e2e.RunCommand).
func runCommand(t *testing.T, args []string, workload func()) (stdout, stderr string, err error) {
	t.Helper()
	return e2e.RunCommand(t, command(), args, workload)
}
