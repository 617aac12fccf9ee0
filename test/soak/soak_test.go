// Package soak runs every streaming tool at once, each its own owl
// process ($OWL_BIN, else one built from ./cmd/owl), under a mixed
// workload (connects, accepts, resets, execs, opens, setuid calls, failed
// kills and their capability checks, Go and Python calls, collections,
// threads, bash functions) for SOAK_DURATION (make soak: 10 minutes;
// unset: the test skips). It reports each owl's RSS, goroutines, threads
// and fds after a warm-up and at the end, and fails when one lost an
// event (the workload runs far below the rates docs/PERFORMANCE.md shows
// owl carrying without loss), saw none, or grew: RSS by more than a
// fifth plus 8 MiB, fds at all, goroutines by more than 2.
package soak

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
	"github.com/owlbpf/owl/test/internal/owltest"
)

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{"work": work, "noop": func([]string) error { return nil }})
	owltest.Cleanup()
}

// closedPort and openPort are the workload's ports in its own network
// namespace.
const closedPort, openPort = 4243, 4244

// work is the Go workload: until stdin closes, every 10 ms a connect to a
// closed port (a reset), a connect accepted, a failed open, a setuid(0),
// a kill(1, 0) as nobody (EPERM, a CAP_KILL check) and a call of Target;
// every 100 ms an exec.
func work([]string) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", openPort))
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// One thread drops to nobody for good: its kills fail.
	kill := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, 65534, 65534, 65534); e != 0 {
			panic(e)
		}
		for range kill {
			unix.RawSyscall(unix.SYS_KILL, 1, 0, 0)
		}
	}()
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	fmt.Println("ready")
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-done:
			return nil
		case <-tick.C:
		}
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", closedPort)); err == nil {
			c.Close()
		}
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", openPort)); err == nil {
			c.Close()
		}
		if f, err := os.Open(fmt.Sprintf("/owl-soak/%d", n)); err == nil {
			f.Close()
		}
		unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0)
		kill <- struct{}{}
		Target(n)
		if n%10 == 0 {
			c := exec.Command("/proc/self/exe")
			c.Env = append(os.Environ(), "OWL_E2E_CHILD=noop")
			c.Run()
		}
	}
}

// Target is the Go function trace probes.
//
//go:noinline
func Target(i int) int { return i + 1 }

// A tracer is one owl process of the soak.
type tracer struct {
	name       string
	args       []string
	o          *owltest.Owl
	stats      string // OWL_DEBUG_STATS file
	start, end sample
}

// sample is what /proc and owl say of an owl process at one moment.
type sample struct {
	rssKB, fds, threads, goroutines int
}

func TestSoak(t *testing.T) {
	e2e.Require(t)
	d, err := time.ParseDuration(os.Getenv("SOAK_DURATION"))
	if err != nil || d <= 0 {
		t.Skip("set SOAK_DURATION (make soak: 10m) to run the soak")
	}
	owltest.Bin(t) // built before the workloads start
	dir := t.TempDir()

	// The workloads, each in a mount namespace of its own that the tools
	// filter on; the Go one also in a network namespace.
	goWork := e2e.Child("work")
	goWork.Env = append(goWork.Env, "OWL_E2E_NETNS=1")
	goWork.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWNET}
	gw := startWork(t, goWork)
	ns := fmt.Sprintf("/proc/%d/ns/mnt", gw)
	exe, _ := os.Executable()
	tracers := []*tracer{
		{name: "tcpconnect", args: []string{"--mntns", ns}},
		{name: "tcpaccept", args: []string{"--mntns", ns}},
		{name: "tcpreset"},
		{name: "setuids", args: []string{"--mntns", ns}},
		{name: "eperm", args: []string{"-e", "--mntns", ns}},
		{name: "capable", args: []string{"--mntns", ns}},
		{name: "execsnoop", args: []string{"--mntns", ns}},
		{name: "opensnoop", args: []string{"--mntns", ns}},
		{name: "trace", args: []string{"-p", strconv.Itoa(gw), "p:" + exe + ":github.com/owlbpf/owl/test/soak.Target \"%d\", arg1"}},
	}
	skipped := map[string]string{
		"modsnoop":     "no hook on this kernel (no modules)",
		"bashreadline": "needs an interactive bash (its storm test types into one through tmux)",
		"pamsnoop":     "needs PAM conversations (its package tests them with pamtester)",
	}
	if py, err := exec.LookPath("/usr/bin/python3.11"); err == nil {
		p := startWork(t, exec.Command(py, filepath.Join("testdata", "soak.py")))
		pid := strconv.Itoa(p)
		tracers = append(tracers,
			&tracer{name: "uflow", args: []string{"-p", pid}},
			&tracer{name: "ugc", args: []string{"-p", pid}},
			&tracer{name: "uthreads", args: []string{"-l", "c", "-p", pid}},
			&tracer{name: "usdt", args: []string{"-p", pid, "python:gc__start"}})
	} else {
		for _, n := range []string{"uflow", "ugc", "uthreads", "usdt"} {
			skipped[n] = "no /usr/bin/python3.11 (a Python with USDT probes)"
		}
	}
	if bash, err := exec.LookPath("bash"); err == nil {
		b := startWork(t, exec.Command(bash, "-c", `owl_soak() { :; }; echo ready; while read -t 0.01 x; [ $? -gt 128 ]; do owl_soak; done`))
		tracers = append(tracers, &tracer{name: "bashfunc", args: []string{"-p", strconv.Itoa(b)}})
	} else {
		skipped["bashfunc"] = "no bash"
	}
	for name, why := range skipped {
		t.Logf("%s: not in the soak: %s", name, why)
	}
	for _, tr := range tracers {
		tr.stats = filepath.Join(dir, tr.name+".stats")
		os.Setenv("OWL_DEBUG_STATS", tr.stats)
		tr.o = owltest.Start(t, append([]string{tr.name, "-o", "json"}, tr.args...)...)
	}
	os.Unsetenv("OWL_DEBUG_STATS")

	warmup := min(30*time.Second, d/5)
	time.Sleep(warmup)
	for _, tr := range tracers {
		tr.start = measure(t, tr)
	}
	t.Logf("soak: %d owl processes for %v after %v of warm-up", len(tracers), d-warmup, warmup)
	time.Sleep(d - warmup)
	for _, tr := range tracers {
		tr.end = measure(t, tr)
	}
	t.Logf("%-11s %8s %8s %7s %7s %5s %5s %7s %7s %9s %5s", "tool", "RSS0 MB", "RSS1 MB", "gor0", "gor1", "fd0", "fd1", "thr0", "thr1", "events", "lost")
	for _, tr := range tracers {
		stdout, stderr := tr.o.Stop(t)
		events, lost, err := count(stdout)
		if err != nil {
			t.Errorf("%s: %v; stderr %s", tr.name, err, stderr)
		}
		s, e := tr.start, tr.end
		t.Logf("%-11s %8.1f %8.1f %7d %7d %5d %5d %7d %7d %9d %5d", tr.name, float64(s.rssKB)/1024, float64(e.rssKB)/1024,
			s.goroutines, e.goroutines, s.fds, e.fds, s.threads, e.threads, events, lost)
		switch {
		case lost != 0:
			t.Errorf("%s lost %d events: %s", tr.name, lost, stderr)
		case events == 0:
			t.Errorf("%s saw no event of the workload", tr.name)
		}
		if e.rssKB > s.rssKB+s.rssKB/5+8<<10 {
			t.Errorf("%s: RSS grew from %d to %d KiB", tr.name, s.rssKB, e.rssKB)
		}
		if e.fds > s.fds {
			t.Errorf("%s: fds grew from %d to %d", tr.name, s.fds, e.fds)
		}
		if e.goroutines > s.goroutines+2 {
			t.Errorf("%s: goroutines grew from %d to %d", tr.name, s.goroutines, e.goroutines)
		}
	}
}

// startWork starts a workload that says "ready" and ends when its stdin
// closes (at the end of the test); it returns its pid.
func startWork(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	if l, _ := bufio.NewReader(out).ReadString('\n'); l != "ready\n" {
		t.Fatalf("%v: %q, want ready", cmd.Args, l)
	}
	go io.Copy(io.Discard, out)
	return cmd.Process.Pid
}

// measure samples an owl process: RSS, threads and fds from /proc, its
// goroutines from OWL_DEBUG_STATS (SIGUSR1).
func measure(t *testing.T, tr *tracer) sample {
	pid := tr.o.Pid()
	var s sample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("%s: %v", tr.name, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 1 && f[0] == "VmRSS:":
			s.rssKB, _ = strconv.Atoi(f[1])
		case len(f) > 1 && f[0] == "Threads:":
			s.threads, _ = strconv.Atoi(f[1])
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	s.fds = len(fds)
	os.Remove(tr.stats)
	tr.o.Cmd.Process.Signal(syscall.SIGUSR1)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(tr.stats)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			fmt.Sscanf(string(b), "goroutines %d", &s.goroutines)
			return s
		}
	}
	t.Errorf("%s: no goroutine count after SIGUSR1", tr.name)
	return s
}

// count reads owl's JSON lines: events, and the lost count of its last
// line.
func count(stdout string) (events, lost int, err error) {
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var last struct {
		Lost *int `json:"lost"`
	}
	if len(lines) == 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &last) != nil || last.Lost == nil {
		return 0, 0, errors.New("no lost line at the end of the JSON output")
	}
	return len(lines) - 1, *last.Lost, nil
}
