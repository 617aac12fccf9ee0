package agent_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
)

// podman runs podman with a storage of the test's own, runc and cgroupfs
// (this host has cgroup v1 only) and a containers.conf without default
// ulimits.
type podman struct {
	t    *testing.T
	args []string
	env  []string
}

func newPodman(t *testing.T) *podman {
	e2e.Need(t, "/usr/bin/podman")
	e2e.Need(t, "/usr/sbin/runc")
	dir := t.TempDir()
	conf := filepath.Join(dir, "containers.conf")
	err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = \"cgroupfs\"\nruntime = \"runc\"\nevents_logger = \"file\"\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return &podman{t: t, env: append(os.Environ(), "CONTAINERS_CONF="+conf),
		args: []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
			"--storage-driver", "vfs", "--cgroup-manager=cgroupfs", "--runtime", "runc"}}
}

func (p *podman) run(args ...string) string {
	p.t.Helper()
	cmd := exec.Command("podman", append(p.args, args...)...)
	cmd.Env = p.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("podman %v: %v\n%s", args, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// Real containers: podman runs a container from a busybox-static rootfs
// the test imports; its exec and its connect carry the container id podman
// reports, and podman as the runtime.
func TestPodmanContainer(t *testing.T) {
	e2e.Require(t)
	busybox := e2e.Need(t, "/bin/busybox")
	p := newPodman(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sh", "true", "sleep", "nc"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", name)); err != nil {
			t.Fatal(err)
		}
	}
	tarball := filepath.Join(dir, "rootfs.tar")
	run(t, "tar", "-C", root, "-cf", tarball, ".")
	p.run("import", tarball, "owl-agent-test:busybox")

	out := filepath.Join(dir, "events.json")
	a := startAgent(t, "tools: [tcpconnect, execsnoop]\njson: "+out+"\n")
	// A connect to a closed port on the container's own loopback (no
	// network leaves it), an exec, then a pause so that the container is
	// still there when its events are read.
	id := p.run("run", "-d", "--network", "none", "owl-agent-test:busybox", "/bin/sh", "-c",
		"/bin/true; nc 127.0.0.1 9 </dev/null; sleep 1")
	t.Cleanup(func() { p.run("rm", "-f", id) })
	p.run("wait", id)
	time.Sleep(500 * time.Millisecond)
	stopProcess(a.cmd)

	f, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var sawExec, sawConnect bool
	sc := bufio.NewScanner(bytes.NewReader(f))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r struct {
			Tool      string
			Filename  string
			Dport     int
			Container struct {
				ID      string
				Runtime string
				MntNS   uint32 `json:"mntns_id"`
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Container.ID != id {
			continue
		}
		if r.Container.Runtime != "podman" || r.Container.MntNS == 0 {
			t.Errorf("container part %+v, want podman and a mount namespace", r.Container)
		}
		sawExec = sawExec || r.Tool == "execsnoop" && r.Filename == "/bin/true"
		sawConnect = sawConnect || r.Tool == "tcpconnect" && r.Dport == 9
	}
	if !sawExec || !sawConnect {
		t.Errorf("container %s: exec of /bin/true seen: %v, connect to port 9 seen: %v", id, sawExec, sawConnect)
	}
}
