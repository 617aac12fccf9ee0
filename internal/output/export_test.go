package output

import (
	"reflect"
	"unsafe"
)

// AppendJSONOf encodes the value p points to, of type t, with the encoder
// Writer uses for events, for tests in package output_test.
func AppendJSONOf(t reflect.Type, p unsafe.Pointer) ([]byte, error) {
	var s jsonState
	err := compileJSON(t, map[reflect.Type]*jsonFunc{})(&s, p)
	return s.b, err
}
