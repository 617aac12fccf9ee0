package cli

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/caps"
)

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
	if caps.MemcgAccounting() && strings.Contains(Message(err), "MEMLOCK") {
		t.Errorf("Message on a 5.11+ kernel: %q", Message(err))
	}
}
