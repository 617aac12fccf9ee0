package kbtf

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

func TestOffsets(t *testing.T) {
	raw := sample()
	tests := []struct {
		path string
		want uint32
	}{
		{"outer.a", 0},
		{"outer.x", 8},     // anonymous struct in anonymous union
		{"outer.y", 12},    // idem, at the inner struct's offset
		{"outer.z", 8},     // anonymous union
		{"outer.in", 16},   // typedef'd member
		{"outer.in.q", 20}, // followed through typedef and const
		{"outer.in.pad", 16},
		{"outer.ptr", 24},
		{"outer.wide", 33}, // a byte-aligned bitfield is fine
		{"outer.flags", 32},
		{"inner.q", 4}, // not the FWD nor the empty struct of the same name
	}
	for _, tt := range tests {
		got, err := Offsets(raw, tt.path)
		if err != nil {
			t.Errorf("%s: %v", tt.path, err)
			continue
		}
		if len(got) != 1 || got[0] != tt.want {
			t.Errorf("%s: got %v, want %d", tt.path, got, tt.want)
		}
	}

	// Several paths at once, repeating a struct name.
	paths := make([]string, len(tests))
	want := make([]uint32, len(tests))
	for i, tt := range tests {
		paths[i], want[i] = tt.path, tt.want
	}
	got, err := Offsets(raw, paths...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}

	if got, err := Offsets(raw); err != nil || len(got) != 0 {
		t.Errorf("no paths: got %v, %v", got, err)
	}
}

func TestOffsetsErrors(t *testing.T) {
	raw := sample()
	tests := []struct {
		path string
		want string // in the error, after "btf: path: "
	}{
		{"outer.mode", "bitfield at bit 259, not byte aligned"},
		{"nosuch.a", "no struct nosuch"},
		{"inne.q", "no struct inne"}, // a prefix of a real name
		{"outer.nosuch", "struct outer has no member nosuch"},
		{"outer.in.nosuch", "outer.in has no member nosuch"},
		{"outer.ptr.q", "member ptr is not a struct or union"}, // pointers are not followed
		{"outer.a.b", "member a is not a struct or union"},
		{"pid_t.x", "no struct pid_t"},
		{"lonely.a", "struct lonely has no member a"}, // empty, but there
		{"outer", "invalid path"},
		{"outer.", "invalid path"},
		{"outer..a", "invalid path"},
		{"", "invalid path"},
	}
	for _, tt := range tests {
		_, err := Offsets(raw, "outer.a", tt.path)
		if err == nil {
			t.Errorf("%q: no error", tt.path)
			continue
		}
		if prefix := "btf: " + tt.path + ": "; !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %q, want %q followed by %q", tt.path, err, prefix, tt.want)
		}
	}
}

// Before kind_flag, bitfields were members with an unaligned bit offset.
func TestLegacyBitfield(t *testing.T) {
	b := newBlob()
	u8 := b.intType("u8", 1)
	b.strct("s", 2, member{"a", u8, 0, 0}, member{"b", u8, 3, 0}, member{"c", u8, 8, 0})
	raw := b.bytes()
	if got, err := Offsets(raw, "s.c"); err != nil || got[0] != 1 {
		t.Errorf("s.c: got %v, %v", got, err)
	}
	if _, err := Offsets(raw, "s.b"); err == nil || !strings.Contains(err.Error(), "not byte aligned") {
		t.Errorf("s.b: got %v, want not byte aligned", err)
	}
}

func TestTruncated(t *testing.T) {
	raw := sample()
	for n := range len(raw) {
		// Must not panic; most prefixes lose part of a section.
		got, err := Offsets(raw[:n:n], "outer.in.q", "outer.y")
		if err == nil {
			t.Errorf("prefix of %d/%d bytes: got %v, want error", n, len(raw), got)
		} else if !strings.HasPrefix(err.Error(), "btf: outer.") {
			t.Errorf("prefix of %d bytes: error %q does not name a path", n, err)
		}
	}
}

func TestMalformed(t *testing.T) {
	le := binary.LittleEndian
	edit := func(f func(raw []byte)) []byte {
		raw := sample()
		f(raw)
		return raw
	}
	typeHdr := func(raw []byte, id int) []byte {
		// All types in sample() before "outer" are walked to find their sizes.
		off := headerLen
		for range id - 1 {
			r := &reader{types: raw[off:]}
			_, n, ok := r.typeSize(0)
			if !ok {
				panic(r.badType(0))
			}
			off += int(n)
		}
		return raw[off:]
	}
	tests := []struct {
		name string
		raw  []byte
		want string
	}{
		{"big endian", edit(func(raw []byte) { raw[0], raw[1] = 0xeb, 0x9f }), "big-endian"},
		{"bad magic", edit(func(raw []byte) { raw[0] = 0 }), "bad magic"},
		{"version", edit(func(raw []byte) { raw[2] = 2 }), "unsupported version"},
		{"hdr_len", edit(func(raw []byte) { le.PutUint32(raw[4:], 1<<31) }), "header length"},
		{"hdr_len short", edit(func(raw []byte) { le.PutUint32(raw[4:], 8) }), "header length"},
		{"type_len", edit(func(raw []byte) { le.PutUint32(raw[12:], 0xffffffff) }), "type section"},
		{"str_off", edit(func(raw []byte) { le.PutUint32(raw[16:], 0xffffffff) }), "string section"},
		{"unknown kind", edit(func(raw []byte) { typeHdr(raw, 1)[7] = 20 }), "unknown kind 20"},
		{"kind 0", edit(func(raw []byte) { typeHdr(raw, 1)[7] = 0 }), "unknown kind 0"},
		{"member type out of range", edit(func(raw []byte) {
			le.PutUint32(typeHdr(raw, 12)[12+2*12+4:], 1000) // outer.in's type
		}), "type id 1000 beyond last type"},
		{"anonymous member type out of range", edit(func(raw []byte) {
			le.PutUint32(typeHdr(raw, 6)[12:], 0) // inner.pad loses its name
			le.PutUint32(typeHdr(raw, 6)[12+4:], 1000)
		}), "type id 1000 beyond last type"},
		{"member type void", edit(func(raw []byte) {
			le.PutUint32(typeHdr(raw, 7)[8:], 0) // const -> void
		}), "type id 0"},
		{"member name out of range", edit(func(raw []byte) {
			le.PutUint32(typeHdr(raw, 6)[12:], 1<<30) // inner.pad's name
		}), "beyond string section"},
	}
	for _, tt := range tests {
		_, err := Offsets(tt.raw, "outer.in.q")
		if err == nil || !strings.HasPrefix(err.Error(), "btf: outer.in.q: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got error %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestCycles(t *testing.T) {
	// typedef a a; struct s { a m; };
	b := newBlob()
	self, at := b.placeholder()
	b.patchType(at, self)
	b.strct("s", 4, member{"m", self, 0, 0})
	if _, err := Offsets(b.bytes(), "s.m.x"); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("qualifier cycle: got %v", err)
	}

	// struct s { union { <this union> }; int m; } through an unnamed member.
	b = newBlob()
	intID := b.intType("int", 4)
	fwd, at := b.placeholder()
	u := b.union("", 4, member{"", fwd, 0, 0})
	b.patchType(at, u)
	b.strct("s", 4, member{"", u, 0, 0}, member{"m", intID, 0, 0})
	if _, err := Offsets(b.bytes(), "s.m"); err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Errorf("anonymous member cycle: got %v", err)
	}

	// union u0 { union u1; union u1; }; union u1 { union u2; union u2; }...
	// is no cycle and within the depth limit, yet has 2^30 leaves.
	b = newBlob()
	intID = b.intType("int", 4)
	u = b.union("", 4, member{"x", intID, 0, 0})
	for range 30 {
		u = b.union("", 4, member{"", u, 0, 0}, member{"", u, 0, 0})
	}
	b.strct("s", 4, member{"", u, 0, 0}, member{"m", intID, 0, 0})
	if _, err := Offsets(b.bytes(), "s.m"); err == nil || !strings.Contains(err.Error(), "members in anonymous members") {
		t.Errorf("anonymous member fan-out: got %v", err)
	}
}

// Type ids are found again through checkpoints every stride types; ids
// beyond the first few strides must land on the right record.
func TestManyTypes(t *testing.T) {
	b := newBlob()
	var ids []uint32
	for i := range 5 * stride {
		ids = append(ids, b.strct("", uint32(i+1)*8,
			member{"pad", 0, 0, 0},
			member{"f", 0, uint32(i) * 8, 0}))
		b.typ(kindFunc, false, 0, "fn", 0) // interleaved with other kinds
		b.typ(kindFuncProto, false, 2, "", 0)
		b.u32(0, 0, 0, 0)
	}
	var ms []member
	for i, id := range ids {
		ms = append(ms, member{name: "m" + string(rune('a'+i%26)) + string(rune('a'+i/26)), typ: id, bits: uint32(i) * 1024})
	}
	b.strct("big", uint32(len(ids))*128, ms...)
	raw := b.bytes()
	for i := range ids {
		path := "big." + ms[i].name + ".f"
		got, err := Offsets(raw, path)
		if want := uint32(i)*128 + uint32(i); err != nil || got[0] != want {
			t.Fatalf("%s: got %v, %v, want %d", path, got, err, want)
		}
	}
}

func FuzzOffsets(f *testing.F) {
	raw := sample()
	f.Add(raw, "outer.in.q")
	f.Add(raw, "outer.y")
	f.Add(raw[:len(raw)/2], "outer.a")
	f.Add(raw[:headerLen+30], "inner.q")
	f.Add(replaceStr(raw, "outer", "outex"), "outer.in.q")

	b := newBlob()
	self, at := b.placeholder()
	b.patchType(at, self)
	b.strct("s", 4, member{"", self, 0, 0}, member{"m", self, 0, 0})
	f.Add(b.bytes(), "s.m.x")

	f.Fuzz(func(t *testing.T, raw []byte, path string) {
		paths := []string{path, "outer.y", "s.m"}
		got, err := Offsets(raw, paths...)
		if err == nil && len(got) != len(paths) {
			t.Fatalf("got %d offsets for %d paths", len(got), len(paths))
		}
		if err != nil && !strings.HasPrefix(err.Error(), "btf: ") {
			t.Fatalf("error without prefix: %v", err)
		}
	})
}

// Newer headers may be longer; section offsets count from hdr_len.
func TestLongerHeader(t *testing.T) {
	raw := sample()
	long := append(append(append([]byte{}, raw[:headerLen]...), make([]byte, 8)...), raw[headerLen:]...)
	binary.LittleEndian.PutUint32(long[4:], headerLen+8)
	got, err := Offsets(long, "outer.in.q")
	if err != nil || got[0] != 20 {
		t.Errorf("got %v, %v, want [20]", got, err)
	}
}
