package execsnoop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tool"
)

// missingPath is what the failing child execs.
const missingPath = "/nonexistent/owl-execsnoop-test"

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{
		// The argv test's child: its exec is the event; it does nothing.
		"noop": func([]string) error { return nil },
		// Execs a file that does not exist with args (ENOENT), then exits.
		"execfail": func(args []string) error {
			err := unix.Exec(missingPath, args, nil)
			if err != unix.ENOENT {
				return fmt.Errorf("exec %s: %v, want ENOENT", missingPath, err)
			}
			return nil
		},
	})
}

// ownChildren is Options for every task, with Config.PPID set by the
// caller to this process: the events of this test's children only.
func open(t *testing.T, cfg Config, opts tool.Options) *tool.Source[Event] {
	t.Helper()
	e2e.Require(t)
	cfg.PPID = os.Getpid()
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// argv20 is 20 arguments: argv[0], one with spaces, one of 4 KiB, and
// others, one with a quote and one empty.
func argv20() []string {
	args := []string{"/proc/self/exe", "two words here", strings.Repeat("k", 4096), `say "hi"`, ""}
	for i := len(args); i < 20; i++ {
		args = append(args, "arg"+strconv.Itoa(i))
	}
	return args
}

// runChild runs cmd to its end and returns its pid.
func runChild(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v", cmd.Args, err)
	}
	return cmd.Process.Pid
}

// child is e2e.Child with argv exactly args (argv[0] included).
func child(action string, args []string) *exec.Cmd {
	cmd := e2e.Child(action, args[1:]...)
	cmd.Args = args
	return cmd
}

func strs(args []Str) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}

func TestArgvExactly(t *testing.T) {
	src := open(t, Config{}, e2e.Options())
	events := e2e.Collect(t, src)
	want := argv20()
	pid := runChild(t, child("noop", want))
	e := e2e.Wait(t, events, 10*time.Second, "the child's exec", func(e Event) bool { return int(e.PID) == pid })
	if got := strs(e.Args); !slices.Equal(got, want) {
		t.Errorf("args: got %d %q...\nwant %d %q...", len(got), trunc(got), len(want), trunc(want))
	}
	if e.Truncated || e.Unreadable || e.Ret != 0 {
		t.Errorf("truncated %v unreadable %v ret %d: want false false 0", e.Truncated, e.Unreadable, e.Ret)
	}
	if e.PPID != uint32(os.Getpid()) || e.TID != e.PID || e.Filename != "/proc/self/exe" || e.Comm.String() != "exe" {
		t.Errorf("ppid %d tid %d filename %q comm %q: want %d %d /proc/self/exe exe", e.PPID, e.TID, e.Filename, e.Comm.String(), os.Getpid(), e.PID)
	}
	if time.Since(e.Time.Time).Abs() > time.Minute {
		t.Errorf("time %v is not now", e.Time)
	}
	// The text row: BCC's columns, arguments as given ("..." absent).
	row := string((&flags{}).table().AppendRow(nil, &e))
	wantRow := fmt.Sprintf("%-16s %-7d %-7d %3d %s\n", "exe", pid, os.Getpid(), 0, strings.Join(want, " "))
	if row != wantRow {
		t.Errorf("row:\n%q\nwant\n%q", trunc([]string{row}), trunc([]string{wantRow}))
	}
}

// trunc shortens long strings for messages.
func trunc(ss []string) []string {
	out := slices.Clone(ss)
	for i, s := range out {
		if len(s) > 64 {
			out[i] = s[:64] + "..." + strconv.Itoa(len(s))
		}
	}
	return out
}

// More arguments than --max-args: cut and marked; and an argv longer than
// an event carries: cut at ArgsBytes, marked.
func TestTruncated(t *testing.T) {
	src := open(t, Config{MaxArgs: 5}, e2e.Options())
	events := e2e.Collect(t, src)
	args := argv20()
	pid := runChild(t, child("noop", args))
	e := e2e.Wait(t, events, 10*time.Second, "the child's exec", func(e Event) bool { return int(e.PID) == pid })
	if got := strs(e.Args); !slices.Equal(got, args[:5]) || !e.Truncated {
		t.Errorf("args %q truncated %v: want the first 5 and true", trunc(got), e.Truncated)
	}
	if text := string(e.AppendArgs(nil, false)); !strings.HasSuffix(text, `say "hi"  ...`) {
		t.Errorf("ARGS %q: want it to end with ...", trunc([]string{text}))
	}

	big := []string{"/proc/self/exe", strings.Repeat("a", ArgsBytes), "tail"}
	pid = runChild(t, child("noop", big))
	e = e2e.Wait(t, events, 10*time.Second, "the big exec", func(e Event) bool { return int(e.PID) == pid })
	if len(e.Args) != 2 || e.Args[1] != Str(big[1][:ArgsBytes-len(big[0])-1]) || !e.Truncated {
		t.Errorf("big argv: %d args, truncated %v", len(e.Args), e.Truncated)
	}
}

// -x: a failed exec with its errno and the arguments it was given; the
// child's own successful exec comes first.
func TestFailedExec(t *testing.T) {
	src := open(t, Config{Fails: true}, e2e.Options())
	events := e2e.Collect(t, src)
	args := []string{"/proc/self/exe", "one", "two words", strings.Repeat("z", 4096)}
	pid := runChild(t, child("execfail", args))
	ok := e2e.Wait(t, events, 10*time.Second, "the child's exec", func(e Event) bool { return int(e.PID) == pid })
	if ok.Ret != 0 || !slices.Equal(strs(ok.Args), args) {
		t.Errorf("first exec: ret %d args %q", ok.Ret, trunc(strs(ok.Args)))
	}
	e := e2e.Wait(t, events, 10*time.Second, "the failed exec", func(e Event) bool { return int(e.PID) == pid })
	if e.Ret != -2 || e.Filename != missingPath || !slices.Equal(strs(e.Args), args[1:]) || e.Truncated || e.Unreadable {
		t.Errorf("failed exec: ret %d filename %q args %q truncated %v unreadable %v; want -2 %s %q",
			e.Ret, e.Filename, trunc(strs(e.Args)), e.Truncated, e.Unreadable, missingPath, trunc(args[1:]))
	}
	// The caller of the failed exec is the child, already exec'd: COMM
	// is its name.
	if e.Comm.String() != "exe" || e.PPID != uint32(os.Getpid()) {
		t.Errorf("failed exec: comm %q ppid %d", e.Comm.String(), e.PPID)
	}
	if row := string((&flags{}).table().AppendRow(nil, &e)); !strings.Contains(row, " -2 one two words zzz") {
		t.Errorf("row %q: want RET -2 and the arguments", trunc([]string{row}))
	}
}

// A one-page ring fills up: every exec is either delivered or counted as
// lost (ring_full), none silently.
func TestRingFullCounted(t *testing.T) {
	opts := e2e.Options()
	opts.RingBytes = 4096
	src := open(t, Config{}, opts)
	defer src.Close()
	const n = 12
	pids := map[int]bool{}
	for range n {
		// Each record holds ~3 KiB of arguments: one fits in the page.
		pids[runChild(t, child("noop", []string{"/proc/self/exe", strings.Repeat("r", 3000)}))] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // deliver what the ring holds, then stop
	got := 0
	if err := src.Run(ctx, func(e *Event) {
		if pids[int(e.PID)] {
			got++
		}
	}); err != nil {
		t.Fatal(err)
	}
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got+int(st.RingFull) != n || st.RingFull == 0 {
		t.Errorf("%d execs: %d delivered + %d ring_full, want the sum to be %d with some lost", n, got, st.RingFull, n)
	}
}

// -n and -l: regular expressions on the command name and on the
// arguments, as BCC's.
func TestNameAndLine(t *testing.T) {
	src := open(t, Config{Name: regexp.MustCompile(`^ex`), Line: regexp.MustCompile(`keep me`)}, e2e.Options())
	events := e2e.Collect(t, src)
	dropped := runChild(t, child("noop", []string{"/proc/self/exe", "drop"}))
	kept := runChild(t, child("noop", []string{"/proc/self/exe", "please", "keep me"}))
	e := e2e.Wait(t, events, 10*time.Second, "the kept exec", func(e Event) bool {
		if int(e.PID) == dropped {
			t.Errorf("exec %q not matching -l was printed", e.Line())
		}
		return int(e.PID) == kept
	})
	if e.Line() != "/proc/self/exe please keep me" {
		t.Errorf("line %q", e.Line())
	}
}

func TestQuote(t *testing.T) {
	e := Event{Args: []Str{"a b", `say "hi"`, `back\slash`, "new\nline"}}
	got := string(e.AppendArgs(nil, true))
	want := `"a b" "say \"hi\"" "back\x5cslash" "new\x0aline"`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestSplitArgs(t *testing.T) {
	for _, c := range []struct {
		area string
		max  int
		want []string
		more bool
	}{
		{"a\x00b\x00", 20, []string{"a", "b"}, false},
		{"a\x00\x00c\x00", 20, []string{"a", "", "c"}, false},
		{"a\x00b\x00c", 2, []string{"a", "b"}, true},
		{"a\x00bc", 20, []string{"a", "bc"}, false}, // cut short: the last as far as it goes
		{"", 20, nil, false},
	} {
		got, more := splitArgs([]byte(c.area), c.max)
		if !slices.Equal(strs(got), c.want) || more != c.more {
			t.Errorf("%q max %d: got %q %v, want %q %v", c.area, c.max, strs(got), more, c.want, c.more)
		}
	}
}

// Side by side with bpftrace's execsnoop.bt and libbpf-tools' execsnoop -x
// on one workload (successful and failed execs): every exec of the
// workload either peer reports, owl reports too, with the same pid and
// arguments.
func TestSameExecsAsPeers(t *testing.T) {
	src := open(t, Config{Fails: true, MaxArgs: 100}, e2e.Options())
	events := e2e.Collect(t, src)
	bpftrace, err := exec.LookPath("bpftrace")
	if err != nil {
		bpftrace = "/usr/bin/bpftrace" // StartTracer skips or fails on it
	}
	bt := e2e.StartTracer(t, bpftrace, "-B", "line", "/usr/sbin/execsnoop.bt")
	bt.WaitLine(t, "TIME(ms)")
	lt := e2e.StartTracer(t, "/usr/sbin/execsnoop", "-x")
	lt.WaitLinks(t, 2)

	// The workload: 6 execs, and 2 children that exec and then fail to.
	want := map[int]int{} // pid: execs owl must report
	for i := range 6 {
		want[runChild(t, child("noop", []string{"/proc/self/exe", "peer", strconv.Itoa(i), "--flag=x"}))] = 1
	}
	for i := range 2 {
		want[runChild(t, child("execfail", []string{"/proc/self/exe", "fail", strconv.Itoa(i)}))] = 2
	}
	// "PID ARGS...", with ARGS as bpftrace prints them (argv) and as BCC's
	// tools do (the file name, then argv[1:]).
	argv, bcc := map[string]bool{}, map[string]bool{}
	pending := 0
	for _, n := range want {
		pending += n
	}
	for pending > 0 {
		e := e2e.Wait(t, events, 10*time.Second, "the workload's execs", func(e Event) bool { return want[int(e.PID)] > 0 })
		want[int(e.PID)]--
		pending--
		argv[fmt.Sprintf("%d %s", e.PID, e.Line())] = true
		rest := []string{string(e.Filename)}
		for _, a := range e.Args[1:] {
			rest = append(rest, string(a))
		}
		bcc[fmt.Sprintf("%d %s", e.PID, strings.Join(rest, " "))] = true
	}
	// bpftrace: TIME(ms) PID ARGS; libbpf-tools: PCOMM PID PPID RET ARGS.
	for _, c := range []struct {
		name    string
		peer    *e2e.Tracer
		pidCol  int
		argsCol int
		ours    map[string]bool
	}{
		{"bpftrace execsnoop.bt", bt, 1, 2, argv},
		{"libbpf-tools execsnoop -x", lt, 1, 4, bcc},
	} {
		workload := func(l string) (int, []string, bool) {
			f := strings.Fields(l)
			if len(f) <= c.argsCol {
				return 0, nil, false
			}
			pid, err := strconv.Atoi(f[c.pidCol])
			if err != nil {
				return 0, nil, false
			}
			_, mine := want[pid]
			return pid, f, mine
		}
		// Give the peer time to print what it has read: it drops what it
		// has not when it gets SIGINT.
		c.peer.WaitLines(func(l string) bool { _, _, ok := workload(l); return ok }, 10, 10*time.Second)
		matched := 0
		for _, l := range c.peer.Stop(t) {
			pid, f, mine := workload(l)
			if !mine {
				continue
			}
			key := fmt.Sprintf("%d %s", pid, strings.Join(f[c.argsCol:], " "))
			if !c.ours[key] {
				t.Errorf("%s reported %q, owl did not (owl: %q)", c.name, key, slices.Sorted(maps.Keys(c.ours)))
				continue
			}
			matched++
		}
		t.Logf("%s: %d of the workload's 10 execs reported, all of them by owl too", c.name, matched)
		if matched == 0 {
			t.Errorf("%s reported none of the workload's execs: nothing compared", c.name)
		}
	}
}

// Bad flags are one line and exit status 2, before anything is loaded.
func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"--max-args", "0"}, "--max-args 0"},
		{[]string{"-P", "0"}, "--ppid 0"},
		{[]string{"-n", "a("}, "--name"},
		{[]string{"-l", "[x"}, "--line"},
		{[]string{"extra"}, "extra"},
	} {
		cmd := Tool.Command()
		cmd.SetArgs(c.args)
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		if err == nil || cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("execsnoop %q: %v (status %d); want one line saying %q, status 2", c.args, err, cli.ExitCode(err), c.says)
		}
	}
}

// signalWriter closes ready when what it is written contains want.
type signalWriter struct {
	mu    sync.Mutex
	buf   []byte
	want  string
	ready chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	had := strings.Contains(string(w.buf), w.want)
	w.buf = append(w.buf, p...)
	if !had && strings.Contains(string(w.buf), w.want) {
		close(w.ready)
	}
	return len(p), nil
}

// The command end to end: -o json gives one object per exec with the
// documented fields, then the line of losses.
func TestCommandJSON(t *testing.T) {
	e2e.Require(t)
	cmd := Tool.Command()
	var stdout bytes.Buffer
	stderr := &signalWriter{want: "Hit Ctrl-C to end.", ready: make(chan struct{})}
	cmd.SetOut(&stdout)
	cmd.SetErr(stderr)
	cmd.SetArgs([]string{"-o", "json", "-d", "2", "-x", "-P", strconv.Itoa(os.Getpid())})
	done := make(chan error, 1)
	go func() { done <- cmd.Execute() }()
	select {
	case <-stderr.ready:
	case err := <-done:
		t.Fatalf("execsnoop ended before tracing: %v", err)
	}
	pid := runChild(t, child("execfail", []string{"/proc/self/exe", "json", "a\nb"}))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var got []map[string]any
	for _, l := range lines[:len(lines)-1] {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if int(m["pid"].(float64)) == pid {
			got = append(got, m)
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d events of the child, want 2:\n%s", len(got), stdout.String())
	}
	fields := spec.Info().Fields
	for _, m := range got {
		for _, f := range fields {
			if _, ok := m[f]; !ok && f != "args_unreadable" && f != "stdio_sockets" {
				t.Errorf("event lacks %q: %v", f, m)
			}
		}
	}
	if got[1]["ret"].(float64) != -2 || got[1]["filename"] != missingPath || fmt.Sprint(got[1]["args"]) != `[json a\x0ab]` {
		t.Errorf("failed exec: %v", got[1])
	}
	if !strings.HasPrefix(lines[len(lines)-1], `{"lost":0,`) {
		t.Errorf("last line %q: want the losses", lines[len(lines)-1])
	}
}
