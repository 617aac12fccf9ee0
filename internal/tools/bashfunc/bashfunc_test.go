package bashfunc

import (
	"bytes"
	"fmt"
	"io"
	"math/bits"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/funclatency"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// script waits for a line on stdin (the tool attaches meanwhile), then
// calls f ten times, slow once (timed by bash itself, printed on stdout),
// rec recursively to depth 4, and outer, which sources a file that calls
// a function, then sleeps: a `source` ends inside outer at outer's depth,
// and must not be taken for outer's return. Defining functions and
// `declare -f` call find_function_def too, and are no calls.
const script = `read -r _
f() { :; }
slow() { sleep 0.2; }
rec() { if [ "$1" -gt 0 ]; then rec $(( $1 - 1 )); fi; }
outer() { source "$SRC"; sleep 0.1; }
declare -f f >/dev/null
for i in 1 2 3 4 5 6 7 8 9 10; do f; done
t0=$EPOCHREALTIME; slow; t1=$EPOCHREALTIME
echo "$t0 $t1"
rec 3
outer
`

// bashScript is a running bash waiting for its go.
type bashScript struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout bytes.Buffer
}

func startScript(t *testing.T) *bashScript {
	t.Helper()
	e2e.Need(t, DefaultBash)
	src := filepath.Join(t.TempDir(), "lib.sh")
	if err := os.WriteFile(src, []byte("sourced() { :; }\nsourced\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &bashScript{cmd: exec.Command(DefaultBash, "-c", script)}
	s.cmd.Env = append(os.Environ(), "SRC="+src, "LC_ALL=C")
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, os.Stderr
	var err error
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			s.cmd.Wait()
		}
	})
	return s
}

func (s *bashScript) pid() int { return s.cmd.Process.Pid }

// run lets the script go and waits for its end; it returns how long slow
// took as bash measured it around the call.
func (s *bashScript) run(t *testing.T) time.Duration {
	t.Helper()
	if _, err := io.WriteString(s.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Wait(); err != nil {
		t.Fatalf("script: %v", err)
	}
	f := strings.Fields(s.stdout.String())
	if len(f) != 2 {
		t.Fatalf("script printed %q, want two times", s.stdout.String())
	}
	t0, err0 := strconv.ParseFloat(f[0], 64)
	t1, err1 := strconv.ParseFloat(f[1], 64)
	if err0 != nil || err1 != nil {
		t.Fatalf("script printed %q", s.stdout.String())
	}
	return time.Duration((t1 - t0) * 1e9)
}

// Every call of the script, with its depth, and nothing else: the
// definitions and declare -f are not calls.
func TestCalls(t *testing.T) {
	e2e.Require(t)
	s := startScript(t)
	opts := e2e.Options()
	opts.Task.PID = s.pid()
	src, err := Open(Config{Bash: DefaultBash}, opts)
	if err != nil {
		t.Fatal(err)
	}
	ch := e2e.Collect(t, src)
	s.run(t)
	want := []string{}
	for range 10 {
		want = append(want, "f@1")
	}
	want = append(want, "slow@1", "rec@1", "rec@2", "rec@3", "rec@4", "outer@1", "sourced@2")
	var got []string
	var last Event
	for quiet := false; !quiet; {
		select {
		case e := <-ch:
			got = append(got, fmt.Sprintf("%s@%d", e.Func, e.Depth))
			last = e
		case <-time.After(500 * time.Millisecond):
			quiet = len(got) >= len(want)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("calls:\n got %v\nwant %v", got, want)
	}
	if last.PID != uint32(s.pid()) || last.Comm.String() != "bash" || last.TID != last.PID {
		t.Errorf("task: pid %d tid %d comm %q, want bash %d", last.PID, last.TID, last.Comm, s.pid())
	}
	if time.Since(last.Time.Time).Abs() > time.Minute {
		t.Errorf("time %v is not now", last.Time)
	}
}

// Each function's histogram: f ten times, rec four, slow once in the
// bucket of the time bash measured around it (128-255 ms unless the
// machine is so loaded that sleep 0.2 took longer), outer from its call
// to its own return, not to the end of the file it sources.
func TestDurations(t *testing.T) {
	e2e.Require(t)
	s := startScript(t)
	opts := e2e.Options()
	opts.Task.PID = s.pid() // and the bash is /proc/PID/exe
	src, err := OpenLat(LatConfig{Unit: funclatency.Msecs}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	measured := s.run(t)
	hists, err := src.Totals(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Hist{}
	var names []string
	for _, h := range hists {
		byName[h.Func] = h
		names = append(names, fmt.Sprintf("%s×%d", h.Func, h.Count))
	}
	if got, want := strings.Join(names, " "), "f×10 outer×1 rec×4 slow×1 sourced×1"; got != want {
		t.Errorf("functions timed: %s, want %s", got, want)
	}
	slow := byName["slow"]
	// The kernel's time is inside bash's own: at least the 200 ms slept,
	// at most what bash measured.
	if slow.Total < 200 || slow.Total > uint64(measured.Milliseconds()) {
		t.Errorf("slow took %d ms; want 200 ms to the %v bash measured", slow.Total, measured)
	}
	wantSlot := bits.Len64(slow.Total) - 1
	if len(slow.Buckets) != wantSlot+1 || slow.Buckets[wantSlot].Count != 1 {
		t.Errorf("slow (%d ms): buckets %+v, want the one at %d", slow.Total, slow.Buckets, 1<<wantSlot)
	}
	if measured < 256*time.Millisecond && (slow.Buckets[len(slow.Buckets)-1].Low != 128 || slow.Buckets[len(slow.Buckets)-1].High != 255) {
		t.Errorf("slow (bash measured %v): buckets %+v, want 128 -> 255", measured, slow.Buckets)
	}
	if outer := byName["outer"]; outer.Total < 100 {
		t.Errorf("outer took %d ms, want at least the 100 ms it sleeps after source", outer.Total)
	}
	if f := byName["f"]; f.Buckets[0].Count != 10 {
		t.Errorf("f: buckets %+v, want 10 calls under 2 ms", f.Buckets)
	}
	st, err := src.Stats()
	if err != nil || st.Lost() != 0 {
		t.Errorf("lost: %+v (%v)", st, err)
	}
}

// The command prints funclatency's histogram per function; bad input is
// one line and exit status 2.
func TestCommand(t *testing.T) {
	e2e.Require(t)
	s := startScript(t)
	var measured time.Duration
	out, stderr, err := e2e.RunCommand(t, latCommand(), []string{"-p", strconv.Itoa(s.pid())}, func() { measured = s.run(t) })
	if err != nil {
		t.Fatalf("bashfunclat: %v: %s", err, stderr)
	}
	for _, want := range []string{"\nFunction = slow\n     msecs               : count    distribution\n", "count: 10\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if measured < 256*time.Millisecond && !strings.Contains(out, "       128 -> 255        : 1        |****************************************|\n\navg = ") {
		t.Errorf("slow not in the 128 -> 255 ms bucket (bash measured %v):\n%s", measured, out)
	}

	for _, c := range []struct {
		cmd  func() *cobra.Command
		args []string
		says string
	}{
		{command, []string{"--bash", "/bin/true"}, "no dynamic symbol find_function_def"},
		{command, []string{"--bash", "/nonexistent/bash"}, "no such file"},
		{latCommand, []string{"--funcs", "0"}, "--funcs 0"},
		{latCommand, []string{"--microseconds", "--nanoseconds"}, "choose one unit"},
	} {
		_, stderr, err := e2e.RunCommand(t, c.cmd(), c.args, nil)
		if err == nil || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v (status %d), stderr %q; want one line saying %q, status 2", c.args, err, cli.ExitCode(err), stderr, c.says)
		}
	}
}

// Symbols of the stock bash, and files that are no bash.
func TestFindBash(t *testing.T) {
	b, err := FindBash(DefaultBash)
	if err != nil {
		t.Skipf("no usable %s: %v", DefaultBash, err)
	}
	if b.CallOffset == 0 || b.ReturnOffset == 0 || b.FuncnestSym == 0 || b.SourcenestSym == 0 || b.ThisFunctionSym == 0 {
		t.Errorf("incomplete: %+v", b)
	}
	exe, _ := os.Executable()
	if _, err := FindBash(exe); err == nil {
		t.Errorf("FindBash(%s, a Go test binary) succeeded", exe)
	}
}

// The registry's configs find the bash only when the hook is tried: a
// missing one fails the Check as FindBash does, a present one attaches.
func TestLazyTarget(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "bash")
	_, findErr := FindBash(missing)
	for name, hook := range map[string]string{"bashfunc": hookName, "bashfunclat": latHookName} {
		tgt := newTarget(Config{Bash: missing}, 0)
		var err error
		if name == "bashfunc" {
			_, err = tool.Open(&spec, specConfig{t: tgt}, tool.DefaultOptions())
		} else {
			_, err = tool.Open(&latSpec, latSpecConfig{t: tgt}, tool.DefaultOptions())
		}
		if want := name + ": no usable hook on this kernel: " + hook + ": " + findErr.Error(); err == nil || err.Error() != want {
			t.Errorf("open %s: %v, want %s", name, err, want)
		}
	}

	e2e.Require(t)
	if _, err := FindBash(DefaultBash); err != nil {
		t.Skipf("no usable %s: %v", DefaultBash, err)
	}
	src, err := tool.Open(&latSpec, latSpec.Default(), e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Session.Hook.Name != latHookName || len(src.Session.Tried) != 0 {
		t.Errorf("hook %q after %v, want %q first", src.Session.Hook.Name, src.Session.Tried, latHookName)
	}
}
