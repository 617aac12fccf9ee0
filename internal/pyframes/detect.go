package pyframes

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/syms"
)

// Kinds of frame chains (enum owl_py_kind of bpf/python.h).
const (
	kindFrameObj = 1 // ≤ 3.10: PyFrameObject
	kindIsEntry  = 2 // 3.11: _PyInterpreterFrame.is_entry
	kindShim     = 3 // 3.12+: entry shims owned by the C stack
)

// procRecord is struct owl_py_proc of bpf/python.h.
type procRecord struct {
	TssKey    uint64
	Kind      uint32
	TsdFirst  uint32
	TsdSecond uint32
	TsdSize   uint32
	TsdData   uint32
	TsFrame   uint32
	CfFrame   int32
	FCode     uint32
	FBack     uint32
	FIP       uint32
	FFlag     uint32
	FSize     uint32
}

// layout is what a minor version's structs look like where the binary
// does not say: CPython has no stable ABI for these.
type layout struct {
	tss     uint64 // offset of the autoTSSkey Py_tss_t in _PyRuntime
	kind    uint32
	tsFrame uint32 // PyThreadState: cframe, current_frame or frame
	cfFrame int32  // _PyCFrame.current_frame, -1 without a cframe
	fCode   uint32
	fBack   uint32
	fIP     uint32
	fFlag   uint32
	fSize   uint32
	// ascii is sizeof(PyASCIIObject), compact sizeof(PyCompactUnicodeObject):
	// where a compact string's characters start.
	ascii, compact uint64
}

// layouts by minor version of Python 3, read with gdb from the DWARF of
// CPython builds (3.8.18, 3.9.18, 3.10.13, 3.11.7, 3.12.1, 3.13.0) and
// checked against Debian's 3.11.2. 3.13's frame and thread-state offsets
// come from _Py_DebugOffsets when the runtime has them.
var layouts = map[int]layout{
	8:  {tss: 1392, kind: kindFrameObj, tsFrame: 24, cfFrame: -1, fCode: 32, fBack: 24, fIP: 104, fFlag: 0, fSize: 112, ascii: 48, compact: 72},
	9:  {tss: 584, kind: kindFrameObj, tsFrame: 24, cfFrame: -1, fCode: 32, fBack: 24, fIP: 104, fFlag: 0, fSize: 112, ascii: 48, compact: 72},
	10: {tss: 584, kind: kindFrameObj, tsFrame: 24, cfFrame: -1, fCode: 32, fBack: 24, fIP: 96, fFlag: 0, fSize: 104, ascii: 48, compact: 72},
	11: {tss: 592, kind: kindIsEntry, tsFrame: 56, cfFrame: 8, fCode: 32, fBack: 48, fIP: 56, fFlag: 68, fSize: 72, ascii: 48, compact: 72},
	12: {tss: 1544, kind: kindShim, tsFrame: 56, cfFrame: 0, fCode: 0, fBack: 8, fIP: 56, fFlag: 70, fSize: 72, ascii: 40, compact: 56},
	13: {tss: 2160, kind: kindShim, tsFrame: 72, cfFrame: -1, fCode: 0, fBack: 8, fIP: 56, fFlag: 70, fSize: 72, ascii: 40, compact: 56},
}

// codeLayout is where a code object keeps what a frame is named by.
type codeLayout struct {
	name      uint64 // co_qualname (3.11+) or co_name
	filename  uint64
	firstline uint64 // int
	linetable uint64 // co_linetable (3.10+) or co_lnotab: a bytes object
	code      uint64 // co_code_adaptive (3.11+): where instructions start
}

// interp is one Python process as found in its mappings.
type interp struct {
	minor    int
	module   string // base name of the file holding the interpreter
	codeType uint64 // address of PyCode_Type: a code object's ob_type
	rec      procRecord
	code     codeLayout
	lay      layout
}

// UnsupportedError is a Python whose version owl has no offsets for: its
// stacks keep their native frames.
type UnsupportedError struct{ Version string }

func (e *UnsupportedError) Error() string {
	return "Python " + e.Version + ": no frame layout known, native frames only"
}

var pyName = regexp.MustCompile(`^(?:lib)?python3\.(\d+)`)

// pythonLayout is the minor version and struct layout of the Python
// whose interpreter is in module (python3.11, libpython3.12.so.1.0) and,
// when the binary has Py_Version, whose version word is hex (0: none):
// an UnsupportedError for a version owl has no layout of.
func pythonLayout(module string, hex uint32) (int, layout, error) {
	m := pyName.FindStringSubmatch(module)
	if m == nil {
		return 0, layout{}, fmt.Errorf("%s: not a Python interpreter", module)
	}
	minor, err := strconv.Atoi(m[1])
	version := "3." + m[1]
	if err != nil {
		return 0, layout{}, &UnsupportedError{Version: version}
	}
	if hex != 0 {
		minor = int(hex >> 16 & 0xff)
		version = fmt.Sprintf("%d.%d.%d", hex>>24, minor, hex>>8&0xff)
		if hex>>24 != 3 {
			return 0, layout{}, &UnsupportedError{Version: version}
		}
	}
	lay, ok := layouts[minor]
	if !ok {
		return 0, layout{}, &UnsupportedError{Version: version}
	}
	return minor, lay, nil
}

// fileKey is a mapped file as /proc/PID/maps names it.
type fileKey struct {
	major, minor uint32
	inode        uint64
	path         string
}

func keyOf(m *syms.Mapping) fileKey { return fileKey{m.Major, m.Minor, m.Inode, m.Path} }

// pyFile is what detect needs of an interpreter's file: read once per
// file, not per process (~14 ms for Debian's python3.11).
type pyFile struct {
	sym        map[string]uint64
	exec       bool   // ET_EXEC: loaded at its link addresses
	firstVaddr uint64 // of the first PT_LOAD segment
}

// files caches what was read of interpreters' and libcs' files.
type files struct {
	py   map[fileKey]*pyFile
	libc map[fileKey]tsd
}

// maxFiles bounds each of the caches.
const maxFiles = 64

func newFiles() *files { return &files{py: map[fileKey]*pyFile{}, libc: map[fileKey]tsd{}} }

func (fs *files) python(pid uint32, m *syms.Mapping) (*pyFile, error) {
	if f, ok := fs.py[keyOf(m)]; ok {
		return f, nil
	}
	ef, err := elf.Open(fileOf(pid, m))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", m.Path, err)
	}
	defer ef.Close()
	f := &pyFile{sym: symbols(ef, "_PyRuntime", "PyCode_Type", "Py_Version"), exec: ef.Type == elf.ET_EXEC}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			f.firstVaddr = p.Vaddr
			break
		}
	}
	if len(fs.py) >= maxFiles {
		clear(fs.py)
	}
	fs.py[keyOf(m)] = f
	return f, nil
}

func (fs *files) tsd(pid uint32, m *syms.Mapping) (tsd, error) {
	if t, ok := fs.libc[keyOf(m)]; ok {
		return t, nil
	}
	t, err := libcTSD(fileOf(pid, m))
	if err != nil {
		return t, err
	}
	if len(fs.libc) >= maxFiles {
		clear(fs.libc)
	}
	fs.libc[keyOf(m)] = t
	return t, nil
}

// detect finds the interpreter of process pid: nil, nil when it runs no
// Python 3.
func detect(pid uint32, fs *files) (*interp, error) {
	maps, err := syms.ReadMaps(int(pid))
	if err != nil {
		return nil, nil // gone, or not ours to read: no frames to add
	}
	var py, libc *syms.Mapping
	for i := range maps {
		m := &maps[i]
		if !m.File() {
			continue
		}
		mod := m.Module()
		switch {
		case pyName.MatchString(mod) && (py == nil || strings.HasPrefix(mod, "lib") && !strings.HasPrefix(py.Module(), "lib")):
			py = m
		case libc == nil && (strings.HasPrefix(mod, "libc.so") || strings.HasPrefix(mod, "libc-")):
			libc = m
		}
	}
	if py == nil {
		return nil, nil
	}
	if libc == nil {
		return nil, fmt.Errorf("%s without glibc: thread-specific data layout unknown, native frames only", py.Module())
	}
	pf, err := fs.python(pid, py)
	if err != nil {
		return nil, err
	}
	sym := pf.sym
	if sym["_PyRuntime"] == 0 {
		return nil, nil // python3.X without the interpreter in it (a launcher)
	}
	bias, err := loadBias(pf, pid, py, maps)
	if err != nil {
		return nil, err
	}
	mem := memory(pid)
	var hex uint32
	if v := sym["Py_Version"]; v != 0 {
		if hex, err = mem.u32(bias + v); err != nil {
			return nil, fmt.Errorf("read Py_Version: %w", err)
		}
	}
	minor, lay, err := pythonLayout(py.Module(), hex)
	if err != nil {
		return nil, err
	}
	runtime := bias + sym["_PyRuntime"]
	if minor >= 13 {
		if err := debugOffsets(mem, runtime, &lay); err != nil {
			return nil, err
		}
	}
	in := &interp{minor: minor, module: py.Module(), codeType: bias + sym["PyCode_Type"], lay: lay}
	if sym["PyCode_Type"] == 0 {
		return nil, errors.New("no PyCode_Type symbol")
	}
	if in.code, err = codeMembers(mem, in.codeType, minor); err != nil {
		return nil, fmt.Errorf("PyCode_Type: %w", err)
	}
	tsd, err := fs.tsd(pid, libc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", libc.Path, err)
	}
	in.rec = procRecord{
		TssKey:    runtime + lay.tss + 4, // Py_tss_t{int _is_initialized; pthread_key_t _key}
		Kind:      lay.kind,
		TsdFirst:  tsd.first,
		TsdSecond: tsd.second,
		TsdSize:   tsd.size,
		TsdData:   tsd.data,
		TsFrame:   lay.tsFrame,
		CfFrame:   lay.cfFrame,
		FCode:     lay.fCode,
		FBack:     lay.fBack,
		FIP:       lay.fIP,
		FFlag:     lay.fFlag,
		FSize:     lay.fSize,
	}
	return in, nil
}

// fileOf is where to open the file of mapping m: through the process's
// root (its mount namespace), or the mapped file itself when it was
// replaced.
func fileOf(pid uint32, m *syms.Mapping) string {
	if m.Deleted() {
		return fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, m.Start, m.End)
	}
	return fmt.Sprintf("/proc/%d/root%s", pid, m.Path)
}

// symbols returns the values of the named symbols (0 when absent), from
// the dynamic symbols and the symbol table.
func symbols(ef *elf.File, names ...string) map[string]uint64 {
	out := make(map[string]uint64, len(names))
	for _, get := range []func() ([]elf.Symbol, error){ef.DynamicSymbols, ef.Symbols} {
		all, _ := get()
		for _, s := range all {
			for _, n := range names {
				if s.Name == n && out[n] == 0 && s.Value != 0 {
					out[n] = s.Value
				}
			}
		}
	}
	return out
}

// loadBias is what to add to a link-time address of file f to get its address
// in process pid: 0 for a fixed-address executable, else where the file's
// first page is mapped less the first segment's address.
func loadBias(f *pyFile, pid uint32, m *syms.Mapping, maps []syms.Mapping) (uint64, error) {
	if f.exec {
		return 0, nil
	}
	for _, o := range maps {
		if o.Inode == m.Inode && o.Major == m.Major && o.Minor == m.Minor && o.Offset == 0 {
			return o.Start - f.firstVaddr&^0xfff, nil
		}
	}
	return 0, fmt.Errorf("process %d: first page of %s not mapped", pid, m.Path)
}

// debugOffsets takes 3.13+'s frame and thread-state offsets from the
// _Py_DebugOffsets at the start of _PyRuntime, which the runtime keeps for
// debuggers, rather than from the table.
func debugOffsets(mem memory, runtime uint64, lay *layout) error {
	b := make([]byte, debugOffsetsBytes)
	if err := mem.read(runtime, b); err != nil {
		return fmt.Errorf("read _Py_DebugOffsets: %w", err)
	}
	return parseDebugOffsets(b, lay)
}

// debugOffsetsBytes is how much of _Py_DebugOffsets parseDebugOffsets reads.
const debugOffsetsBytes = 320

// parseDebugOffsets takes the frame and thread-state offsets of b, the
// start of a 3.13+ _PyRuntime (_Py_DebugOffsets), into lay.
func parseDebugOffsets(b []byte, lay *layout) error {
	if len(b) < debugOffsetsBytes || string(b[:8]) != "xdebugpy" {
		return errors.New("_PyRuntime does not start with _Py_DebugOffsets")
	}
	u := func(off int) uint32 { return uint32(binary.LittleEndian.Uint64(b[off:])) }
	lay.tsFrame = u(184) // thread_state.current_frame
	lay.fBack = u(232)   // interpreter_frame.previous
	lay.fCode = u(240)   // .executable
	lay.fIP = u(248)     // .instr_ptr
	lay.fFlag = u(264)   // .owner
	for _, off := range []uint32{lay.fBack, lay.fCode, lay.fIP} {
		if off%8 != 0 || off+8 > 128 {
			return fmt.Errorf("_Py_DebugOffsets: frame field at %d: want 8-aligned and below 128", off)
		}
	}
	// The BPF walk masks what it reads to its buffers: an offset beyond
	// them would read the wrong bytes, not fail (found by FuzzPythonLayout).
	if lay.fFlag >= 128 {
		return fmt.Errorf("_Py_DebugOffsets: frame owner at %d: want below 128", lay.fFlag)
	}
	if lay.tsFrame%8 != 0 || lay.tsFrame >= 4096 {
		return fmt.Errorf("_Py_DebugOffsets: thread state's frame at %d: want 8-aligned and below 4096", lay.tsFrame)
	}
	lay.fSize = max(lay.fBack, lay.fCode, lay.fIP, lay.fFlag&^7) + 8
	return nil
}

// codeMembers reads the offsets of a code object's fields from
// PyCode_Type's member table (tp_members) in the process, and where its
// instructions start from its tp_basicsize (3.11+: co_code_adaptive is the
// variable part).
func codeMembers(mem memory, codeType uint64, minor int) (codeLayout, error) {
	const tpBasicsize, tpMembers = 32, 240 // PyTypeObject, unchanged since 3.8
	var cl codeLayout
	basic, err := mem.u64(codeType + tpBasicsize)
	if err != nil {
		return cl, err
	}
	members, err := mem.u64(codeType + tpMembers)
	if err != nil || members == 0 {
		return cl, fmt.Errorf("no tp_members: %v", err)
	}
	want := map[string]*uint64{"co_filename": &cl.filename, "co_firstlineno": &cl.firstline}
	if minor >= 11 {
		want["co_qualname"] = &cl.name
		want["co_linetable"] = &cl.linetable
		cl.code = basic
	} else {
		want["co_name"] = &cl.name
		if minor == 10 {
			want["co_linetable"] = &cl.linetable
		} else {
			want["co_lnotab"] = &cl.linetable
		}
	}
	found := 0
	// PyMemberDef{const char *name; int type; Py_ssize_t offset; int flags; const char *doc}
	for i := uint64(0); i < 64 && found < len(want); i++ {
		var d [40]byte
		if err := mem.read(members+i*40, d[:]); err != nil {
			return cl, err
		}
		namePtr := binary.LittleEndian.Uint64(d[0:])
		if namePtr == 0 {
			break
		}
		name, err := mem.cstring(namePtr, 32)
		if err != nil {
			return cl, err
		}
		if p, ok := want[name]; ok {
			*p = binary.LittleEndian.Uint64(d[16:])
			found++
		}
	}
	if found < len(want) {
		return cl, fmt.Errorf("found %d of the %d code object members needed", found, len(want))
	}
	return cl, nil
}

// memory reads a process's memory.
type memory uint32

func (m memory) read(addr uint64, b []byte) error {
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(len(b))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	n, err := unix.ProcessVMReadv(int(m), local, remote, 0)
	if err != nil {
		return fmt.Errorf("read %d bytes at %#x of process %d: %w", len(b), addr, m, err)
	}
	if n != len(b) {
		return fmt.Errorf("read %d of %d bytes at %#x of process %d", n, len(b), addr, m)
	}
	return nil
}

func (m memory) u64(addr uint64) (uint64, error) {
	var b [8]byte
	err := m.read(addr, b[:])
	return binary.LittleEndian.Uint64(b[:]), err
}

func (m memory) u32(addr uint64) (uint32, error) {
	var b [4]byte
	err := m.read(addr, b[:])
	return binary.LittleEndian.Uint32(b[:]), err
}

// cstring reads a NUL-terminated string of at most max bytes.
func (m memory) cstring(addr uint64, max int) (string, error) {
	b := make([]byte, max)
	// The string may end near the end of a mapping: read what the page has.
	n := min(max, int(0x1000-addr&0xfff))
	if err := m.read(addr, b[:n]); err != nil {
		return "", err
	}
	if i := strings.IndexByte(string(b[:n]), 0); i >= 0 {
		return string(b[:i]), nil
	}
	if n < max {
		if err := m.read(addr+uint64(n), b[n:]); err == nil {
			n = max
		}
	}
	s := string(b[:n])
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	return s, nil
}
