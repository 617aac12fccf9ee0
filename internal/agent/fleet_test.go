package agent_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
)

// run runs a command the test needs to succeed.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// A small fleet: three agents, each in a network and UTS namespace of its
// own (a "host" with its own name and address), send to one collector in
// a fourth namespace over veth pairs; every host's events arrive, tagged
// with its own host.name. Nothing leaves the namespaces the test makes.
func TestFleet(t *testing.T) {
	e2e.Require(t)
	e2e.Need(t, "/usr/sbin/ip")
	c := newCollector(t)
	// The collector's namespace, held by a sleep until the test ends.
	holder := exec.Command("unshare", "--net", "sleep", "600")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	cpid := strconv.Itoa(holder.Process.Pid)
	time.Sleep(100 * time.Millisecond) // unshare has switched namespaces
	c.netns = "/proc/" + cpid + "/ns/net"
	run(t, "nsenter", "--net="+c.netns, "ip", "link", "set", "lo", "up")
	c.start("0.0.0.0")

	type host struct {
		name, addr, gw string
		agent          *agentProc
		exec           int
	}
	var hosts []*host
	for i := range 3 {
		h := &host{name: fmt.Sprintf("owl-fleet-%d", i), addr: fmt.Sprintf("10.251.%d.2", i), gw: fmt.Sprintf("10.251.%d.1", i)}
		cfg := filepath.Join(t.TempDir(), "agent.yaml")
		endpoint := fmt.Sprintf("http://%s:%d", h.gw, c.httpPort)
		if err := os.WriteFile(cfg, []byte("tools: [tcpconnect, execsnoop]\notlp-endpoint: "+endpoint+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// The agent names its host from its UTS namespace, set before it
		// starts; its network comes up once it runs (the exporter retries).
		a := &agentProc{cmd: exec.Command("unshare", "--net", "--uts", "sh", "-c",
			`hostname "$0" && ip link set lo up && exec "$1" agent --config "$2"`, h.name, owlBin, cfg)}
		h.agent = a.run(t)
		apid := strconv.Itoa(a.cmd.Process.Pid)
		veth := fmt.Sprintf("owlfl%d", i)
		run(t, "ip", "link", "add", veth, "netns", cpid, "type", "veth", "peer", "name", "eth0", "netns", apid)
		run(t, "nsenter", "--net="+c.netns, "ip", "addr", "add", h.gw+"/24", "dev", veth)
		run(t, "nsenter", "--net="+c.netns, "ip", "link", "set", veth, "up")
		run(t, "nsenter", "--net=/proc/"+apid+"/ns/net", "ip", "addr", "add", h.addr+"/24", "dev", "eth0")
		run(t, "nsenter", "--net=/proc/"+apid+"/ns/net", "ip", "link", "set", "eth0", "up")
		hosts = append(hosts, h)
	}
	// An exec on each host, from inside its namespaces.
	for _, h := range hosts {
		apid := strconv.Itoa(h.agent.cmd.Process.Pid)
		cmd := exec.Command("nsenter", "--net=/proc/"+apid+"/ns/net", "--uts=/proc/"+apid+"/ns/uts", "/bin/true")
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		h.exec = cmd.Process.Pid // nsenter execs /bin/true in the same process
	}
	var what []string
	var matches []func(logRecord) bool
	for _, h := range hosts {
		apid := strconv.Itoa(h.agent.cmd.Process.Pid)
		what = append(what, h.name+"'s exec", h.name+"'s connect to the collector")
		matches = append(matches,
			func(r logRecord) bool {
				return r.Resource["host.name"] == h.name && r.Event == "owl.execsnoop" && r.Attrs["process.pid"] == strconv.Itoa(h.exec)
			},
			// The agent's own connection to the collector, from its host.
			func(r logRecord) bool {
				return r.Resource["host.name"] == h.name && r.Event == "owl.tcpconnect" && r.Attrs["process.pid"] == apid &&
					r.Attrs["destination.address"] == h.gw && r.Attrs["ocsf.class_uid"] == "4001"
			})
	}
	c.waitFor(t, 60*time.Second, what, matches...)
}
