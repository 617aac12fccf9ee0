package probe

import (
	"errors"
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

// Take calls fn with every entry of m, a hash map, reading and deleting
// each at once (BPF_MAP_LOOKUP_AND_DELETE_ELEM): what the kernel adds to an
// entry after it was taken stays in the map for the next call, so that a
// count is in exactly one call's result. fn must not keep the pointers.
func Take[K, V any](m *ebpf.Map, fn func(k *K, v *V)) error {
	var (
		keys []K
		k    K
		v    V
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", m, err)
	}
	for i := range keys {
		if err := m.LookupAndDelete(&keys[i], &v); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				continue // gone since the walk
			}
			return fmt.Errorf("take from %s: %w", m, err)
		}
		fn(&keys[i], &v)
	}
	return nil
}
