package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Tracing needs CAP_BPF and CAP_PERFMON (5.8+) or CAP_SYS_ADMIN, which
// covers both and is what older kernels want.
func TestPrivileged(t *testing.T) {
	bit := func(caps ...int) uint64 {
		var m uint64
		for _, c := range caps {
			m |= 1 << c
		}
		return m
	}
	for _, tc := range []struct {
		eff  uint64
		last int
		want bool
	}{
		{0, 40, false},
		{bit(unix.CAP_SYS_ADMIN), 40, true},
		{bit(unix.CAP_SYS_ADMIN), 37, true},
		{bit(unix.CAP_BPF, unix.CAP_PERFMON), 40, true},
		{bit(unix.CAP_BPF, unix.CAP_PERFMON), -1, true},
		{bit(unix.CAP_BPF, unix.CAP_PERFMON), 37, false}, // before 5.8 these bits mean nothing
		{bit(unix.CAP_BPF), 40, false},
		{bit(unix.CAP_PERFMON, unix.CAP_NET_ADMIN), 40, false},
	} {
		if got := privileged(tc.eff, tc.last); got != tc.want {
			t.Errorf("caps %#x, last cap %d: %v, want %v", tc.eff, tc.last, got, tc.want)
		}
	}
	if !errors.Is(errOldKernelPrivileges, ErrPrivileges) {
		t.Error("the pre-5.8 message is not ErrPrivileges")
	}
	if os.Geteuid() == 0 {
		if err := Privileged(); err != nil {
			t.Errorf("as root: %v", err)
		}
	}
}

func TestKernelVersion(t *testing.T) {
	for _, tc := range []struct {
		release      string
		major, minor int
		ok           bool
	}{
		{"6.18.0", 6, 18, true},
		{"6.1.0-31-amd64", 6, 1, true},
		{"5.10.0-rc1+", 5, 10, true},
		{"5.11", 5, 11, true},
		{"4.19.0+", 4, 19, true},
		{"junk", 0, 0, false},
	} {
		major, minor, ok := kernelVersion(tc.release)
		if major != tc.major || minor != tc.minor || ok != tc.ok {
			t.Errorf("%q: %d.%d %v", tc.release, major, minor, ok)
		}
	}
}

// cilium/ebpf suggests raising RLIMIT_MEMLOCK on every EPERM: the hint goes
// where the kernel charges BPF memory to the memory cgroup (5.11+) or the
// limit is off, and is said for users (not rlimit.RemoveMemlock) elsewhere.
func TestMemlockHint(t *testing.T) {
	err := fmt.Errorf("tcpconnect: no usable hook: load: map create: %w%s", unix.EPERM, memlockHint)
	if got := rewriteMemlock(err.Error(), true); got != "tcpconnect: no usable hook: load: map create: operation not permitted" {
		t.Errorf("memory charged to memcg: %q", got)
	}
	if got := rewriteMemlock(err.Error(), false); !strings.Contains(got, "ulimit -l") || strings.Contains(got, "RemoveMemlock") {
		t.Errorf("memory charged to RLIMIT_MEMLOCK: %q", got)
	}
	if memcgAccounting() && strings.Contains(Message(err), "MEMLOCK") {
		t.Errorf("Message on a 5.11+ kernel: %q", Message(err))
	}
}
