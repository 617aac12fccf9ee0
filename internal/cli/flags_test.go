package cli

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/owlbpf/owl/internal/probe"
)

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts("22, 80,65535")
	if err != nil || len(got) != 3 || got[2] != 65535 {
		t.Errorf("got %v %v", got, err)
	}
	for _, bad := range []string{"0", "65536", "-1", "x", "80,,81"} {
		if _, err := ParsePorts(bad); ExitCode(err) != 2 {
			t.Errorf("%q: got %v, want a usage error", bad, err)
		}
	}
}

// -P takes up to probe.MaxPorts ports; more is one clear line, exit 2.
func TestPortLimit(t *testing.T) {
	list := func(n int) string {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			if i > 1 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(i))
		}
		return b.String()
	}
	if got, err := ParsePorts(list(probe.MaxPorts)); err != nil || len(got) != probe.MaxPorts {
		t.Errorf("%d ports: %v", probe.MaxPorts, err)
	}
	if _, err := ParsePorts(list(probe.MaxPorts + 1)); ExitCode(err) != 2 || !strings.Contains(err.Error(), "at most 1024") {
		t.Errorf("%d ports: got %v, want a usage error naming the limit", probe.MaxPorts+1, err)
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{Usagef("bad"), 2},
		{&probe.NoHookError{Tool: "x"}, 2},
		{Fail(errors.New("ring buffer broke")), 1},
		{errors.New("unclassified"), 1},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestOptions(t *testing.T) {
	for _, c := range []Common{
		{Output: "xml", UID: -1}, {Output: "text", PID: -3, UID: -1}, {Output: "text", PID: 1 << 30, UID: -1},
		{Output: "json", Duration: -1, UID: -1}, {Output: "text", UID: -2},
		{Output: "text", UID: -1, MntNS: "x"}, {Output: "text", UID: -1, MntNS: "0"},
		{Output: "text", UID: -1, Cgroup: "/nonexistent"}, {Output: "text", UID: -1, Cgroup: "/tmp"},
	} {
		if _, err := c.Options(); ExitCode(err) != 2 {
			t.Errorf("%+v: got %v, want a usage error", c, err)
		}
	}
	c := Common{Output: "json", PID: 1, UID: 7, MntNS: "/proc/self/ns/mnt"}
	opts, err := c.Options()
	if err != nil || c.Format != "json" || opts.Task.PID != 1 || opts.Task.UID != 7 || opts.Task.MntNS == 0 {
		t.Errorf("valid flags: %+v %v", opts, err)
	}
}

// --cgroup on a directory outside cgroup v2 says why it cannot work: on a
// host without cgroup v2 (this project's reference VM) it points to
// --mntns, else to where v2 is mounted.
func TestCgroupOutsideV2(t *testing.T) {
	want := "--mntns"
	if at := cgroup2Mount(); at != "" {
		want = "mounted at " + at
	}
	_, err := cgroupID("/proc")
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error saying %q", err, want)
	}
}

func TestNet(t *testing.T) {
	for _, tc := range []struct {
		n    Net
		want probe.NetFilter
		bad  bool
	}{
		{Net{v4: true, v6: true}, probe.NetFilter{}, true},
		{Net{ports: "70000"}, probe.NetFilter{}, true},
		{Net{ports: "http"}, probe.NetFilter{}, true},
		{Net{v6: true, ports: "80, 443"}, probe.NetFilter{Family: 6, Ports: []uint16{80, 443}}, false},
	} {
		got, err := tc.n.Filter()
		if (ExitCode(err) == 2) != tc.bad || got.Family != tc.want.Family || len(got.Ports) != len(tc.want.Ports) {
			t.Errorf("%+v: got %+v %v", tc.n, got, err)
		}
	}
}
