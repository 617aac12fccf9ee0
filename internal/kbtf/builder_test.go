package kbtf

import (
	"encoding/binary"
	"strings"
)

// blob builds small BTF blobs by hand, so the tests can construct exactly the
// layouts (anonymous unions, typedef chains, bitfields, malformed records)
// that the kernel's BTF may or may not happen to contain.
type blob struct {
	types  []byte
	strs   []byte
	nextID uint32
	names  map[string]uint32
}

func newBlob() *blob {
	return &blob{strs: []byte{0}, nextID: 1, names: map[string]uint32{"": 0}}
}

func (b *blob) str(s string) uint32 {
	if off, ok := b.names[s]; ok {
		return off
	}
	off := uint32(len(b.strs))
	b.strs = append(append(b.strs, s...), 0)
	b.names[s] = off
	return off
}

func (b *blob) u32(vs ...uint32) {
	for _, v := range vs {
		b.types = binary.LittleEndian.AppendUint32(b.types, v)
	}
}

// typ appends a type header and returns the new type's id; the caller
// appends the kind-specific data.
func (b *blob) typ(kind uint32, flag bool, vlen int, name string, sizeOrType uint32) uint32 {
	info := kind<<24 | uint32(vlen)
	if flag {
		info |= 1 << 31
	}
	b.u32(b.str(name), info, sizeOrType)
	id := b.nextID
	b.nextID++
	return id
}

func (b *blob) intType(name string, size uint32) uint32 {
	id := b.typ(kindInt, false, 0, name, size)
	b.u32(size * 8) // encoding: bits
	return id
}

func (b *blob) ptr(to uint32) uint32 { return b.typ(kindPtr, false, 0, "", to) }

func (b *blob) typedef(name string, to uint32) uint32 {
	return b.typ(kindTypedef, false, 0, name, to)
}

type member struct {
	name string
	typ  uint32
	bits uint32 // bit offset
	size uint32 // bitfield size, only with kind_flag
}

func (b *blob) composite(kind uint32, name string, size uint32, flag bool, ms ...member) uint32 {
	id := b.typ(kind, flag, len(ms), name, size)
	for _, m := range ms {
		off := m.bits
		if flag {
			off |= m.size << 24
		}
		b.u32(b.str(m.name), m.typ, off)
	}
	return id
}

func (b *blob) strct(name string, size uint32, ms ...member) uint32 {
	return b.composite(kindStruct, name, size, false, ms...)
}

func (b *blob) union(name string, size uint32, ms ...member) uint32 {
	return b.composite(kindUnion, name, size, false, ms...)
}

// placeholder reserves an id whose record is filled in later via patch, for
// types that refer forward.
func (b *blob) placeholder() (id uint32, at int) {
	at = len(b.types)
	return b.typ(kindConst, false, 0, "", 0), at
}

// patchType points the 12-byte type record at byte offset at to typ.
func (b *blob) patchType(at int, typ uint32) {
	binary.LittleEndian.PutUint32(b.types[at+8:], typ)
}

func (b *blob) bytes() []byte {
	var h []byte
	le := binary.LittleEndian
	h = le.AppendUint16(h, magic)
	h = append(h, version, 0)
	h = le.AppendUint32(h, headerLen)
	h = le.AppendUint32(h, 0)                    // type_off
	h = le.AppendUint32(h, uint32(len(b.types))) // type_len
	h = le.AppendUint32(h, uint32(len(b.types))) // str_off
	h = le.AppendUint32(h, uint32(len(b.strs)))  // str_len
	return append(append(h, b.types...), b.strs...)
}

// sample is a blob exercising the features Offsets handles:
//
//	typedef int pid_t;
//	struct inner;                       // FWD before the definition
//	struct inner { int pad; pid_t q; }; // q at 4
//	typedef const struct inner inner_t;
//	struct outer {                      // size 48
//		long a;                         // 0
//		union {                         // 8
//			struct { int x; int y; };   // x 8, y 12
//			long z;                     // 8
//		};
//		inner_t in;                     // 16; in.q at 20
//		struct inner *ptr;              // 24
//		unsigned flags:3, mode:5;       // bits 256 and 259
//		unsigned wide:8;                // bit 264 (byte 33)
//	};
//	struct lonely {};
func sample() []byte {
	b := newBlob()
	intID := b.intType("int", 4)
	longID := b.intType("long", 8)
	pidT := b.typedef("pid_t", intID)
	b.typ(kindFwd, false, 0, "inner", 0)
	b.strct("inner", 0) // an empty definition is passed over too
	inner := b.strct("inner", 8, member{"pad", intID, 0, 0}, member{"q", pidT, 32, 0})
	constInner := b.typ(kindConst, false, 0, "", inner)
	innerT := b.typedef("inner_t", constInner)
	anonStruct := b.strct("", 8, member{"x", intID, 0, 0}, member{"y", intID, 32, 0})
	anonUnion := b.union("", 8, member{"", anonStruct, 0, 0}, member{"z", longID, 0, 0})
	ptr := b.ptr(inner)
	b.composite(kindStruct, "outer", 48, true,
		member{"a", longID, 0, 0},
		member{"", anonUnion, 64, 0},
		member{"in", innerT, 128, 0},
		member{"ptr", ptr, 192, 0},
		member{"flags", intID, 256, 3},
		member{"mode", intID, 259, 5},
		member{"wide", intID, 264, 8},
	)
	b.strct("lonely", 0)
	return b.bytes()
}

// replaceStr returns raw with the first occurrence of old in it replaced by
// new of the same length, to break names in the string section.
func replaceStr(raw []byte, old, new string) []byte {
	return []byte(strings.Replace(string(raw), old, new, 1))
}
