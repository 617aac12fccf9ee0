package pyframes

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestPythonLayout(t *testing.T) {
	for _, c := range []struct {
		module string
		hex    uint32
		minor  int
		err    bool
	}{
		{"python3.11", 0, 11, false},
		{"libpython3.12.so.1.0", 0, 12, false},
		{"python3.11", 0x030d00f0, 13, false}, // Py_Version wins
		{"python3.99", 0, 0, true},
		{"python3.11", 0x04000000, 0, true},
		{"python3.99999999999999999999", 0, 0, true},
		{"perl", 0, 0, true},
	} {
		minor, _, err := pythonLayout(c.module, c.hex)
		if minor != c.minor || (err != nil) != c.err {
			t.Errorf("%s %#x: minor %d, %v", c.module, c.hex, minor, err)
		}
	}
	if _, _, err := pythonLayout("python3.99", 0); !errors.As(err, new(*UnsupportedError)) {
		t.Errorf("python3.99: %v, want an UnsupportedError", err)
	}
}

// debugSeed is the start of a 3.13 _PyRuntime as parseDebugOffsets reads it.
func debugSeed() []byte {
	b := make([]byte, debugOffsetsBytes)
	copy(b, "xdebugpy")
	for off, v := range map[int]uint64{184: 72, 232: 8, 240: 0, 248: 56, 264: 70} {
		binary.LittleEndian.PutUint64(b[off:], v)
	}
	return b
}

// FuzzPythonLayout: the version table lookup and the _Py_DebugOffsets
// reader take any module name, version word and runtime bytes without
// panicking, and what they accept is a layout the BPF walk can use.
func FuzzPythonLayout(f *testing.F) {
	f.Add("python3.11", uint32(0), debugSeed())
	f.Add("libpython3.13.so.1.0", uint32(0x030d00f0), debugSeed())
	f.Add("python3.8", uint32(0x030812f0), []byte("xdebugpy"))
	f.Add("python3.", uint32(0), []byte{})
	f.Fuzz(func(t *testing.T, module string, hex uint32, debug []byte) {
		minor, lay, err := pythonLayout(module, hex)
		if err == nil {
			if _, ok := layouts[minor]; !ok || lay.fSize == 0 {
				t.Fatalf("%q %#x: minor %d, layout %+v", module, hex, minor, lay)
			}
		}
		if err := parseDebugOffsets(debug, &lay); err == nil {
			if lay.fSize > 128 || lay.fFlag >= 128 || lay.tsFrame >= 4096 || lay.fBack%8 != 0 || lay.fCode%8 != 0 || lay.fIP%8 != 0 {
				t.Errorf("frame layout %+v from _Py_DebugOffsets", lay)
			}
		}
	})
}
