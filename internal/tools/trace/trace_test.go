package trace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tool"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// cProgram waits for a line on stdin, then calls work(i) for i in
// 0..N-1 and opens a path held in a stack buffer (so its page is there
// when the entry probe reads it).
const cProgram = `#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

long work(long i)
{
	return i * 2 + 1;
}

int main(int argc, char **argv)
{
	char path[64];
	long sum = 0;
	int c, fd;

	while ((c = getchar()) != EOF && c != '\n')
		;
	for (long i = 0; i < atol(argv[1]); i++)
		sum += work(i);
	strcpy(path, "/owl-trace-test/no-such-file");
	fd = open(path, O_RDONLY);
	printf("%ld %d\n", sum, fd);
	return 0;
}
`

func buildC(t *testing.T) string {
	t.Helper()
	gcc := e2e.Need(t, "gcc")
	dir := t.TempDir()
	src := filepath.Join(dir, "app.c")
	if err := os.WriteFile(src, []byte(cProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "app")
	if out, err := exec.Command(gcc, "-O1", "-fno-omit-frame-pointer", "-fno-inline", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	return bin
}

// waiting starts bin with args, blocked on its stdin until go_ is
// called; wait returns its output.
func waiting(t *testing.T, bin string, args ...string) (pid int, goOn func(), wait func() string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid, func() { io.WriteString(in, "\n"); in.Close() }, func() string {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		return out.String()
	}
}

func openOrFatal(t *testing.T, cfg Config, pid int) *Source {
	t.Helper()
	e2e.Require(t)
	opts := e2e.Options()
	opts.Task.PID = pid
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatalf("open %q: %v", cfg.Probes, err)
	}
	return src
}

// collect gathers events until want of them came or the timeout.
func collect(t *testing.T, ch <-chan Event, want int, timeout time.Duration) []Event {
	t.Helper()
	var got []Event
	deadline := time.After(timeout)
	for len(got) < want {
		select {
		case e := <-ch:
			got = append(got, e)
		case <-deadline:
			t.Fatalf("%d events of %d after %v", len(got), want, timeout)
		}
	}
	return got
}

// One r: probe prints the 1000 arguments of work in order with their
// return values; a filtered p: probe prints one; c:open prints the path.
func TestCWorkArgumentsAndReturns(t *testing.T) {
	bin := buildC(t)
	pid, goOn, wait := waiting(t, bin, "1000")
	src := openOrFatal(t, Config{Probes: []string{
		`r:` + bin + `:work "%d -> %d", arg1, retval`,
		`p:` + bin + `:work (arg1 == 500) "%ld", arg1`,
		`c:open "%s", arg1`,
		`r:c:open ret=%d, retval`,
	}}, pid)
	ch := e2e.Collect(t, src.Source)
	goOn()
	out := wait()
	if out != fmt.Sprintf("%d -1\n", 1000*1000) {
		t.Errorf("traced program printed %q", out)
	}
	got := collect(t, ch, 1000+1+2, 10*time.Second)
	var rets, ps, opens []Event
	for _, e := range got {
		switch {
		case e.Func == "work" && e.Return:
			rets = append(rets, e)
		case e.Func == "work":
			ps = append(ps, e)
		case e.Func == "open":
			opens = append(opens, e)
		default:
			t.Errorf("unexpected event %+v", e)
		}
	}
	for i, e := range rets {
		if want := fmt.Sprintf("%d -> %d", i, 2*i+1); e.Msg != want {
			t.Fatalf("return %d: %q, want %q", i, e.Msg, want)
		}
		if e.PID != uint32(pid) || e.Comm.String() != "app" {
			t.Fatalf("task %+v", e.Task)
		}
	}
	if len(rets) != 1000 {
		t.Errorf("%d returns, want 1000", len(rets))
	}
	if len(ps) != 1 || ps[0].Msg != "500" || ps[0].Probe != 1 {
		t.Errorf("filtered entries: %+v", ps)
	}
	if len(opens) != 2 || opens[0].Msg != "/owl-trace-test/no-such-file" || opens[1].Msg != "ret=-1" {
		t.Errorf("open: %+v", opens)
	}
	if n, err := src.Misses(); err != nil || n != 0 {
		t.Errorf("misses %d, %v", n, err)
	}
}

// -U prints the user stack of each event: at work's return, main.
// (At a function's entry its caller is not in the stack yet: the frame
// pointer chain starts at the caller's caller.)
func TestCUserStack(t *testing.T) {
	bin := buildC(t)
	pid, goOn, wait := waiting(t, bin, "10")
	src := openOrFatal(t, Config{Probes: []string{`r:` + bin + `:work (retval == 11) "%d", retval`}, UStack: true}, pid)
	ch := e2e.Collect(t, src.Source)
	goOn()
	wait()
	e := collect(t, ch, 1, 5*time.Second)[0]
	var names []string
	for _, f := range e.UStack {
		names = append(names, f.Symbol)
	}
	if e.Msg != "11" || len(names) < 2 || names[0] != "main" {
		t.Errorf("%q, stack %v: want 11 and main, ...", e.Msg, names)
	}
}

// goProgram's calls mode makes 100 sequential calls of each function;
// soak mode runs four goroutines calling them for a number of seconds,
// yielding and growing stacks, and prints ok when every result was right.
const goProgram = `package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

//go:noinline
func add(a, b int) int {
	if a%7 == 0 {
		runtime.Gosched()
	}
	return a + b
}

//go:noinline
func greet(name string, n int) int { return len(name) * n }

//go:noinline
func check(i int) (int, error) {
	if i%4 == 3 {
		return -i, errors.New("bad " + strconv.Itoa(i))
	}
	return i * 10, nil
}

//go:noinline
func deep(n int) int {
	var pad [512]byte
	pad[n%512] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return deep(n-1) + int(pad[n%512]&1)
}

func main() {
	bufio.NewReader(os.Stdin).ReadString('\n')
	if os.Args[1] == "calls" {
		sum := 0
		for i := range 100 {
			sum += add(i, 1000)
			sum += greet("gopher-"+strconv.Itoa(i), i)
			n, err := check(i)
			if err != nil {
				sum++
			}
			sum += n
		}
		fmt.Println(sum)
		return
	}
	secs, _ := strconv.Atoi(os.Args[2])
	end := time.Now().Add(time.Duration(secs) * time.Second)
	var wg sync.WaitGroup
	bad := make([]bool, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(end); i++ {
				if add(i, g) != i+g || deep(40) != 20 {
					bad[g] = true
				}
				if n, err := check(i); (err != nil) != (i%4 == 3) || (err == nil && n != i*10) {
					bad[g] = true
				}
			}
		}()
	}
	wg.Wait()
	for _, b := range bad {
		if b {
			fmt.Println("wrong results")
			os.Exit(1)
		}
	}
	fmt.Println("ok")
}
`

// buildGo builds goProgram with DWARF and symbols, and stripped.
func buildGo(t *testing.T) map[string]string {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = e2e.Need(t, "go")
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(goProgram), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module target\n\ngo 1.22\n"), 0o644)
	bins := map[string]string{}
	for name, ldflags := range map[string]string{"full": "", "stripped": "-s"} {
		bin := filepath.Join(dir, name)
		cmd := exec.Command(goTool, "build", "-ldflags="+ldflags, "-o", bin, ".")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", name, err, out)
		}
		bins[name] = bin
	}
	return bins
}

var goWantSum = func() int {
	sum := 0
	for i := range 100 {
		sum += i + 1000 + len("gopher-"+fmt.Sprint(i))*i
		if i%4 == 3 {
			sum += 1 - i
		} else {
			sum += i * 10
		}
	}
	return sum
}()

// Go functions: integer and string arguments, results and errors, read by
// the register ABI; from DWARF, and stripped by the verbs.
func TestGoArgumentsAndResults(t *testing.T) {
	bins := buildGo(t)
	for _, name := range []string{"full", "stripped"} {
		t.Run(name, func(t *testing.T) {
			bin := bins[name]
			pid, goOn, wait := waiting(t, bin, "calls")
			src := openOrFatal(t, Config{Probes: []string{
				`r:` + bin + `:main.add "%d + %d = %d", arg1, arg2, retval`,
				`p:` + bin + `:main.greet "%s x%d", arg1, arg2`,
				`r:` + bin + `:main.check (arg1 < 8) "%d -> %d %e", arg1, retval, retval2`,
			}}, pid)
			ch := e2e.Collect(t, src.Source)
			goOn()
			if out := wait(); out != fmt.Sprintln(goWantSum) {
				t.Errorf("traced program printed %q, want %d", out, goWantSum)
			}
			got := collect(t, ch, 100+100+8, 10*time.Second)
			var adds, greets, checks []string
			for _, e := range got {
				switch e.Func {
				case "main.add":
					adds = append(adds, e.Msg)
				case "main.greet":
					greets = append(greets, e.Msg)
				case "main.check":
					checks = append(checks, e.Msg)
				}
			}
			for i := range 100 {
				if want := fmt.Sprintf("%d + 1000 = %d", i, i+1000); i >= len(adds) || adds[i] != want {
					t.Fatalf("add %d: %q, want %q", i, adds[min(i, len(adds)-1)], want)
				}
				if want := fmt.Sprintf("gopher-%d x%d", i, i); greets[i] != want {
					t.Fatalf("greet %d: %q, want %q", i, greets[i], want)
				}
			}
			for i := range 8 {
				want := fmt.Sprintf("%d -> %d nil", i, i*10)
				if i%4 == 3 {
					want = fmt.Sprintf(`%d -> %d error(*errors.errorString) "bad %d"`, i, -i, i)
				}
				if checks[i] != want {
					t.Errorf("check %d: %q, want %q", i, checks[i], want)
				}
			}
		})
	}
}

// A Go program traced with returns for 10 s (uprobes on every RET, a
// filter that never passes) finishes normally with the right results.
func TestGoProgramFinishesUnderReturns(t *testing.T) {
	bins := buildGo(t)
	secs := "10"
	if testing.Short() {
		secs = "2"
	}
	bin := bins["full"]
	pid, goOn, wait := waiting(t, bin, "soak", secs)
	src := openOrFatal(t, Config{Probes: []string{
		`r:` + bin + `:main.add (retval == -1) "%d", arg1`,
		`r:` + bin + `:main.deep (retval == -1) "%d", arg1`,
		`r:` + bin + `:main.check (retval == 1) "%d %e", arg1, retval2`,
	}}, pid)
	ch := e2e.Collect(t, src.Source)
	goOn()
	if out := wait(); out != "ok\n" {
		t.Errorf("traced program printed %q", out)
	}
	select {
	case e := <-ch:
		t.Errorf("filter passed: %+v", e)
	case <-time.After(200 * time.Millisecond):
	}
}

// The command prints BCC trace's header and lines, -t's TIME column.
func TestCommand(t *testing.T) {
	bin := buildC(t)
	e2e.Require(t)
	pid, goOn, wait := waiting(t, bin, "3")
	out := runCommand(t, []string{"-t", "-p", fmt.Sprint(pid), "r:" + bin + `:work "%d -> %d", arg1, retval`}, func() {
		goOn()
		wait()
		time.Sleep(300 * time.Millisecond)
	})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || lines[0] != "TIME     PID     TID     COMM            FUNC             -" {
		t.Fatalf("output:\n%s", out)
	}
	for i, l := range lines[1:] {
		want := fmt.Sprintf("%-7d %-7d %-15s %-16s %d -> %d", pid, pid, "app", "work", i, 2*i+1)
		if len(l) < 9 || l[9:] != want || l[8] != ' ' {
			t.Errorf("line %q, want TIME then %q", l, want)
		}
	}
}

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
		t.Fatalf("trace %v: %v", args, err)
	case <-time.After(10 * time.Second):
		t.Fatal("trace did not start tracing")
	}
	work()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("trace %v: %v", args, err)
	}
	return stdout.String()
}

type announce struct {
	w       io.Writer
	tracing chan struct{}
	once    sync.Once
}

func (a *announce) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("Tracing ")) {
		a.once.Do(func() { close(a.tracing) })
	}
	return a.w.Write(p)
}

// Bad probes are bad input: one line, exit 2, nothing loaded.
func TestBadProbes(t *testing.T) {
	bin := "/proc/self/exe"
	for _, p := range []string{
		`c:open "%s"`,                           // a verb without argument
		`c:open (arg1 == ) "%d", arg1`,          // a filter that does not parse
		`c:open (arg1 & 1)`,                     // an operator the kernel side lacks
		`c:open "%f", arg1`,                     // a verb not supported
		`p:c:open "%d", retval`,                 // retval at entry
		`t:sched:sched_switch`,                  // tracepoints
		`p::do_sys_open`,                        // kernel functions
		`c:no_such_function_anywhere`,           // no match
		`/no/such/file:f`,                       // no file
		`r:c:open "%d", retval2`,                // C has one result
		`c:open "%d", arg7`,                     // beyond C's registers
		bin + `:main.x "%e", arg1`,              // no such function
		`c:open (arg1 == 1`,                     // unbalanced
		`c:open "%s", arg1 "trailing"`,          // junk
		`c:open "%s" arg1`,                      // no comma
		`c:open "%e", arg1`,                     // %e of C
		`c:open "unterminated`,                  // quote
		`c:open (arg1 == 99999999999999999999)`, // constant too big
	} {
		_, err := Open(Config{Probes: []string{p}}, tool.DefaultOptions())
		var serr *SpecError
		if !errors.As(err, &serr) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want a one-line *SpecError", p, err)
			continue
		}
		if code := cli.ExitCode(&cli.UsageError{Err: serr.Err}); code != 2 {
			t.Errorf("%s: exit %d", p, code)
		}
	}
}
