package bashreadline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/uprobe"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// pane is an interactive program in a tmux pane of a tmux server of the
// test's own (its own socket: no one else's sessions are touched).
type pane struct {
	t      *testing.T
	socket string
	pid    int
}

const prompt = "owl-ready$ "

// newPane starts argv in a detached tmux session and waits until it shows
// want (for bash, its prompt: readline draws it, so bash is in readline).
func newPane(t *testing.T, want string, argv ...string) *pane {
	t.Helper()
	e2e.Need(t, "tmux")
	p := &pane{t: t, socket: fmt.Sprintf("owl-test-%d-%d", os.Getpid(), time.Now().UnixNano())}
	args := append([]string{"new-session", "-d", "-x", "200", "-y", "50", "-s", "owl", "--"}, argv...)
	p.tmux(args...)
	t.Cleanup(func() { exec.Command("tmux", "-L", p.socket, "kill-server").Run() })
	pid, err := strconv.Atoi(strings.TrimSpace(p.tmux("list-panes", "-t", "owl", "-F", "#{pane_pid}")))
	if err != nil {
		t.Fatal(err)
	}
	p.pid = pid
	p.waitScreen(want)
	return p
}

func (p *pane) tmux(args ...string) string {
	p.t.Helper()
	cmd := exec.Command("tmux", append([]string{"-L", p.socket}, args...)...)
	// Not the tmux the tests may run in.
	cmd.Env = append(os.Environ(), "TMUX=", "PS1="+prompt, "TERM=xterm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitScreen waits until the pane shows s.
func (p *pane) waitScreen(s string) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.tmux("capture-pane", "-p", "-t", "owl"), s) {
		if time.Now().After(deadline) {
			p.t.Fatalf("the pane never showed %q:\n%s", s, p.tmux("capture-pane", "-p", "-t", "owl"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// typeLines types each line and Enter.
func (p *pane) typeLines(lines ...string) {
	p.t.Helper()
	for _, l := range lines {
		p.tmux("send-keys", "-t", "owl", "-l", l)
		p.tmux("send-keys", "-t", "owl", "Enter")
	}
}

func bash(t *testing.T) *pane {
	return newPane(t, strings.TrimSpace(prompt), "bash", "--norc", "--noprofile", "-i")
}

// A command typed at an interactive bash prompt, filtered on that bash's
// pid. The line being edited when tracing starts is in a readline call
// that began before the uretprobe, so the test types one line first.
func TestTypedCommand(t *testing.T) {
	e2e.Require(t)
	p := bash(t)
	opts := e2e.Options()
	opts.Task.PID = p.pid
	src, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, src)
	cmd := fmt.Sprintf("echo owl $((6*7)) %d | tr a-z A-Z", time.Now().UnixNano())
	p.typeLines(": before", cmd)
	e := e2e.Wait(t, events, 10*time.Second, "the typed command", func(e Event) bool { return string(e.Command) == cmd })
	if e.PID != uint32(p.pid) || e.Comm.String() != "bash" || e.UID != uint32(os.Getuid()) || e.Cut {
		t.Errorf("got pid %d comm %q uid %d cut %v, want %d bash %d false", e.PID, e.Comm, e.UID, e.Cut, p.pid, os.Getuid())
	}
	row := string(table.AppendRow(nil, &e))
	if want := fmt.Sprintf("%-9s %-6d %s\n", e.Time.Format("15:04:05"), p.pid, cmd); row != want {
		t.Errorf("row %q, want %q", row, want)
	}
	var j map[string]any
	if b, err := json.Marshal(&e); err != nil || json.Unmarshal(b, &j) != nil {
		t.Fatalf("JSON: %v", err)
	}
	if j["command"] != cmd || j["pid"] != float64(p.pid) || j["comm"] != "bash" || j["cut"] != false {
		t.Errorf("JSON %v", j)
	}
}

// A line longer than the 511 bytes kept is cut there, and marked.
func TestLongLine(t *testing.T) {
	e2e.Require(t)
	p := bash(t)
	opts := e2e.Options()
	opts.Task.PID = p.pid
	src, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, src)
	long := ": " + strings.Repeat("x", 700)
	p.typeLines(": before", long)
	e := e2e.Wait(t, events, 10*time.Second, "the long line", func(e Event) bool { return strings.HasPrefix(string(e.Command), ": xxx") })
	if string(e.Command) != long[:maxLine-1] || !e.Cut {
		t.Errorf("got %d bytes, cut %v; want %d, true", len(e.Command), e.Cut, maxLine-1)
	}
}

// Every line read is delivered or counted: a one-page ring is overfilled
// while nothing reads it, then drained: delivered + ring_full == made.
func TestTinyRingCountsEveryDrop(t *testing.T) {
	e2e.Require(t)
	p := bash(t)
	opts := e2e.Options()
	opts.Task.PID = p.pid
	opts.RingBytes = 4096 // 7 events of 568 bytes
	src, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	// The first line ends the readline call in progress when tracing
	// began: seen only if bash entered it after the attach (its uretprobe
	// is set at entry), which a loaded machine makes a race. It goes into
	// an empty ring, so it is delivered when seen, and it is told apart by
	// its text; every line after it is read by a call begun after attach.
	p.typeLines("echo owl-sync-$((1+1))")
	p.waitScreen("\nowl-sync-2")
	const made = 30
	var lines []string
	for i := range made - 1 {
		lines = append(lines, fmt.Sprintf(": %d", i))
	}
	lines = append(lines, "echo owl-done-$((1+1))")
	p.typeLines(lines...)
	p.waitScreen("\nowl-done-2")
	var delivered, synced uint64
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run drains what the ring holds and returns
	if err := src.Run(ctx, func(e *Event) {
		if strings.HasPrefix(string(e.Command), "echo owl-sync") {
			synced++
			return
		}
		delivered++
	}); err != nil {
		t.Fatal(err)
	}
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("made %d: delivered %d (and the first line %d times), ring_full %d", made, delivered, synced, st.RingFull)
	if st.RingFull == 0 || delivered+st.RingFull != made || st.Lost() != st.RingFull {
		t.Errorf("made %d: delivered %d, counted %+v; want delivered + ring_full == made, ring_full > 0", made, delivered, st)
	}
}

// A program that loads libreadline (bc), copied under the name bash: -s
// finds readline in its libreadline, where only tasks named bash are
// traced; bc itself, on the same library, is not.
func TestLibreadline(t *testing.T) {
	e2e.Require(t)
	bc := e2e.Need(t, "bc")
	dir := t.TempDir()
	fake := filepath.Join(dir, "bash")
	b, err := os.ReadFile(bc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	tg, err := Find(fake, 0)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := uprobe.Resolve(uprobe.Spec{Target: "readline", Func: "readline"}, uprobe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !tg.Lib || tg.Path != lib[0].Path || tg.Offset != lib[0].Offset {
		t.Fatalf("Find(%s) = %+v, want libreadline's readline %+v", fake, tg, lib[0])
	}
	src, err := Open(Config{Shared: fake}, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, src)
	real := newPane(t, "warranty'.", bc, "-i")
	named := newPane(t, "warranty'.", fake, "-i")
	real.typeLines("1+1", "2+2")
	named.typeLines("1+1", "3*7")
	e := e2e.Wait(t, events, 10*time.Second, "the line of bc named bash", func(e Event) bool { return e.Command == "3*7" })
	if e.PID != uint32(named.pid) || e.Comm.String() != "bash" {
		t.Errorf("got %+v, want pid %d comm bash", e, named.pid)
	}
	named.waitScreen("21")
	real.waitScreen("4")
	for {
		select {
		case e := <-events:
			if e.PID != uint32(named.pid) {
				t.Errorf("a line of another program: %+v", e)
			}
		case <-time.After(200 * time.Millisecond):
			return
		}
	}
}

// Bad input is one line and exit status 2, nothing loaded.
func TestBadShared(t *testing.T) {
	for _, s := range []string{"/nonexistent/bash", "/bin/true"} {
		cmd := command()
		cmd.SetArgs([]string{"-s", s})
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		if cli.ExitCode(err) != 2 || err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("-s %s: %v (exit %d), want one line and exit 2", s, err, cli.ExitCode(err))
		}
	}
}

// BCC's columns; a typed escape sequence cannot reach the terminal.
func TestTable(t *testing.T) {
	if h := string(table.AppendHeader(nil)); h != "TIME      PID    COMMAND\n" {
		t.Errorf("header %q", h)
	}
	e := Event{Task: event.Task{Time: event.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)}, PID: 4242},
		Command: "printf '\x1b]0;pwned\x07'"}
	if got, want := string(table.AppendRow(nil, &e)), `03:04:05  4242   printf '\x1b]0;pwned\x07'`+"\n"; got != want {
		t.Errorf("row %q, want %q", got, want)
	}
}

// The registry's config (no target) finds readline only when the hook is
// tried: a missing bash fails its Check as Find does, a present one
// attaches.
func TestLazyTarget(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "bash")
	h := hooks(Config{Shared: missing})
	if len(h) != 1 || h[0].Name != hookName || len(h[0].Attachments) != 1 {
		t.Fatalf("hooks: %+v", h)
	}
	_, findErr := Find(missing, 0)
	if err := h[0].Check(); err == nil || err.Error() != findErr.Error() {
		t.Errorf("Check: %v, want Find's %v", err, findErr)
	}
	_, err := tool.Open(&spec, Config{Shared: missing}, tool.DefaultOptions())
	if want := "bashreadline: no usable hook on this kernel: " + hookName + ": " + findErr.Error(); err == nil || err.Error() != want {
		t.Errorf("open: %v, want %s", err, want)
	}

	e2e.Require(t)
	if _, err := Find("", 0); err != nil {
		t.Skipf("no readline in /bin/bash: %v", err)
	}
	src, err := tool.Open(&spec, Config{}, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Session.Hook.Name != hookName || len(src.Session.Tried) != 0 {
		t.Errorf("hook %q after %v, want %q first", src.Session.Hook.Name, src.Session.Tried, hookName)
	}
}
