package container

import (
	"os"
	"testing"
)

const id = "3f1c0e6a8d2b4c5e9f7a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6a"

func TestFromPath(t *testing.T) {
	for _, c := range []struct {
		path string
		want Info
	}{
		{"/", Info{}},
		{"/user.slice/user-0.slice/session-3.scope", Info{}},
		{"/docker/" + id, Info{ID: id, Runtime: "docker"}},
		{"/system.slice/docker-" + id + ".scope", Info{ID: id, Runtime: "docker"}},
		{"/machine.slice/libpod-" + id + ".scope", Info{ID: id, Runtime: "podman"}},
		{"/libpod_parent/libpod-" + id, Info{ID: id, Runtime: "podman"}},
		{"/system.slice/crio-" + id + ".scope", Info{ID: id, Runtime: "cri-o"}},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/cri-containerd-" + id + ".scope",
			Info{ID: id, Runtime: "containerd", PodUID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}},
		{"/kubepods.slice/kubepods-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice/crio-" + id + ".scope",
			Info{ID: id, Runtime: "cri-o", PodUID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}},
		{"/kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/" + id,
			Info{ID: id, PodUID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}},
		{"/kubepods/besteffort/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", Info{PodUID: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}},
		// Not an id: 63 digits.
		{"/docker/" + id[1:], Info{}},
	} {
		if got := FromPath(c.path); got != c.want {
			t.Errorf("FromPath(%q) = %+v, want %+v", c.path, got, c.want)
		}
	}
}

func TestFromCgroupFileV1(t *testing.T) {
	data := "12:pids:/docker/" + id + "\n11:cpu,cpuacct:/docker/" + id + "\n1:name=systemd:/docker/" + id + "\n0::/\n"
	if got := FromCgroupFile([]byte(data)); got.ID != id || got.Runtime != "docker" {
		t.Errorf("got %+v", got)
	}
}

// The agent's own processes are on the host: no container, without a
// lookup.
func TestResolverHost(t *testing.T) {
	r := NewResolver("/proc")
	ns, err := r.mntns("self")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Lookup(uint32(os.Getpid()), ns); got != (Info{}) {
		t.Errorf("own process: %+v", got)
	}
}
