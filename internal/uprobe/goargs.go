package uprobe

import (
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"os"
)

// GoKind classes a Go parameter or result by how the register ABI
// (ABIInternal, Go 1.17+) passes it: in how many integer registers, or in
// floating-point ones.
type GoKind int

const (
	GoWord      GoKind = iota // ints, bool, pointers, maps, chans, funcs: one integer register
	GoString                  // pointer and length: two
	GoSlice                   // pointer, length and capacity: three
	GoInterface               // type (itab or _type) and data pointers: two
	GoFloat                   // floats and complex numbers: X registers, not read
	GoOther                   // structs and arrays: laid out field by field, not read
)

func (k GoKind) String() string {
	switch k {
	case GoWord:
		return "word"
	case GoString:
		return "string"
	case GoSlice:
		return "slice"
	case GoInterface:
		return "interface"
	case GoFloat:
		return "float"
	}
	return "struct or array"
}

// GoParam is one parameter or result of a Go function, from DWARF.
type GoParam struct {
	Name string // "~r0" for an unnamed result
	Type string // as DWARF names it: "int", "string", "error", "*main.T"
	Kind GoKind
	Size int64 // bytes, 0 when unknown
	// Words is how many integer registers it takes: 0 for floats and
	// empty structs, -1 when unknown (structs and arrays are laid out
	// field by field, or on the stack).
	Words int
}

// GoSignature is a Go function's parameters (a method's receiver first)
// and results, in order.
type GoSignature struct {
	Params, Results []GoParam
}

// ErrNoDWARF is GoSignatures' error for a binary without DWARF
// (-ldflags=-s or -w).
var ErrNoDWARF = errors.New("no DWARF debugging information")

// dwGoKind is DW_AT_go_kind, Go's own attribute: the reflect.Kind of a
// type.
const dwGoKind dwarf.Attr = 0x2900

// reflect.Kind values DW_AT_go_kind holds.
const (
	kindFloat32       = 13
	kindComplex128    = 16
	kindArray         = 17
	kindInterface     = 20
	kindSlice         = 23
	kindString        = 24
	kindStruct        = 25
	kindUnsafePointer = 26
)

// GoSignatures reads the signatures of the named functions of the Go
// binary at path from its DWARF; functions it does not describe are left
// out.
func GoSignatures(path string, names []string) (map[string]GoSignature, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ef, err := newELF(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if ef.Section(".debug_info") == nil && ef.Section(".zdebug_info") == nil {
		return nil, fmt.Errorf("%s: %w", path, ErrNoDWARF)
	}
	sigs, err := goSignatures(ef, names)
	if err != nil {
		return nil, fmt.Errorf("%s: DWARF: %w", path, err)
	}
	return sigs, nil
}

func goSignatures(ef *elf.File, names []string) (sigs map[string]GoSignature, err error) {
	// debug/dwarf trusts its input; a crafted binary must give an
	// error, not a panic.
	defer func() {
		if r := recover(); r != nil {
			sigs, err = nil, fmt.Errorf("malformed: %v", r)
		}
	}()
	d, err := ef.DWARF()
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	sigs = map[string]GoSignature{}
	r := d.Reader()
	for len(sigs) < len(want) {
		e, err := r.Next()
		if err != nil {
			return nil, err
		}
		if e == nil {
			break
		}
		switch {
		case e.Tag == dwarf.TagCompileUnit:
		case e.Tag == dwarf.TagSubprogram:
			name, _ := e.Val(dwarf.AttrName).(string)
			if !want[name] || !e.Children {
				if e.Children {
					r.SkipChildren()
				}
				continue
			}
			sig, err := readParams(d, r)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			sigs[name] = sig
		case e.Children:
			r.SkipChildren()
		}
	}
	return sigs, nil
}

// readParams reads the formal parameters among the children of the
// subprogram r has just read.
func readParams(d *dwarf.Data, r *dwarf.Reader) (GoSignature, error) {
	var sig GoSignature
	for {
		e, err := r.Next()
		if err != nil {
			return sig, err
		}
		if e == nil || e.Tag == 0 {
			return sig, nil
		}
		if e.Children {
			r.SkipChildren()
		}
		if e.Tag != dwarf.TagFormalParameter {
			continue
		}
		p := GoParam{Kind: GoOther, Words: -1}
		p.Name, _ = e.Val(dwarf.AttrName).(string)
		if off, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
			p.Type, p.Kind, p.Words, p.Size = classify(d, off)
		}
		if result, _ := e.Val(dwarf.AttrVarParam).(bool); result {
			sig.Results = append(sig.Results, p)
		} else {
			sig.Params = append(sig.Params, p)
		}
	}
}

// classify names the type at off and says how the register ABI passes
// it, from Go's DW_AT_go_kind (the first one met along typedefs).
func classify(d *dwarf.Data, off dwarf.Offset) (string, GoKind, int, int64) {
	var size int64
	r := d.Reader()
	name := ""
	for range 8 { // typedef chains are short; a loop in a crafted file is not
		r.Seek(off)
		e, err := r.Next()
		if err != nil || e == nil {
			return name, GoOther, -1, size
		}
		if name == "" {
			name, _ = e.Val(dwarf.AttrName).(string)
		}
		kind, ok := e.Val(dwGoKind).(int64)
		if !ok {
			// No Go kind (a typedef without one): follow it.
			next, ok := e.Val(dwarf.AttrType).(dwarf.Offset)
			if !ok {
				return name, GoOther, -1, size
			}
			off = next
			continue
		}
		size, _ = e.Val(dwarf.AttrByteSize).(int64)
		switch {
		case kind == kindString:
			return name, GoString, 2, size
		case kind == kindSlice:
			return name, GoSlice, 3, size
		case kind == kindInterface:
			return name, GoInterface, 2, 16
		case kind >= kindFloat32 && kind <= kindComplex128:
			return name, GoFloat, 0, size
		case kind == kindArray || kind == kindStruct:
			if size == 0 {
				return name, GoOther, 0, 0 // struct{}, [0]T: no register
			}
			return name, GoOther, -1, size
		case kind >= 1 && kind <= kindUnsafePointer:
			if size > 8 {
				return name, GoOther, -1, size
			}
			if size == 0 {
				size = 8 // pointers, maps, chans and funcs have no DW_AT_byte_size
			}
			return name, GoWord, 1, size
		}
		return name, GoOther, -1, size
	}
	return name, GoOther, -1, size
}
