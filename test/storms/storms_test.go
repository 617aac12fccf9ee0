// Package storms overfills every streaming tool's ring buffer and checks
// that nothing is lost silently: delivered + counted lost == generated,
// exactly, per cause. It runs the owl binary ($OWL_BIN, else one built
// from ./cmd/owl) with a one-page ring (the hidden --ring-bytes flag),
// stops it (SIGSTOP) while a workload child makes the storm, then lets it
// drain and end, and compares its JSON lines and its final lost line
// with what the child made. Pending storms (pending_test.go) overfill
// the tables of events waiting for their end instead (the hidden
// --pending-entries flag).
package storms

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tools"
	"github.com/owlbpf/owl/test/internal/owltest"
)

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{"storm": stormChild, "exit": func([]string) error { return nil }})
	owltest.Cleanup()
}

// made is the size of each storm: with a 4 KiB ring, far beyond what the
// ring holds for every tool (its smallest record is ~100 bytes).
const made = 400

// ring is the ring size of the storms: one page.
const ring = "4096"

// A storm is how one tool is stormed.
type storm struct {
	// work is the child's action (stormChild), or "" for a command.
	work string
	// command, when work is "", makes the workload program: it must read
	// one line on stdin, make the storm, print "done" and wait for EOF.
	command func(t *testing.T, n int) *exec.Cmd
	// args are owl's arguments after the tool's name, given the child's
	// pid and its mount namespace's path (the filter: the child lives in
	// namespaces of its own).
	args func(pid int, mntns string) []string
	// made is how many events the storm makes (default: made).
	made int
	// match tells the storm's events from others (a tool without a task
	// filter sees the whole host's).
	match func(ev map[string]any) bool
	// count, when set, is how many events a matched line stands for (a
	// count-only tool's histogram: its count); else one.
	count func(ev map[string]any) uint64
	// prepare, when set, runs first (a user to log in as).
	prepare func(t *testing.T)
}

func mntnsArgs(pid int, mntns string) []string { return []string{"--mntns", mntns} }
func pidArgs(pid int, mntns string) []string   { return []string{"-p", strconv.Itoa(pid)} }

// storms covers every streaming tool of the registry; notStormed says why
// the others are not stormed here.
var storms = map[string]storm{
	"tcpconnect": {work: "connect", args: mntnsArgs, match: func(ev map[string]any) bool { return ev["dport"] == float64(stormPort) }},
	"tcpaccept":  {work: "accept", args: mntnsArgs, match: func(ev map[string]any) bool { return ev["lport"] == float64(stormPort) }},
	// tcpreset has no task filter (the kernel sends resets): -P keeps the
	// resets of other tests' ports out of the ring, and of its counts.
	"tcpreset": {work: "connect", args: func(int, string) []string { return []string{"-P", strconv.Itoa(stormPort)} },
		match: func(ev map[string]any) bool { return ev["lport"] == float64(stormPort) }},
	"setuids": {work: "setuid", args: mntnsArgs, match: func(ev map[string]any) bool { return ev["syscall"] == "setuid" }},
	"eperm": {work: "kill", args: func(_ int, ns string) []string { return []string{"-e", "--mntns", ns} },
		match: func(ev map[string]any) bool { return ev["syscall"] == "kill" }},
	"capable":   {work: "kill", args: mntnsArgs, match: func(ev map[string]any) bool { return ev["cap"] == float64(unix.CAP_KILL) }},
	"execsnoop": {work: "exec", args: mntnsArgs, made: 40, match: func(ev map[string]any) bool { return strings.Contains(fmt.Sprint(ev["args"]), "owl-storm") }},
	"opensnoop": {work: "open", args: mntnsArgs, match: func(ev map[string]any) bool { return strings.Contains(fmt.Sprint(ev["path"]), "owl-storm-") }},
	"trace":     {work: "call", args: traceArgs, match: func(ev map[string]any) bool { return true }},
	"usdt": {command: python("gc"), args: func(pid int, _ string) []string { return []string{"-p", strconv.Itoa(pid), "python:gc__start"} },
		match: func(ev map[string]any) bool { return ev["probe"] == "python:gc__start" }},
	"ugc":   {command: python("gc"), args: pidArgs, match: func(ev map[string]any) bool { return ev["kind"] == "gc" }},
	"uflow": {command: python("calls"), args: pidArgs, match: func(ev map[string]any) bool { return ev["method"] == "work" }},
	// A thread is a start and a stop.
	"uthreads": {command: python("threads"), made: 2 * 150, args: func(pid int, _ string) []string { return []string{"-l", "c", "-p", strconv.Itoa(pid)} },
		match: func(ev map[string]any) bool { return ev["type"] == "start" || ev["type"] == "stop" }},
	"bashfunc": {command: bashStorm, args: pidArgs, match: func(ev map[string]any) bool { return ev["func"] == "owl_storm" }},
}

// notStormed are the streaming tools this package does not storm, and why.
var notStormed = map[string]string{
	"modsnoop":     "needs kernel modules (and loading hundreds of them)",
	"bashreadline": "stormed by its own package (TestTinyRingCountsEveryDrop: lines typed into an interactive bash through tmux)",
	"pamsnoop":     "stormed by its own package (TestTinyRingCountsEveryDrop: PAM conversations through pamtester)",
}

// streaming reports whether a tool prints events through its ring by
// default (or with the flag its storm gives); count-only tools lose to
// full tables instead (map_full), tested in their packages.
var countOnly = map[string]bool{
	"funccount": true, "funclatency": true, "stackcount": true, "profile": true,
	"seccount": true, "bashfunclat": true, "ucalls": true,
}

// stormPort is the closed or listening port of the network storms; each
// child has a network namespace of its own, so any port will do.
const stormPort = 4242

func TestStorms(t *testing.T) {
	e2e.Require(t)
	for _, tl := range tools.All() {
		name := tl.Info().Name
		t.Run(name, func(t *testing.T) {
			if countOnly[name] {
				t.Skipf("%s counts in the kernel, nothing streams through its ring", name)
			}
			if why, ok := notStormed[name]; ok {
				t.Skip(why)
			}
			s, ok := storms[name]
			if !ok {
				t.Fatalf("no storm for %s: add one to storms or say why in notStormed", name)
			}
			n := s.made
			if n == 0 {
				n = made
			}
			delivered, st, others := runStorm(t, name, s, n, "--ring-bytes", ring)
			t.Logf("%s: made %d, delivered %d, lost %d (ring_full %d), other events %d", name, n, delivered, st.Lost(), st.RingFull, others)
			if delivered+st.Lost() != uint64(n) || st.RingFull == 0 || st.Lost() != st.RingFull {
				t.Fatalf("%s: made %d, delivered %d + counted lost %+v: want delivered + ring_full == made, ring_full > 0", name, n, delivered, st)
			}
		})
	}
}

// runStorm runs one storm, with owl's flags after -o json, and returns the
// events delivered that match, owl's counts of lost events, and how many
// other events it printed.
func runStorm(t *testing.T, name string, s storm, n int, flags ...string) (delivered uint64, st probe.Stats, others int) {
	if s.prepare != nil {
		s.prepare(t)
	}
	var child *exec.Cmd
	if s.work != "" {
		child = e2e.Child("storm", s.work, strconv.Itoa(n))
		// e2e brings lo up. MALLOC_ARENA_MAX: where the test binary uses
		// glibc (cgo), its malloc reads /sys/devices/system/cpu/online
		// the first time threads contend, an open in the middle of
		// opensnoop's storms; with a fixed number of arenas it never does.
		child.Env = append(child.Env, "OWL_E2E_NETNS=1", "MALLOC_ARENA_MAX=1")
		child.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET}
	} else {
		child = s.command(t, n)
	}
	in, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		in.Close()
		child.Wait()
	}()
	lines := bufio.NewReader(out)
	l, _ := lines.ReadString('\n')
	if strings.HasPrefix(l, "skip:") {
		t.Skip(strings.TrimSpace(l))
	}
	if l != "ready\n" {
		t.Fatalf("storm child: %q, want ready", l)
	}
	pid := child.Process.Pid
	args := append(append([]string{name, "-o", "json"}, flags...), s.args(pid, fmt.Sprintf("/proc/%d/ns/mnt", pid))...)
	o := owltest.Start(t, args...)
	// Nothing reads the ring while owl is stopped: the storm overfills it.
	if err := o.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, o.Pid())
	fmt.Fprintln(in, "go")
	if l, err := lines.ReadString('\n'); l != "done\n" {
		rest, _ := io.ReadAll(lines)
		o.Cmd.Process.Signal(syscall.SIGCONT)
		t.Fatalf("storm child: %q %s (%v), want done", l, rest, err)
	}
	o.Cmd.Process.Signal(syscall.SIGCONT)
	stdout, stderr := o.Stop(t)
	var lostLine bool
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("owl %v: line %q: %v", args, line, err)
		}
		if lost, ok := ev["lost_by_cause"].(map[string]any); ok {
			lostLine = true
			num := func(k string) uint64 { f, _ := lost[k].(float64); return uint64(f) }
			st = probe.Stats{RingFull: num("ring_full"), MapFull: num("map_full"), PendingEvicted: num("pending_evicted"),
				QueueFull: num("output_queue_full"), UnpairedReturn: num("unpaired_return"),
				StackUnavailable: num("stack_unavailable"), PendingPartial: num("pending_partial")}
			if total, _ := ev["lost"].(float64); uint64(total) != st.Lost() {
				t.Errorf("lost line %q: lost is not the sum of its causes", line)
			}
			continue
		}
		if s.match(ev) {
			if s.count != nil {
				delivered += s.count(ev)
			} else {
				delivered++
			}
		} else {
			others++
		}
	}
	if !lostLine {
		t.Fatalf("owl %v: no lost line in its JSON output; stderr %s", args, stderr)
	}
	if want := st.Message(); want != "" && !strings.Contains(stderr, want) {
		t.Errorf("owl %v: stderr %q does not say %q", args, stderr, want)
	}
	return delivered, st, others
}

// waitStopped waits until pid is in state T (stopped).
func waitStopped(t *testing.T, pid int) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i+1:]), " T") {
			return
		}
	}
	t.Fatalf("owl (pid %d) did not stop", pid)
}

// stormChild is the workload child: it says ready, waits for a line, makes
// a storm of n events of one kind, says done and waits for EOF on stdin
// (so that it outlives the tracing of it).
func stormChild(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: storm KIND N")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil {
		return err
	}
	// The storm's syscalls come from one thread; uid changes stay on it.
	runtime.LockOSThread()
	in := bufio.NewReader(os.Stdin)
	var prep func() error
	var work func(i int) error
	// A burst makes all n events at once (calls in flight together);
	// cleanup runs after EOF, when nothing traces the child any more.
	var burst func(n int) error
	var cleanup func()
	switch args[0] {
	case "connect": // to a closed port: a connect and a reset each
		work = func(int) error {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", stormPort))
			if err == nil {
				c.Close()
				return errors.New("connect to a closed port succeeded")
			}
			return nil
		}
	case "accept":
		var l net.Listener
		prep = func() (err error) {
			l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", stormPort))
			return err
		}
		work = func(int) error {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				return err
			}
			a, err := l.Accept()
			if err != nil {
				return err
			}
			a.Close()
			return c.Close()
		}
	case "setuid":
		work = func(int) error {
			if _, _, e := unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0); e != 0 {
				return e
			}
			return nil
		}
	case "kill": // as nobody, on this thread only: EPERM and a CAP_KILL check each
		prep = func() error {
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, 65534, 65534, 65534); e != 0 {
				return e
			}
			return nil
		}
		work = func(int) error {
			if _, _, e := unix.RawSyscall(unix.SYS_KILL, 1, 0, 0); e != unix.EPERM {
				return fmt.Errorf("kill(1, 0) as nobody: %v, want EPERM", e)
			}
			return nil
		}
	case "open":
		work = func(i int) error {
			if f, err := os.Open(fmt.Sprintf("/owl-storm-%d/%d", os.Getpid(), i)); err == nil {
				f.Close()
			}
			return nil
		}
	case "exec":
		work = func(int) error {
			c := exec.Command("/proc/self/exe", "owl-storm")
			c.Env = append(os.Environ(), "OWL_E2E_CHILD=exit")
			return c.Run()
		}
	case "call":
		work = func(i int) error {
			if stormTarget(i) != i+1 {
				return errors.New("stormTarget")
			}
			return nil
		}
	default:
		var err error
		if burst, prep, cleanup, err = pendingBurst(args[0]); err != nil {
			return err
		}
	}
	if prep != nil {
		if err := prep(); errors.Is(err, errUnsupported) {
			fmt.Println("skip:", err) // the kernel cannot make this storm
			return nil
		} else if err != nil {
			return err
		}
	}
	fmt.Println("ready")
	if _, err := in.ReadString('\n'); err != nil {
		return err
	}
	if burst != nil {
		if err := burst(n); err != nil {
			return err
		}
	} else {
		for i := range n {
			if err := work(i); err != nil {
				return err
			}
		}
	}
	fmt.Println("done")
	io.Copy(io.Discard, in)
	if cleanup != nil {
		cleanup()
	}
	return nil
}

// stormTarget is the Go function trace's storm probes.
//
//go:noinline
func stormTarget(i int) int { return i + 1 }

// traceArgs probes stormTarget in this test binary.
func traceArgs(pid int, _ string) []string {
	exe, _ := os.Executable()
	return []string{"-p", strconv.Itoa(pid), "p:" + exe + ":github.com/owlbpf/owl/test/storms.stormTarget \"%d\", arg1"}
}

// python makes the storm of storm.py's kind with Debian's python3.11,
// which has USDT probes; uthreads' storms (threads, live) start half as
// many threads as they want events.
func python(kind string) func(t *testing.T, n int) *exec.Cmd {
	return func(t *testing.T, n int) *exec.Cmd {
		py := e2e.Need(t, "/usr/bin/python3.11")
		if kind == "threads" || kind == "live" {
			n /= 2
		}
		return exec.Command(py, filepath.Join("testdata", "storm.py"), kind, strconv.Itoa(n))
	}
}

// bashRecursion is bash in n nested calls of a shell function at once.
func bashRecursion(t *testing.T, n int) *exec.Cmd {
	script := fmt.Sprintf(`owl_deep() { if (($1 > 1)); then owl_deep $(($1 - 1)); fi; }; echo ready; read go; owl_deep %d; echo done; cat >/dev/null`, n)
	return exec.Command(e2e.Need(t, "bash"), "-c", script)
}

// bashStorm is bash calling a shell function made times.
func bashStorm(t *testing.T, n int) *exec.Cmd {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script := fmt.Sprintf(`owl_storm() { :; }; echo ready; read go; for ((i = 0; i < %d; i++)); do owl_storm; done; echo done; cat >/dev/null`, n)
	return exec.Command(bash, "-c", script)
}
