package agent_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
)

// The agent runs with the unit file's capabilities only (the DaemonSet
// has the same set, deploy's test checks): with setpriv it gets exactly
// those, no new privileges, and still traces.
func TestLeastCapabilities(t *testing.T) {
	e2e.Require(t)
	e2e.Need(t, "/usr/bin/setpriv")
	unit, err := os.ReadFile("../../deploy/systemd/owl-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	for line := range strings.SplitSeq(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "AmbientCapabilities="); ok {
			for _, c := range strings.Fields(v) {
				caps = append(caps, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
			}
		}
	}
	if len(caps) == 0 {
		t.Fatal("no AmbientCapabilities in the unit file")
	}
	set := "-all," + strings.Join(caps, ",")
	c := newCollector(t)
	c.start("127.0.0.1")
	a := &agentProc{cmd: exec.Command("setpriv", "--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set,
		"--no-new-privs", owlBin, "agent", "--tools", "tcpconnect,execsnoop", "--otlp-endpoint", c.HTTP())}
	a.run(t)
	status, err := os.ReadFile("/proc/" + strconv.Itoa(a.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	// CapEff of BPF (39), PERFMON (38), SYS_PTRACE (19), DAC_READ_SEARCH (2).
	if !strings.Contains(string(status), "CapEff:\t000000c000080004") {
		t.Errorf("agent's capabilities:\n%s", status)
	}
	server := e2e.Serve(t, "127.0.0.1")
	e2e.Dial(t, server)
	pid := strconv.Itoa(os.Getpid())
	c.waitFor(t, 30*time.Second, []string{"the connect"}, func(r logRecord) bool {
		return r.Event == "owl.tcpconnect" && r.Attrs["process.pid"] == pid && r.Attrs["destination.port"] == strconv.Itoa(int(server.Port()))
	})
}
