package probe

import (
	"maps"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// Take hands over every entry once and leaves the map empty, but for what
// was added after an entry was taken: that waits for the next Take.
func TestTake(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a map needs root")
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := map[uint32]uint64{1: 10, 2: 20, 3: 30}
	for k, v := range want {
		if err := m.Put(k, v); err != nil {
			t.Fatal(err)
		}
	}
	take := func() map[uint32]uint64 {
		got := map[uint32]uint64{}
		err := Take(m, func(k *uint32, v *uint64) {
			got[*k] = *v
			if *k == 2 && *v == 20 {
				// The kernel counts again after the entry was taken.
				if err := m.Put(*k, uint64(7)); err != nil {
					t.Fatal(err)
				}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := take(); !maps.Equal(got, want) {
		t.Errorf("first Take: %v, want %v", got, want)
	}
	if got := take(); !maps.Equal(got, map[uint32]uint64{2: 7}) {
		t.Errorf("second Take: %v, want only what came after the first: 2:7", got)
	}
	if got := take(); len(got) != 0 {
		t.Errorf("third Take: %v, want nothing", got)
	}
}
