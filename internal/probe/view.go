package probe

import "unsafe"

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
