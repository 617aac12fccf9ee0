package cli

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/caps"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
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
		{ErrPrivileges, 2},
		{&caps.MissingError{Missing: caps.Perfmon, Needs: caps.Base}, 2},
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
	if err := Privileged(0, 0); err != nil {
		t.Skipf("valid flags: %v", err)
	}
	c := Common{Output: "json", PID: 1, UID: 7, MntNS: "/proc/self/ns/mnt"}
	opts, err := c.Options()
	if err != nil || c.Format != "json" || opts.Task.PID != 1 || opts.Task.UID != 7 || opts.Task.MntNS == 0 {
		t.Errorf("valid flags: %+v %v", opts, err)
	}
}

// parse builds a tool's command with the common flags and parses args.
func parse(t *testing.T, args ...string) *Common {
	t.Helper()
	var c Common
	cmd := NewCommand(tool.Info{Name: "x", Task: true}, "", "", &c, nil)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return &c
}

// Numeric flags are range-checked where they are given: an overflowing -d
// would stop at once, -u 4294967296 would wrap to uid 0, -u 4294967295 is
// the kernel's "no uid" (the filter off), and 0 for -p and -d means
// nothing.
func TestNumericFlagRanges(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		args []string
		bad  string // what the error names; "" for valid input
	}{
		{nil, ""},
		{[]string{"-d", "1"}, ""},
		{[]string{"-d", strconv.Itoa(maxSeconds)}, ""},
		{[]string{"-d", "0"}, "--duration"},
		{[]string{"-d", "-1"}, "--duration"},
		{[]string{"-d", "9223372037"}, "--duration"},
		{[]string{"-d", "18446744074"}, "--duration"},
		{[]string{"-p", self}, ""},
		{[]string{"-p", "0"}, "--pid"},
		{[]string{"-p", "-1"}, "--pid"},
		{[]string{"-p", "4194305"}, "--pid"},
		{[]string{"-u", "0"}, ""},
		{[]string{"-u", "4294967294"}, ""},
		{[]string{"-u", "4294967295"}, "--uid"},
		{[]string{"-u", "4294967296"}, "--uid"},
		{[]string{"-u", "-1"}, "--uid"},
		{[]string{"--hook", "kprobe,fentry"}, ""},
		{[]string{"--hook", "bogus"}, "--hook"},
		{[]string{"--poll", "1ms"}, ""},
		{[]string{"--poll", "10s"}, ""},
		{[]string{"--poll", "0s"}, "--poll"},
		{[]string{"--poll", "999us"}, "--poll"},
		{[]string{"--poll", "11s"}, "--poll"},
	} {
		err := parse(t, tc.args...).check()
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%v: %v, want it accepted", tc.args, err)
		case tc.bad != "" && (ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%v: got %v, want a usage error naming %s", tc.args, err, tc.bad)
		}
	}
	if err := Privileged(0, 0); err != nil {
		t.Skipf("options: %v", err)
	}
	opts, err := parse(t, "-u", "4294967294", "-p", self, "--poll", "25ms").Options()
	if err != nil || opts.Task.UID != 4294967294 || opts.Task.PID != os.Getpid() || opts.Latency != 25*time.Millisecond {
		t.Errorf("-u 4294967294 -p %s --poll 25ms: %+v %v %v", self, opts.Task, opts.Latency, err)
	}
}

// --pending-entries exists only for tools with a pending table, hidden,
// and takes 1 to maxPending.
func TestPendingEntries(t *testing.T) {
	var c Common
	if NewCommand(tool.Info{Name: "x"}, "", "", &c, nil).Flags().Lookup("pending-entries") != nil {
		t.Error("--pending-entries on a tool without a pending table")
	}
	for _, tc := range []struct {
		arg string
		ok  bool
	}{{"1", true}, {strconv.Itoa(maxPending), true}, {"0", false}, {"-1", false}, {strconv.Itoa(maxPending + 1), false}} {
		var c Common
		cmd := NewCommand(tool.Info{Name: "x", Pending: true}, "", "", &c, nil)
		if f := cmd.Flags().Lookup("pending-entries"); f == nil || !f.Hidden {
			t.Fatalf("--pending-entries: %+v, want a hidden flag", f)
		}
		if err := cmd.ParseFlags([]string{"--pending-entries", tc.arg}); err != nil {
			t.Fatal(err)
		}
		err := c.check()
		switch {
		case tc.ok && err != nil:
			t.Errorf("--pending-entries %s: %v, want it accepted", tc.arg, err)
		case !tc.ok && (ExitCode(err) != 2 || !strings.Contains(err.Error(), "--pending-entries")):
			t.Errorf("--pending-entries %s: got %v, want a usage error naming the flag", tc.arg, err)
		}
	}
}

func TestSeconds(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
		bad  bool
	}{
		{nil, 0, false},
		{[]string{"-i", "5"}, 5 * time.Second, false},
		{[]string{"-i", strconv.Itoa(maxSeconds)}, time.Duration(maxSeconds) * time.Second, false},
		{[]string{"-i", "0"}, 0, true},
		{[]string{"-i", "-5"}, 0, true},
		{[]string{"-i", strconv.Itoa(maxSeconds + 1)}, 0, true},
	} {
		var n int
		cmd := &cobra.Command{Use: "x"}
		cmd.Flags().IntVarP(&n, "interval", "i", 0, "")
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		got, err := Seconds(cmd, "interval", n)
		if got != tc.want || (ExitCode(err) == 2) != tc.bad || (err != nil && !strings.Contains(err.Error(), "--interval")) {
			t.Errorf("%v: %v %v, want %v (bad input: %v)", tc.args, got, err, tc.want, tc.bad)
		}
		if got < 0 {
			t.Errorf("%v: negative interval %v", tc.args, got)
		}
	}
}

// OWL_HOOKS and --hook take the same names: a name that is no hook kind is
// bad input in both.
func TestHookKinds(t *testing.T) {
	for _, ok := range []string{"", "tracepoint", "raw_tracepoint", "fentry", "kprobe", "uprobe", "tracepoint, kprobe"} {
		if err := HookKinds("--hook", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"bogus", "tracepoint,", "kretprobe", "fexit", "Tracepoint"} {
		if err := HookKinds("--hook", bad); ExitCode(err) != 2 || !strings.Contains(err.Error(), "want tracepoint, raw_tracepoint, fentry, kprobe or uprobe") {
			t.Errorf("%q: got %v, want a usage error listing the kinds", bad, err)
		}
	}
	t.Setenv("OWL_HOOKS", "bogus")
	if _, err := HooksEnv(); ExitCode(err) != 2 || !strings.Contains(err.Error(), "OWL_HOOKS") {
		t.Errorf("OWL_HOOKS=bogus: got %v, want a usage error naming OWL_HOOKS", err)
	}
	if _, err := parse(t).Options(); ExitCode(err) != 2 || !strings.Contains(err.Error(), "OWL_HOOKS") {
		t.Errorf("OWL_HOOKS=bogus: Options gave %v, want a usage error naming OWL_HOOKS", err)
	}
	t.Setenv("OWL_HOOKS", "uprobe")
	if env, err := HooksEnv(); env != "uprobe" || err != nil {
		t.Errorf("OWL_HOOKS=uprobe: %q %v", env, err)
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
