package agent_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
)

// rssKiB reads a process's resident set (VmRSS) in KiB.
func rssKiB(t *testing.T, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// budgetMB is the agent's memory budget in the fault tests; its RSS may
// exceed it by the Go runtime, the binary and the BPF objects' pages:
// rssAllowMB in all.
const (
	budgetMB   = 16
	rssAllowMB = 40 + budgetMB
)

// The collector stops for 10 s and comes back: every connect made
// meanwhile arrives afterwards or is counted as lost (metrics and a log
// line), none silently; the agent's memory stays within its budget.
func TestCollectorOutage(t *testing.T) {
	e2e.Require(t)
	c := newCollector(t)
	c.start("127.0.0.1")
	mport := freePort(t)
	a := startAgent(t, fmt.Sprintf("tools: [tcpconnect]\nmemory-budget-mb: %d\notlp-retry: 2m\n", budgetMB),
		"--otlp-endpoint", c.HTTP(), "--metrics-address", fmt.Sprintf("127.0.0.1:%d", mport))
	a.metrics = fmt.Sprintf("127.0.0.1:%d", mport)
	server := e2e.Serve(t, "127.0.0.1")
	pid := strconv.Itoa(os.Getpid())
	ours := func(r logRecord) bool {
		return r.Event == "owl.tcpconnect" && r.Attrs["process.pid"] == pid && r.Attrs["destination.port"] == strconv.Itoa(int(server.Port()))
	}
	// The tracepoint hook sees a connect before its local port is chosen:
	// the test's connects are told apart by count, all to one server.
	e2e.Dial(t, server)
	c.waitFor(t, 30*time.Second, []string{"a connect before the outage"}, ours)
	count := func() int {
		n := 0
		for _, r := range c.records() {
			if ours(r) {
				n++
			}
		}
		return n
	}
	before := count()

	c.stop()
	n, peak := 0, 0
	for start := time.Now(); time.Since(start) < 10*time.Second; n++ {
		e2e.Dial(t, server)
		peak = max(peak, rssKiB(t, a.cmd.Process.Pid))
		time.Sleep(20 * time.Millisecond)
	}
	c.start("127.0.0.1")

	lost := func() float64 {
		return a.Metric(t, `owl_export_failed_records_total{sink="otlp"}`) + a.Metric(t, `owl_export_dropped_records_total{sink="otlp"}`) +
			a.Metric(t, `owl_events_lost_total{cause="ring_full",tool="tcpconnect"}`)
	}
	arrived := 0
	deadline := time.Now().Add(90 * time.Second)
	for {
		arrived = count() - before
		if float64(arrived)+lost() >= float64(n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	l := lost()
	t.Logf("%d connects during the outage: %d arrived after it, %v counted lost; agent RSS peak %d KiB", n, arrived, l, peak)
	if float64(arrived)+l < float64(n) {
		t.Errorf("%d connects made, %d arrived, %v counted lost: some silently lost", n, arrived, l)
	}
	if l > 0 && !strings.Contains(a.Log(), "lost") && !strings.Contains(a.Log(), "dropped") {
		t.Errorf("%v records lost without a log line", l)
	}
	if peak > rssAllowMB<<10 {
		t.Errorf("agent RSS peaked at %d KiB, over %d MiB", peak, rssAllowMB)
	}
}

// A SIGHUP that drops setuids and adds execsnoop loses no event of
// tcpconnect, which stays: connects made before, during and after the
// reload are all written.
func TestReloadKeepsTools(t *testing.T) {
	e2e.Require(t)
	trueBin := e2e.Need(t, "/bin/true")
	dir := t.TempDir()
	out := filepath.Join(dir, "events.json")
	path := filepath.Join(dir, "agent.yaml")
	write := func(tools string) {
		if err := os.WriteFile(path, []byte("tools: ["+tools+"]\njson: "+out+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tcpconnect, setuids")
	a := &agentProc{cmd: exec.Command(owlBin, "agent", "--config", path)}
	a.run(t)
	server := e2e.Serve(t, "127.0.0.1")
	made := 0
	dial := func(n int) {
		for range n {
			e2e.Dial(t, server)
			made++
		}
	}
	dial(50)
	write("tcpconnect, execsnoop")
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Connects while the reload runs.
	for !strings.Contains(a.Log(), "msg=reloaded") {
		dial(1)
		time.Sleep(time.Millisecond)
	}
	dial(50)
	exe := exec.Command(trueBin)
	if err := exe.Run(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	stopProcess(a.cmd)

	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	execSeen := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			Tool  string
			PID   int
			Dport int
			OCSF  struct {
				ClassUID int `json:"class_uid"`
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		switch {
		case r.Tool == "tcpconnect" && r.PID == os.Getpid() && r.Dport == int(server.Port()):
			got++
			if r.OCSF.ClassUID != 4001 {
				t.Errorf("tcpconnect class %d", r.OCSF.ClassUID)
			}
		case r.Tool == "execsnoop" && r.PID == exe.Process.Pid:
			execSeen = true
		}
	}
	t.Logf("%d connects across the reload, %d written", made, got)
	if got != made {
		t.Errorf("%d connects of the tool that stayed, %d written", made, got)
	}
	if !execSeen {
		t.Errorf("no exec from the tool the reload added")
	}
	if !strings.Contains(a.Log(), "msg=reloaded") {
		t.Errorf("no reload logged")
	}
}
