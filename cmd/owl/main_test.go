package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tools"
)

// owlBin is the binary under test: $OWL_BIN, or one built for this run.
var owlBin string

func TestMain(m *testing.M) {
	owlBin = os.Getenv("OWL_BIN")
	if owlBin == "" {
		dir, err := os.MkdirTemp("", "owl-test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		owlBin = filepath.Join(dir, "owl")
		build := exec.Command("go", "build", "-o", owlBin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build owl:", err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
	}
	e2e.Main(m, map[string]func([]string) error{
		// privileged: wait for a line on stdin, then on one thread drop to
		// nobody and make a capability check, a failed setuid and a failed
		// kill: events for capable, setuids and eperm.
		"privileged": func([]string) error {
			runtime.LockOSThread()
			if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
				return err
			}
			unix.RawSyscall(unix.SYS_SETRESUID, 65534, 65534, 65534)
			unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0)
			unix.Kill(1, 0)
			unix.Chroot("/")
			return nil
		},
	})
}

// owl is a running owl process.
type owl struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr *bufio.Reader
	pipe   io.Closer // the read end of stdout
}

// closeStdout closes the read end of owl's stdout, as head does.
func (o *owl) closeStdout() { o.pipe.Close() }

// rest reads what owl writes to stderr after its Tracing line, until it
// exits.
func (o *owl) rest() string {
	b, _ := io.ReadAll(o.stderr)
	return string(b)
}

// start runs owl with args and waits for its "Tracing ..." line.
func start(t *testing.T, args ...string) *owl {
	t.Helper()
	cmd := exec.Command(owlBin, args...)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	o := &owl{cmd: cmd, stdout: bufio.NewReader(stdout), stderr: bufio.NewReader(stderr), pipe: stdout}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	ready := make(chan string, 1)
	go func() {
		line, _ := o.stderr.ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "Tracing ") || !strings.HasSuffix(line, "Hit Ctrl-C to end.\n") {
			t.Fatalf("owl %v: first stderr line %q, want the Tracing line", args, line)
		}
	// Attaching kprobes takes ~10 s at times in the qemu guests (TCG on
	// a busy host): a hang would still fail.
	case <-time.After(30 * time.Second):
		t.Fatalf("owl %v: no Tracing line after 30 s", args)
	}
	return o
}

// line reads one stdout line with a deadline.
func (o *owl) line(t *testing.T) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		l, _ := o.stdout.ReadString('\n')
		ch <- l
	}()
	select {
	case l := <-ch:
		return l
	// Generous: a first kernel stack names kallsyms, which takes seconds
	// in the qemu guests (TCG).
	case <-time.After(30 * time.Second):
		t.Fatal("no output line within 30 s")
		return ""
	}
}

// stop sends SIGINT and returns the rest of stdout; owl must exit 0.
func (o *owl) stop(t *testing.T) string {
	t.Helper()
	o.cmd.Process.Signal(os.Interrupt)
	rest, _ := io.ReadAll(o.stdout)
	if err := o.cmd.Wait(); err != nil {
		t.Errorf("owl after SIGINT: %v", err)
	}
	return string(rest)
}

func TestBadInputExits2WithOneLine(t *testing.T) {
	cases := [][]string{
		{"nosuchtool"},
		{"tcpconnect", "--bogus"},
		{"tcpconnect", "-p", "999999999"},
		{"tcpconnect", "-P", "70000"},
		{"tcpaccept", "-P", "0"},
		{"tcpaccept", "-o", "xml"},
		{"tcpconnect", "-4", "-6"},
		{"tcpreset", "--hook", "uprobe"},
		{"tcpconnect", "extra-arg"},
	}
	if os.Geteuid() == 0 && !haveKprobes() {
		// A hook this kernel lacks is bad input too.
		cases = append(cases, []string{"tcpconnect", "--hook", "kprobe"})
	}
	for _, args := range cases {
		cmd := exec.Command(owlBin, args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("owl %v: got %v, want exit status 2", args, err)
		}
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "owl: ") {
			t.Errorf("owl %v: stderr %q, want one line starting with owl:", args, stderr.String())
		}
	}
}

func haveKprobes() bool {
	_, err := os.Stat("/sys/bus/event_source/devices/kprobe")
	return err == nil
}

// noLoss is the last JSON line of a run that lost nothing.
const noLoss = `{"lost":0,"lost_by_cause":{"ring_full":0,"map_full":0,"pending_evicted":0,"output_queue_full":0,"unpaired_return":0,"stack_unavailable":0,"pending_partial":0}}`

// decode parses one JSON line and checks it has exactly the wanted keys.
func decode(t *testing.T, line string, keys ...string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("line %q lacks %q", line, k)
		}
	}
	if len(m) != len(keys) {
		t.Errorf("line %q: want exactly the keys %v", line, keys)
	}
	if ts, ok := m["time"].(string); ok {
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !strings.Contains(ts, ".") {
			t.Errorf("time %q is not RFC 3339 with nanoseconds: %v", ts, err)
		}
	}
	return m
}

func num(m map[string]any, k string) int { f, _ := m[k].(float64); return int(f) }

func TestJSON(t *testing.T) {
	e2e.Require(t)
	self := strconv.Itoa(os.Getpid())

	t.Run("tcpconnect", func(t *testing.T) {
		server := e2e.Serve(t, "127.0.0.1")
		o := start(t, "tcpconnect", "-L", "-o", "json", "-p", self)
		client := e2e.Dial(t, server)
		m := decode(t, o.line(t), "time", "pid", "tid", "uid", "comm", "cgroup_id", "mntns_id", "family", "saddr", "sport", "daddr", "dport")
		if num(m, "pid") != os.Getpid() || num(m, "family") != 4 || m["daddr"] != "127.0.0.1" ||
			num(m, "dport") != int(server.Port()) || num(m, "sport") != int(client.Port()) {
			t.Errorf("got %v, want pid %s to %v from port %d", m, self, server, client.Port())
		}
		if rest := o.stop(t); strings.TrimSpace(rest) != noLoss {
			t.Errorf("after the events: %q, want the lost count", rest)
		}
	})

	t.Run("tcpconnect --outcome", func(t *testing.T) {
		server := e2e.Serve(t, "::1")
		o := start(t, "tcpconnect", "--outcome", "-o", "json", "-p", self, "-P", strconv.Itoa(int(server.Port())))
		e2e.Dial(t, server)
		m := decode(t, o.line(t), "time", "pid", "tid", "uid", "comm", "cgroup_id", "mntns_id", "family", "saddr", "sport", "daddr", "dport", "outcome", "latency_us")
		if m["outcome"] != "established" || num(m, "family") != 6 {
			t.Errorf("got %v, want an established IPv6 connect", m)
		}
		o.stop(t)
	})

	t.Run("tcpconnect -c", func(t *testing.T) {
		server := e2e.Serve(t, "127.0.0.1")
		o := start(t, "tcpconnect", "-c", "-d", "2", "-o", "json", "-p", self)
		for i := 0; i < 3; i++ {
			e2e.Dial(t, server)
		}
		out, _ := io.ReadAll(o.stdout)
		if err := o.cmd.Wait(); err != nil {
			t.Fatalf("owl tcpconnect -c -d 2: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 || lines[1] != noLoss {
			t.Fatalf("got %q, want one count line and the lost line", out)
		}
		m := decode(t, lines[0], "saddr", "daddr", "dport", "count")
		if num(m, "count") != 3 || num(m, "dport") != int(server.Port()) {
			t.Errorf("got %v, want 3 connects to %v", m, server)
		}
	})

	t.Run("tcpaccept", func(t *testing.T) {
		server := e2e.Serve(t, "::1")
		o := start(t, "tcpaccept", "-o", "json", "-p", self)
		client := e2e.Dial(t, server)
		m := decode(t, o.line(t), "time", "pid", "tid", "uid", "comm", "cgroup_id", "mntns_id", "family", "raddr", "rport", "laddr", "lport")
		if num(m, "pid") != os.Getpid() || num(m, "rport") != int(client.Port()) || num(m, "lport") != int(server.Port()) || m["laddr"] != "::1" {
			t.Errorf("got %v, want pid %s accepting %v on %v", m, self, client, server)
		}
		o.stop(t)
	})

	for _, tc := range []struct {
		args []string
		keys []string
		want map[string]any
	}{
		{[]string{"capable"}, []string{"time", "pid", "tid", "uid", "comm", "cgroup_id", "mntns_id", "cap", "cap_name", "audit", "insetid", "verdict", "syscall", "ia32"},
			map[string]any{"cap_name": "CAP_SYS_CHROOT", "verdict": "deny", "uid": 65534.0, "syscall": nil}},
		{[]string{"setuids"}, []string{"time", "pid", "tid", "uid", "comm", "cgroup_id", "mntns_id", "syscall", "ia32", "args", "ret"},
			map[string]any{"syscall": "setuid", "ret": -1.0, "uid": 65534.0}},
		{[]string{"eperm", "-e"}, []string{"time", "pid", "tid", "uid", "comm", "cgroup_id", "mntns_id", "syscall", "syscall_nr", "ia32", "errno"},
			map[string]any{"syscall": "kill", "errno": "EPERM"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			child := e2e.Child("privileged")
			stdin, _ := child.StdinPipe()
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			o := start(t, append(tc.args, "-o", "json", "-p", strconv.Itoa(child.Process.Pid))...)
			stdin.Write([]byte("go\n"))
			if err := waitChild(t, child); err != nil {
				t.Fatalf("child: %v", err)
			}
			for {
				m := decode(t, o.line(t), tc.keys...)
				if m["uid"] != nil && m["uid"] != tc.want["uid"] && tc.want["uid"] != nil {
					continue // events before the child dropped privileges
				}
				if m["syscall"] != tc.want["syscall"] && tc.args[0] != "capable" {
					continue
				}
				if tc.args[0] == "capable" && m["cap_name"] != "CAP_SYS_CHROOT" {
					continue
				}
				for k, v := range tc.want {
					if m[k] != v {
						t.Errorf("%s: %v, want %v (line %v)", k, m[k], v, m)
					}
				}
				break
			}
			o.stop(t)
		})
	}

	t.Run("tcpreset", func(t *testing.T) {
		closed := e2e.ClosedPort(t, "127.0.0.1")
		o := start(t, "tcpreset", "-o", "json")
		net.Dial("tcp", closed.String())
		for {
			m := decode(t, o.line(t), "time", "laddr", "lport", "raddr", "rport", "family", "state", "reason")
			if num(m, "lport") == int(closed.Port()) {
				// Only the 6.10+ tracepoint gives reasons.
				var reason any
				if strings.HasPrefix(hookOf(t, "tcpreset"), "tracepoint") {
					reason = "NO_SOCKET"
				}
				if m["reason"] != reason || m["state"] != nil {
					t.Errorf("got %v, want reason %v, state null", m, reason)
				}
				break
			}
		}
		o.stop(t)
	})

	t.Run("tcpreset -s", func(t *testing.T) {
		src := netip.AddrFrom4([4]byte{127, byte(1 + rand.IntN(254)), byte(rand.IntN(256)), byte(2 + rand.IntN(250))})
		o := start(t, "tcpreset", "-s", "60", "-d", "2", "-o", "json")
		for i := 0; i < 5; i++ {
			refusedFrom(t, src, e2e.ClosedPort(t, "127.0.0.1"))
		}
		out, _ := io.ReadAll(o.stdout)
		if err := o.cmd.Wait(); err != nil {
			t.Fatalf("owl tcpreset -d 2: %v", err)
		}
		found := false
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.HasPrefix(l, `{"lost"`) {
				continue
			}
			m := decode(t, l, "time", "raddr", "resets", "ports")
			if m["raddr"] == src.String() {
				found = num(m, "resets") == 5 && num(m, "ports") == 5
			}
		}
		if !found {
			t.Errorf("no summary line for %v with 5 resets on 5 ports in %q", src, out)
		}
	})
}

func refusedFrom(t *testing.T, src netip.Addr, dst netip.AddrPort) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	if _, err := d.Dial("tcp", dst.String()); err == nil {
		t.Fatalf("%v answered", dst)
	}
}

func TestTextHeaderAndDuration(t *testing.T) {
	e2e.Require(t)
	start := time.Now()
	out, err := exec.Command(owlBin, "tcpaccept", "-d", "1", "-p", strconv.Itoa(os.Getpid())).Output()
	if err != nil {
		t.Fatalf("owl tcpaccept -d 1: %v", err)
	}
	if string(out) != "PID    COMM         IP RADDR            RPORT LADDR            LPORT\n" {
		t.Errorf("stdout %q, want only the header", out)
	}
	// The upper bound allows for start-up in the qemu guests (TCG on a
	// busy host): 5.3 s seen there.
	if d := time.Since(start); d < time.Second || d > 30*time.Second {
		t.Errorf("-d 1 ran %v", d)
	}
}

// Links are fd-based: a SIGKILLed owl leaves nothing attached.
func TestSIGKILLLeavesNothingAttached(t *testing.T) {
	e2e.Require(t)
	o := start(t, "tcpconnect", "--outcome")
	ids := linkIDs(t, o.cmd.Process.Pid)
	if len(ids) == 0 {
		t.Fatal("owl holds no BPF links while tracing")
	}
	o.cmd.Process.Signal(syscall.SIGKILL)
	o.cmd.Wait()
	deadline := time.Now().Add(3 * time.Second)
	for _, id := range ids {
		for {
			l, err := link.NewFromID(id)
			if errors.Is(err, os.ErrNotExist) {
				break
			}
			if err == nil {
				l.Close()
			}
			if time.Now().After(deadline) {
				t.Fatalf("link %d still exists after SIGKILL (%v)", id, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if out, err := exec.Command("bpftool", "link", "list").Output(); err == nil {
		for _, id := range ids {
			if strings.Contains("\n"+string(out), fmt.Sprintf("\n%d: ", id)) {
				t.Errorf("bpftool link list still shows link %d:\n%s", id, out)
			}
		}
	}
}

// linkIDs reads the ids of the BPF links pid holds from /proc/PID/fdinfo.
func linkIDs(t *testing.T, pid int) []link.ID {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []link.ID
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "link_id:"); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				ids = append(ids, link.ID(n))
			}
		}
	}
	return ids
}

// owl tools names, for every tool, the hook this kernel has: the
// tracepoint where it exists (and, for tcp_send_reset, sees closed ports),
// else one of the fallbacks.
func TestToolsListsHooks(t *testing.T) {
	e2e.Require(t)
	if os.Getenv("OWL_HOOKS") != "" {
		t.Skip("OWL_HOOKS forces the hooks")
	}
	resetFormat, _ := os.ReadFile("/sys/kernel/tracing/events/tcp/tcp_send_reset/format")
	_, capTP := os.Stat("/sys/kernel/tracing/events/capability/cap_capable")
	got := hooks(t)
	for tool, tp := range map[string]string{
		"tcpconnect": "tracepoint sock:inet_sock_set_state",
		"tcpaccept":  "tracepoint syscalls:sys_exit_accept4",
		"setuids":    "tracepoint syscalls:sys_{enter,exit}_set*id",
		"eperm":      "tracepoint raw_syscalls:sys_exit",
		"tcpreset":   "tracepoint tcp:tcp_send_reset",
		"capable":    "tracepoint capability:cap_capable",
	} {
		hook := got[tool]
		fallback := (tool == "tcpreset" && !strings.Contains(string(resetFormat), " reason;")) ||
			(tool == "capable" && capTP != nil)
		switch {
		case strings.HasPrefix(hook, "unavailable"):
			t.Errorf("%s: %s", tool, hook)
		case !fallback && !strings.HasPrefix(hook, tp):
			t.Errorf("%s: hook %q, want %q", tool, hook, tp)
		case fallback && strings.HasPrefix(hook, "tracepoint"):
			t.Errorf("%s: hook %q, want a fallback on this kernel", tool, hook)
		}
	}
	if !haveKprobes() {
		out, _ := exec.Command(owlBin, "tools", "--hook", "kprobe").Output()
		if n := strings.Count(string(out), "unavailable: "); n != len(tools.All()) {
			t.Errorf("owl tools --hook kprobe on a kernel without kprobes: %d unavailable, want %d:\n%s", n, len(tools.All()), out)
		}
	}
}

// hookOf is the hook `owl tools` reports for tool on this kernel.
func hookOf(t *testing.T, tool string) string {
	t.Helper()
	hook, ok := hooks(t)[tool]
	if !ok {
		t.Fatalf("owl tools does not list %s", tool)
	}
	return hook
}

// hooks runs `owl tools` once and returns each tool's HOOK column (or its
// "unavailable: ..." reason).
func hooks(t *testing.T) map[string]string {
	t.Helper()
	out, err := exec.Command(owlBin, "tools").Output()
	if err != nil {
		t.Fatalf("owl tools: %v", err)
	}
	lines := strings.Split(string(out), "\n")
	col := strings.Index(lines[0], "HOOK")
	if col < 0 {
		t.Fatalf("owl tools: no HOOK column:\n%s", out)
	}
	m := map[string]string{}
	for _, line := range lines[1:] {
		// Lines of -v details start with blanks; tool lines with a name.
		if len(line) > col && line[0] != ' ' {
			m[strings.Fields(line)[0]] = line[col:]
		}
	}
	return m
}

// owl TOOL | head -1: once the reader of its output is gone, owl ends
// quietly with status 0 at its next write (as BCC's tools do), and nothing
// stays attached.
func TestClosedPipeEndsQuietly(t *testing.T) {
	e2e.Require(t)
	server := e2e.Serve(t, "127.0.0.1")
	closed := e2e.ClosedPort(t, "127.0.0.1")
	for _, args := range [][]string{
		{"tcpconnect"}, {"tcpaccept"}, {"tcpreset"}, {"setuids"}, {"eperm", "-e"}, {"capable"},
		{"tcpconnect", "-o", "json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			o := start(t, args...)
			ids := linkIDs(t, o.cmd.Process.Pid)
			exited := make(chan error, 1)
			var stderr string
			go func() {
				// head -1: one line (the header, or the first event in
				// JSON), then the read end closes.
				o.stdout.ReadString('\n')
				o.closeStdout()
				stderr = o.rest() // until owl exits and closes it
				exited <- o.cmd.Wait()
			}()
			deadline := time.After(30 * time.Second)
			for {
				// Events for every tool: a connect and accept, a reset,
				// a failed setuid, kill and chroot in a child.
				e2e.Dial(t, server)
				net.Dial("tcp", closed.String())
				child := e2e.Child("privileged")
				child.Stdin = strings.NewReader("go\n")
				child.Run()
				select {
				case err := <-exited:
					if err != nil {
						t.Fatalf("owl %v after its output closed: %v (stderr: %s)", args, err, stderr)
					}
					if stderr != "" {
						t.Errorf("owl %v wrote to stderr: %q, want nothing", args, stderr)
					}
					for _, id := range ids {
						if l, err := link.NewFromID(id); err == nil {
							l.Close()
							t.Errorf("link %d still attached", id)
						}
					}
					return
				case <-deadline:
					t.Fatalf("owl %v still runs 30 s after its output closed", args)
				case <-time.After(50 * time.Millisecond):
				}
			}
		})
	}
}

// waitChild waits for a test child, but not forever: a child that does
// not end within a minute fails the test with what its threads were
// doing (a CI run once hung here for 11 minutes without a clue).
func waitChild(t *testing.T, child *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
	}
	pid := child.Process.Pid
	var b strings.Builder
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	for _, task := range tasks {
		stat, _ := os.ReadFile(task + "/stat")
		wchan, _ := os.ReadFile(task + "/wchan")
		stack, _ := os.ReadFile(task + "/stack")
		fmt.Fprintf(&b, "%s: %s wchan %s\n%s\n", task, strings.TrimSpace(string(stat)), wchan, stack)
	}
	child.Process.Kill()
	<-done
	t.Fatalf("child %d did not end within a minute:\n%s", pid, b.String())
	return nil
}
