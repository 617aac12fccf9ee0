package probe

import (
	"context"
	"unsafe"
)

// Tracer turns a session's ring-buffer records into typed events E.
type Tracer[E any] struct {
	*Session
	// Decode fills e from one record and reports whether it is an event to
	// emit. It must not keep raw.
	Decode func(raw []byte, e *E) bool
}

// Run emits each decoded event until ctx is done. The event passed to emit
// is reused: copy it to keep it (decoders give events fresh slices, so a
// copy of the struct is enough). idle, when set, runs whenever the ring is
// drained (flush buffered output there).
func (t *Tracer[E]) Run(ctx context.Context, emit func(*E), idle func()) error {
	var e E
	return t.Read(ctx, func(raw []byte) {
		if t.Decode(raw, &e) {
			emit(&e)
		}
	}, idle)
}

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
