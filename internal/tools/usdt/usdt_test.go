package usdt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	sdt "github.com/owlbpf/owl/internal/usdt"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// build compiles testdata/sdtlib.c into a shared library and
// testdata/sdt.c into a program linked with it, -O2, and returns the
// program and the library.
func build(t *testing.T) (prog, lib string) {
	t.Helper()
	gcc := e2e.Need(t, "gcc")
	if _, err := os.Stat("/usr/include/x86_64-linux-gnu/sys/sdt.h"); err != nil {
		e2e.Need(t, "/usr/include/sys/sdt.h") // systemtap-sdt-dev
	}
	dir := t.TempDir()
	lib = filepath.Join(dir, "libowlsdt.so")
	prog = filepath.Join(dir, "sdtprog")
	for _, args := range [][]string{
		{"-O2", "-shared", "-fPIC", "-o", lib, "testdata/sdtlib.c"},
		{"-O2", "-o", prog, "testdata/sdt.c", "-L" + dir, "-lowlsdt", "-Wl,-rpath," + dir},
	} {
		if out, err := exec.Command(gcc, args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %v: %v\n%s", args, err, out)
		}
	}
	return prog, lib
}

// program is the test program, waiting for "go N" lines.
type program struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func start(t *testing.T, bin string, args ...string) *program {
	t.Helper()
	p := &program{cmd: exec.Command(bin, args...)}
	p.cmd.Stderr = os.Stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewReader(out)
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

// say writes a line and returns the program's answer.
func (p *program) say(t *testing.T, line string) string {
	t.Helper()
	fmt.Fprintln(p.stdin, line)
	ans, err := p.out.ReadString('\n')
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return strings.TrimSpace(ans)
}

// collect gathers events until n arrived or 10 s passed.
func collect(t *testing.T, ch <-chan Event, n int) []Event {
	t.Helper()
	var got []Event
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case e := <-ch:
			got = append(got, e)
		case <-deadline:
			t.Fatalf("%d events of %d after 10 s: %+v", len(got), n, got)
		}
	}
	return got
}

// TestArgs traces the test program's probes as it fires them a known
// number of times: every argument kind gives its exact value, the guarded
// probe fires because the kernel set its semaphore, which is 0 again once
// owl is gone, and -p finds the probe of the library the program maps.
func TestArgs(t *testing.T) {
	e2e.Require(t)
	bin, lib := build(t)
	p := start(t, bin)
	pid := p.cmd.Process.Pid
	if ans := p.say(t, "go 1"); ans != "fired 1 guarded 0 sema 0" {
		t.Fatalf("before tracing: %q", ans)
	}

	// One source with a format for owltest:args, one with every argument
	// of owltest:guarded and of the library's probe, found through the
	// process's mappings.
	argsCfg, err := Resolve([]string{bin + ":owltest:args", `"i=%d neg=%d name=%s c=%d w=%d",`, "arg0,", "arg1,", "arg2,", "arg3,", "arg4"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	opts := e2e.Options()
	opts.Task.PID = pid
	// Cleanups run last registered first: this one after both sources
	// are closed.
	t.Cleanup(func() {
		if ans := p.say(t, "go 3"); ans != "fired 3 guarded 0 sema 0" {
			t.Errorf("after tracing: %q, want the semaphore back at 0", ans)
		}
	})
	src1, err := Open(argsCfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ch1 := e2e.Collect(t, src1)

	probes, err := sdt.Find(sdt.Target{PID: pid}, "*", "guarded")
	if err != nil {
		t.Fatal(err)
	}
	libProbes, err := sdt.Find(sdt.Target{PID: pid}, "owllib", "call")
	if err != nil {
		t.Fatal(err)
	}
	if len(libProbes) != 1 || filepath.Base(libProbes[0].Path) != filepath.Base(lib) {
		t.Fatalf("-p found owllib:call in %+v, want %s", libProbes, lib)
	}
	src2, err := Open(Config{Probes: append(probes, libProbes...)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ch2 := e2e.Collect(t, src2)

	const n = 5
	if ans := p.say(t, fmt.Sprintf("go %d", n)); ans != fmt.Sprintf("fired %d guarded %d sema 1", n, n) {
		t.Errorf("while tracing: %q, want the guarded probe to fire %d times with the semaphore at 1", ans, n)
	}
	for i, e := range collect(t, ch1, n) {
		want := fmt.Sprintf("i=%d neg=%d name=item-%d c=42 w=%d", i+1, -(i + 1), i+1, -10*(i+1))
		if string(e.Message) != want || e.PID != uint32(pid) || e.Probe != "owltest:args" || len(e.Args) != 5 {
			t.Errorf("event %d: %+v, want message %q from pid %d", i, e, want, pid)
		}
	}
	var guarded, calls int
	for _, e := range collect(t, ch2, 2*n) {
		var want string
		switch e.Probe {
		case "owltest:guarded":
			guarded++
			// id from memory at (%rdx), the counter from a register,
			// generation from memory at generation(%rip) of a PIE.
			want = fmt.Sprintf("arg0=%d arg1=%d arg2=2", 100+guarded, 1001+guarded)
		case "owllib:call":
			calls++
			want = fmt.Sprintf("arg0=%d arg1=%d", calls, 3*calls)
		}
		if string(e.Message) != want {
			t.Errorf("%s event: %q, want %q", e.Probe, e.Message, want)
		}
	}
	if guarded != n || calls != n {
		t.Errorf("%d guarded and %d library events, want %d each", guarded, calls, n)
	}
}

// TestPython traces Debian's python3.11 (semaphore-guarded probes in a
// non-PIE executable) calling a function a known number of times.
func TestPython(t *testing.T) {
	e2e.Require(t)
	const py = "/usr/bin/python3.11"
	if ps, err := sdt.ReadFile(py); err != nil || len(ps) == 0 {
		t.Skipf("%s has no USDT probes (%v)", py, err)
	}
	p := start(t, py, "-c", `import sys
def owl_probe_me(x):
    return x
print("ready", flush=True)
for line in sys.stdin:
    for i in range(int(line)):
        owl_probe_me(i)
    print("done", flush=True)
`)
	// Attached once python has started: its start-up returns from
	// thousands of functions.
	if ans, err := p.out.ReadString('\n'); err != nil || ans != "ready\n" {
		t.Fatalf("python said %q (%v)", ans, err)
	}
	cfg, err := Resolve([]string{py + ":python:function__return", "%s %s:%d", "arg0", "arg1", "arg2"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	opts := e2e.Options()
	opts.Task.PID = p.cmd.Process.Pid
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ch := e2e.Collect(t, src)
	const n = 7
	if ans := p.say(t, fmt.Sprint(n)); ans != "done" {
		t.Fatalf("python said %q", ans)
	}
	got := 0
	deadline := time.After(10 * time.Second)
	for got < n {
		select {
		case e := <-ch:
			if string(e.Message) == "<string> owl_probe_me:3" {
				got++
			} else if strings.Contains(string(e.Message), "owl_probe_me") {
				t.Errorf("message %q, want \"<string> owl_probe_me:3\"", e.Message)
			}
		case <-deadline:
			t.Fatalf("%d returns of owl_probe_me, want %d", got, n)
		}
	}
}

// runCommand runs `owl usdt args` in this process and returns its
// output; with workload, once it traces, then stops it as by Ctrl-C
// (e2e.RunCommand).
func runCommand(t *testing.T, args []string, workload func()) (string, error) {
	t.Helper()
	out, _, err := e2e.RunCommand(t, command(), args, workload)
	return out, err
}

// TestList lists python3.11's probes and libjvm's as readelf -n counts
// them (one line per note).
func TestList(t *testing.T) {
	readelf := e2e.Need(t, "readelf")
	for _, f := range []string{"/usr/bin/python3.11", "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so"} {
		if _, err := os.Stat(f); err != nil {
			t.Logf("%s: %v", f, err)
			continue
		}
		out, err := runCommand(t, []string{"-l", f}, nil)
		if err != nil {
			t.Fatal(err)
		}
		notes, err := exec.Command(readelf, "-nW", f).Output()
		if err != nil {
			t.Fatal(err)
		}
		want := strings.Count(string(notes), "NT_STAPSDT")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if want == 0 || len(lines) != want {
			t.Errorf("%s: %d lines, readelf -n has %d notes", f, len(lines), want)
		}
		t.Logf("%s: %d probe locations, e.g. %s", f, len(lines), lines[len(lines)-1])
		if strings.HasSuffix(f, "python3.11") {
			want := "/usr/bin/python3.11 python:function__entry at 0x4f20a1 (offset 0xf20a1) semaphore 0xa84260 (offset 0x683260) args 8@%rbp 8@%r12 -4@%eax"
			if !strings.Contains(out, want+"\n") {
				t.Errorf("no line %q in\n%s", want, out)
			}
		}
	}
}

// TestCommand traces through the command line, with a format in BCC's
// quoted, comma-separated style.
func TestCommand(t *testing.T) {
	e2e.Require(t)
	bin, _ := build(t)
	p := start(t, bin)
	out, err := runCommand(t, []string{"-p", fmt.Sprint(p.cmd.Process.Pid), "sdtprog:owltest:args", `"%s has weight %d"`, "arg2,", "arg4"}, func() {
		p.say(t, "go 2")
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		want := fmt.Sprintf("owltest:args             item-%d has weight %d\n", i, -10*i)
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

// TestBadInput: one line, exit status 2, nothing loaded.
func TestBadInput(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nosuchprovider"},
		{"/usr/bin/python3.11:python:nosuchprobe"},
		{"python:function__entry"}, // no target, no -p
		{"/usr/bin/python3.11:python:function__entry", "%d %d", "arg0"},
		{"/usr/bin/python3.11:python:function__entry", "%d", "arg7"},
		{"/usr/bin/python3.11:python:function__entry", "%d", "argX"},
		{"/usr/bin/python3.11:python:function__entry", "%q", "arg0"},
		{"-l"},
		{"-l", "/nonexistent/file"},
	} {
		_, err := runCommand(t, args, nil)
		var ue *cli.UsageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}

// TestOneUprobeEach takes the path of kernels without uprobe-multi links
// (one perf-event uprobe per location, the semaphore registered with
// each).
func TestOneUprobeEach(t *testing.T) {
	e2e.Require(t)
	bin, _ := build(t)
	p := start(t, bin)
	probes, err := sdt.Find(sdt.Target{Path: bin}, "owltest", "*")
	if err != nil {
		t.Fatal(err)
	}
	opts := e2e.Options()
	opts.Task.PID = p.cmd.Process.Pid
	src, err := Open(Config{Probes: probes, each: true}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ch := e2e.Collect(t, src)
	if ans := p.say(t, "go 2"); ans != "fired 2 guarded 2 sema 1" {
		t.Errorf("while tracing: %q", ans)
	}
	n := map[Text]int{}
	for _, e := range collect(t, ch, 4) {
		n[e.Probe]++
	}
	if n["owltest:args"] != 2 || n["owltest:guarded"] != 2 {
		t.Errorf("events by probe: %v, want 2 of each", n)
	}
}
