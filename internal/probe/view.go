package probe

import (
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
)

// View reinterprets a ring-buffer record as the event struct T that bpf2go
// generated from the C side, without copying. It reports false for records
// shorter than T.
func View[T any](raw []byte) (*T, bool) {
	var zero T
	if len(raw) < int(unsafe.Sizeof(zero)) {
		return nil, false
	}
	return (*T)(unsafe.Pointer(unsafe.SliceData(raw))), true
}

// Each calls fn with every entry of m, as the types K and V that bpf2go
// generated for its key and value; fn must not keep the pointers. Entries
// added or removed during the walk may or may not be seen.
func Each[K, V any](m *ebpf.Map, fn func(k *K, v *V)) error {
	var (
		k K
		v V
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		fn(&k, &v)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", m, err)
	}
	return nil
}
