package probe

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// PendingEntries sizes the table Pending names before load, and only
// that; without a Pending table it is refused.
func TestPendingEntries(t *testing.T) {
	spec := func() *ebpf.CollectionSpec {
		return &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{
			"events":       {Type: ebpf.RingBuf, MaxEntries: 4096},
			"owl_counters": {Type: ebpf.PerCPUArray, MaxEntries: nrCounters},
			"starts":       {Type: ebpf.LRUHash, MaxEntries: 16384},
			"other":        {Type: ebpf.Hash, MaxEntries: 10240},
		}}
	}
	cs := spec()
	if err := configureShared(cs, &Options{Pending: "starts", PendingEntries: 8}); err != nil {
		t.Fatal(err)
	}
	if got := cs.Maps["starts"].MaxEntries; got != 8 {
		t.Errorf("starts: %d entries, want 8", got)
	}
	if got := cs.Maps["other"].MaxEntries; got != 10240 {
		t.Errorf("other: %d entries, want 10240 (untouched)", got)
	}
	cs = spec()
	if err := configureShared(cs, &Options{Pending: "starts"}); err != nil || cs.Maps["starts"].MaxEntries != 16384 {
		t.Errorf("no PendingEntries: %v, %d entries, want the default 16384", err, cs.Maps["starts"].MaxEntries)
	}
	if err := configureShared(spec(), &Options{Pending: "nope", PendingEntries: 8}); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("a missing pending table: %v, want an error naming it", err)
	}
	if _, err := Open(spec(), nil, Options{Tool: "x", PendingEntries: 8}); err == nil || !strings.Contains(err.Error(), "no table of pending events") {
		t.Errorf("PendingEntries without Pending: %v, want it refused", err)
	}
}
