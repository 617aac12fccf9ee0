package probe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// CO-RE against a few kernel types instead of all of them.
//
// cilium/ebpf relocates a program's CO-RE accesses against the whole kernel
// BTF: it decodes /sys/kernel/btf/vmlinux and, to look at one member of
// task_struct or sock, inflates the type graph reachable from it (most of
// the kernel's 100k+ types), 25-50 ms and several MB at every start of
// tcpaccept or tcpreset. The relocations only ever look at the kernel types
// named like their root types, at the members their accessors name, and at
// the kinds and sizes of the types found there. kernelTypes reads the raw
// BTF in place and builds just that: each candidate root type, with only
// the members on some accessor's path (and the last member, which decides
// whether an array member may be flexible), their offsets and bitfields, and
// every other type reached only as far as its kind and size. cilium then
// computes the same fixups from it (checked by TestKernelTypesSameFixups for
// every CO-RE program of every tool).
//
// Relocations that need the kernel's own type ids (bpf_core_type_id_kernel)
// or the whole shape of a type (bpf_core_type_matches) are not reduced: the
// load then gets the full kernel spec, as does any error here.

// errFullSpec means the relocations need more than kernelTypes builds.
var errFullSpec = errors.New("relocations need the full kernel BTF")

// coreRelo is what kernelTypes needs of a btf.CORERelocation, whose fields
// cilium/ebpf v0.22 keeps unexported: the local root type, the relocation's
// kind and the accessor (member and array indices from the root).
type coreRelo struct {
	local    btf.Type
	kind     string
	accessor []int
}

// programRelos collects the CO-RE relocations of every program in cs.
func programRelos(cs *ebpf.CollectionSpec) ([]coreRelo, error) {
	var relos []coreRelo
	for _, p := range cs.Programs {
		for i := range p.Instructions {
			r := btf.CORERelocationMetadata(&p.Instructions[i])
			if r == nil {
				continue
			}
			relo, err := parseRelo(cs.Types, r)
			if err != nil {
				return nil, fmt.Errorf("program %s: %w", p.Name, err)
			}
			relos = append(relos, relo)
		}
	}
	return relos, nil
}

// parseRelo reads a relocation from its String form,
// "CORERelocation(byte_off, Struct:\"sock\"[0:1:2], local_id=42)", and
// finds its local type by id. Any other form fails, so a cilium/ebpf that
// prints relocations differently gets the full spec, not wrong offsets.
func parseRelo(local *btf.Spec, r *btf.CORERelocation) (coreRelo, error) {
	s := r.String()
	bad := func() (coreRelo, error) { return coreRelo{}, fmt.Errorf("unexpected relocation %q", s) }
	rest, ok := strings.CutPrefix(s, "CORERelocation(")
	if !ok {
		return bad()
	}
	kind, rest, ok := strings.Cut(rest, ", ")
	if !ok {
		return bad()
	}
	i := strings.LastIndex(rest, ", local_id=")
	if i < 0 || !strings.HasSuffix(rest, ")") {
		return bad()
	}
	id, err := strconv.ParseUint(rest[i+len(", local_id="):len(rest)-1], 10, 32)
	if err != nil {
		return bad()
	}
	rest = rest[:i]
	open := strings.LastIndexByte(rest, '[')
	if open < 0 || !strings.HasSuffix(rest, "]") {
		return bad()
	}
	var acc []int
	for _, f := range strings.Split(rest[open+1:len(rest)-1], ":") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return bad()
		}
		acc = append(acc, n)
	}
	typ, err := local.TypeByID(btf.TypeID(id))
	if err != nil {
		return coreRelo{}, fmt.Errorf("relocation %q: %w", s, err)
	}
	if rest[:open] != fmt.Sprintf("%s", typ) {
		return bad()
	}
	return coreRelo{local: typ, kind: kind, accessor: acc}, nil
}

// kernelTypes returns the kernel types relos need from raw, the kernel's
// BTF.
func kernelTypes(relos []coreRelo, raw []byte) (*btf.Spec, error) {
	names := map[string]bool{}
	for _, r := range relos {
		switch r.kind {
		case "local_type_id":
			continue // no kernel type involved
		case "target_type_id", "type_matches":
			return nil, fmt.Errorf("%s relocation: %w", r.kind, errFullSpec)
		}
		name := essential(r.local.TypeName())
		if name == "" {
			return nil, fmt.Errorf("relocation of an unnamed type: %w", errFullSpec)
		}
		names[name] = true
	}
	k, cands, err := newRawBTF(raw, names)
	if err != nil {
		return nil, err
	}
	p := pruner{k: k, keep: map[uint32]map[int]bool{}}
	var roots []uint32
	for _, r := range relos {
		if r.kind == "local_type_id" {
			continue
		}
		for _, id := range cands[essential(r.local.TypeName())] {
			roots = append(roots, id)
			if strings.HasPrefix(r.kind, "enumval") || r.kind == "type_exists" || r.kind == "type_size" {
				continue // the root alone: its kind, size, enum values
			}
			// Accessors that fail on this candidate are left out: cilium
			// finds the same failure (no member of that name, a kind that
			// does not match) on the pruned type as on the full one.
			p.follow(r.local, r.accessor, id)
		}
	}
	types := make([]btf.Type, 0, len(roots))
	m := materializer{k: k, keep: p.keep, done: map[uint32]btf.Type{}}
	for _, id := range roots {
		if _, dup := m.done[id]; dup {
			continue
		}
		t, err := m.typ(id)
		if err != nil {
			return nil, err
		}
		types = append(types, t)
	}
	b, err := btf.NewBuilder(types, nil)
	if err != nil {
		return nil, fmt.Errorf("build kernel types: %w", err)
	}
	spec, err := b.Spec()
	if err != nil {
		return nil, fmt.Errorf("build kernel types: %w", err)
	}
	return spec, nil
}

// kernelTypes returns the kernel types the CO-RE relocations of cs need,
// or nil for the whole kernel BTF: when cs has no relocations (cilium then
// never reads it), or when they cannot be reduced (see errFullSpec) or
// anything here fails. Never an error: the full spec is always correct,
// only slower.
func (r *Runtime) kernelTypes(cs *ebpf.CollectionSpec) *btf.Spec {
	if r.FullKernelTypes {
		return nil
	}
	relos, err := programRelos(cs)
	if err != nil || len(relos) == 0 {
		return nil
	}
	raw, release, err := kernelBTF()
	if err != nil {
		return nil
	}
	defer release()
	spec, err := kernelTypes(relos, raw)
	if err != nil {
		return nil
	}
	return spec
}

// essential strips a CO-RE flavour suffix ("sock___old" → "sock"), as
// cilium/ebpf does when it looks up candidates.
func essential(name string) string {
	if i := strings.LastIndex(name, "___"); i > 0 {
		return name[:i]
	}
	return name
}

// pruner records, per kernel composite type id, the members some accessor
// goes through.
type pruner struct {
	k    *rawBTF
	keep map[uint32]map[int]bool
}

// follow walks the local type along acc as cilium's coreFindField does and
// the kernel type id along with it, keeping each kernel member it finds by
// name (through anonymous members as C does). It stops where the kernel
// type has no such member or is of another shape.
func (p *pruner) follow(local btf.Type, acc []int, id uint32) {
	for _, a := range acc[1:] {
		id = p.k.underlying(id)
		switch lt := btf.UnderlyingType(local).(type) {
		case *btf.Struct, *btf.Union:
			var members []btf.Member
			if s, ok := lt.(*btf.Struct); ok {
				members = s.Members
			} else {
				members = lt.(*btf.Union).Members
			}
			if a >= len(members) {
				return
			}
			m := members[a]
			local = m.Type
			if m.Name == "" {
				continue // anonymous in the local type: no step in the kernel's
			}
			next, ok := p.member(id, m.Name)
			if !ok {
				return
			}
			id = next
		case *btf.Array:
			kind, _, _, _ := p.k.header(id)
			if kind != kindArray {
				return
			}
			local = lt.Type
			id = p.k.arrayElem(id)
		default:
			return
		}
	}
}

// member finds the member called name in the kernel composite id (searching
// anonymous members breadth first, as cilium's coreFindMember does), keeps
// it and the anonymous members leading to it, and returns its type.
func (p *pruner) member(id uint32, name string) (uint32, bool) {
	type step struct {
		id   uint32
		path []struct {
			id  uint32
			idx int
		}
	}
	queue := []step{{id: id}}
	seen := map[uint32]bool{}
	for len(queue) > 0 && len(seen) < 64 {
		s := queue[0]
		queue = queue[1:]
		cid := p.k.underlying(s.id)
		if seen[cid] {
			continue
		}
		seen[cid] = true
		kind, _, vlen, _ := p.k.header(cid)
		if kind != kindStruct && kind != kindUnion {
			continue
		}
		for i := 0; i < vlen; i++ {
			mname, mtype, _ := p.k.member(cid, i)
			if mname == name {
				for _, e := range s.path {
					p.mark(e.id, e.idx)
				}
				p.mark(cid, i)
				return mtype, true
			}
			if mname == "" {
				path := append(append([]struct {
					id  uint32
					idx int
				}{}, s.path...), struct {
					id  uint32
					idx int
				}{cid, i})
				queue = append(queue, step{id: mtype, path: path})
			}
		}
	}
	return 0, false
}

func (p *pruner) mark(id uint32, idx int) {
	if p.keep[id] == nil {
		p.keep[id] = map[int]bool{}
	}
	p.keep[id][idx] = true
}

// materializer turns kernel type ids into cilium types: composites with
// only their kept members (and their last one), everything else whole
// except through composites, where only the kind and size remain.
type materializer struct {
	k    *rawBTF
	keep map[uint32]map[int]bool
	done map[uint32]btf.Type
}

// sizeType is what array indices are typed with: cilium only checks that
// local and target have the same kind there.
var sizeType = &btf.Int{Name: "__ARRAY_SIZE_TYPE__", Size: 4}

func (m *materializer) typ(id uint32) (btf.Type, error) {
	if id == 0 {
		return (*btf.Void)(nil), nil
	}
	if t, ok := m.done[id]; ok {
		return t, nil
	}
	if len(m.done) > 1<<16 {
		return nil, fmt.Errorf("kernel types: too many reached from the relocations")
	}
	k := m.k
	kind, nameOff, vlen, sizeOrType := k.header(id)
	name := k.str(nameOff)
	var err error
	switch kind {
	case kindInt:
		enc := k.u32(k.off(id) + typeHeaderLen)
		t := &btf.Int{Name: name, Size: sizeOrType, Encoding: btf.IntEncoding(enc >> 24 & 0xf)}
		m.done[id] = t
		return t, nil
	case kindFloat:
		t := &btf.Float{Name: name, Size: sizeOrType}
		m.done[id] = t
		return t, nil
	case kindFwd:
		fk := btf.FwdStruct
		if k.kindFlag(id) {
			fk = btf.FwdUnion
		}
		t := &btf.Fwd{Name: name, Kind: fk}
		m.done[id] = t
		return t, nil
	case kindEnum, kindEnum64:
		t := &btf.Enum{Name: name, Size: sizeOrType, Signed: k.kindFlag(id)}
		m.done[id] = t
		data := k.off(id) + typeHeaderLen
		for i := 0; i < vlen; i++ {
			var v uint64
			var vname string
			if kind == kindEnum {
				vname = k.str(k.u32(data))
				raw := k.u32(data + 4)
				v = uint64(raw)
				if t.Signed {
					v = uint64(int32(raw))
				}
				data += 8
			} else {
				vname = k.str(k.u32(data))
				v = uint64(k.u32(data+4)) | uint64(k.u32(data+8))<<32
				data += 12
			}
			t.Values = append(t.Values, btf.EnumValue{Name: vname, Value: v})
		}
		return t, nil
	case kindPtr:
		t := &btf.Pointer{}
		m.done[id] = t
		t.Target, err = m.typ(sizeOrType)
		return t, err
	case kindTypedef:
		t := &btf.Typedef{Name: name}
		m.done[id] = t
		t.Type, err = m.typ(sizeOrType)
		return t, err
	case kindConst:
		t := &btf.Const{}
		m.done[id] = t
		t.Type, err = m.typ(sizeOrType)
		return t, err
	case kindVolatile:
		t := &btf.Volatile{}
		m.done[id] = t
		t.Type, err = m.typ(sizeOrType)
		return t, err
	case kindRestrict:
		t := &btf.Restrict{}
		m.done[id] = t
		t.Type, err = m.typ(sizeOrType)
		return t, err
	case kindTypeTag:
		// A type tag only annotates; cilium skips it like a qualifier.
		t, err := m.typ(sizeOrType)
		m.done[id] = t
		return t, err
	case kindArray:
		data := k.off(id) + typeHeaderLen
		t := &btf.Array{Index: sizeType, Nelems: k.u32(data + 8)}
		m.done[id] = t
		t.Type, err = m.typ(k.u32(data))
		return t, err
	case kindFuncProto:
		t := &btf.FuncProto{}
		m.done[id] = t
		if t.Return, err = m.typ(sizeOrType); err != nil {
			return nil, err
		}
		data := k.off(id) + typeHeaderLen
		for i := 0; i < vlen; i++ {
			pt, err := m.typ(k.u32(data + 4))
			if err != nil {
				return nil, err
			}
			t.Params = append(t.Params, btf.FuncParam{Name: k.str(k.u32(data)), Type: pt})
			data += 8
		}
		return t, nil
	case kindStruct, kindUnion:
		var members *[]btf.Member
		var t btf.Type
		if kind == kindStruct {
			s := &btf.Struct{Name: name, Size: sizeOrType}
			t, members = s, &s.Members
		} else {
			u := &btf.Union{Name: name, Size: sizeOrType}
			t, members = u, &u.Members
		}
		m.done[id] = t
		keep := m.keep[id]
		for i := 0; i < vlen; i++ {
			if !keep[i] && i != vlen-1 {
				continue
			}
			mname, mtype, moff := k.member(id, i)
			mem := btf.Member{Name: mname, Offset: btf.Bits(moff)}
			if k.kindFlag(id) {
				mem.BitfieldSize = btf.Bits(moff >> 24)
				mem.Offset &= 0xffffff
			} else if ik, _, _, isize := k.header(mtype); ik == kindInt {
				// A bitfield of the old encoding, in the int's own
				// offset and width (as cilium's decoder reads it).
				enc := k.u32(k.off(mtype) + typeHeaderLen)
				if bits, off := enc&0xff, enc>>16&0xff; off > 0 || bits != isize*8 {
					mem.Offset += btf.Bits(off)
					mem.BitfieldSize = btf.Bits(bits)
				}
			}
			if mem.Type, err = m.typ(mtype); err != nil {
				return nil, err
			}
			*members = append(*members, mem)
		}
		return t, nil
	default:
		return nil, fmt.Errorf("kernel type %d: kind %d reached from a relocation", id, kind)
	}
}

// BTF kinds (include/uapi/linux/btf.h).
const (
	kindInt       = 1
	kindPtr       = 2
	kindArray     = 3
	kindStruct    = 4
	kindUnion     = 5
	kindEnum      = 6
	kindFwd       = 7
	kindTypedef   = 8
	kindVolatile  = 9
	kindConst     = 10
	kindRestrict  = 11
	kindFunc      = 12
	kindFuncProto = 13
	kindVar       = 14
	kindDatasec   = 15
	kindFloat     = 16
	kindDeclTag   = 17
	kindTypeTag   = 18
	kindEnum64    = 19

	typeHeaderLen = 12
)

// rawBTF reads an unsplit little-endian BTF blob in place, by type id.
// It keeps the offset of every 64th type only (the kernel has 100k+): a
// lookup steps over at most 63 records, and is remembered.
type rawBTF struct {
	types, strs []byte
	marks       []uint32          // offset in types of type id 64*i+1
	n           uint32            // number of types
	offs        map[uint32]uint32 // offsets looked up
}

const markStride = 64

// newRawBTF checks raw's header and steps over all its types once, which
// also finds the ids of the types whose essential names are in names, of
// the kinds a relocation can resolve to.
func newRawBTF(raw []byte, names map[string]bool) (*rawBTF, map[string][]uint32, error) {
	if len(raw) < 24 || binary.LittleEndian.Uint16(raw) != 0xeb9f || raw[2] != 1 {
		return nil, nil, errors.New("kernel BTF: not little-endian BTF version 1")
	}
	le := binary.LittleEndian
	hdr, toff, tlen, soff, slen := le.Uint32(raw[4:]), le.Uint32(raw[8:]), le.Uint32(raw[12:]), le.Uint32(raw[16:]), le.Uint32(raw[20:])
	end := func(off, n uint32) uint64 { return uint64(hdr) + uint64(off) + uint64(n) }
	if end(toff, tlen) > uint64(len(raw)) || end(soff, slen) > uint64(len(raw)) {
		return nil, nil, errors.New("kernel BTF: sections out of bounds")
	}
	k := &rawBTF{types: raw[hdr+toff : hdr+toff+tlen], strs: raw[hdr+soff : hdr+soff+slen], offs: map[uint32]uint32{}}
	k.marks = make([]uint32, 0, len(k.types)/(40*markStride)+1)
	found := map[string][]uint32{}
	// The first two bytes of every wanted name, as a bitmap: nearly every
	// type's name fails this before its length is even known.
	var firsts [1 << 16 / 64]uint64
	for n := range names {
		b := append([]byte(n), 0, 0)
		i := uint16(b[0])<<8 | uint16(b[1])
		firsts[i/64] |= 1 << (i % 64)
		if len(n) == 1 { // "a___x" is an "a" too
			i = uint16(b[0])<<8 | '_'
			firsts[i/64] |= 1 << (i % 64)
		}
	}
	types := k.types
	for off := uint32(0); off < uint32(len(types)); {
		if off+typeHeaderLen > uint32(len(types)) {
			return nil, nil, fmt.Errorf("kernel BTF: truncated type at %d", off)
		}
		if k.n%markStride == 0 {
			k.marks = append(k.marks, off)
		}
		k.n++
		info := le.Uint32(types[off+4:])
		kind := info >> 24 & 0x1f
		n, ok := dataLen(kind, info&0xffff)
		if !ok {
			return nil, nil, fmt.Errorf("kernel BTF: unknown kind %d", kind)
		}
		if rootKinds>>kind&1 != 0 {
			if name, ok := k.wanted(le.Uint32(types[off:]), &firsts, names); ok {
				found[name] = append(found[name], k.n)
			}
		}
		off += typeHeaderLen + n
		if off > uint32(len(types)) {
			return nil, nil, fmt.Errorf("kernel BTF: truncated type %d", k.n)
		}
	}
	return k, found, nil
}

// wanted returns the essential name at string offset no if it is in names.
func (k *rawBTF) wanted(no uint32, firsts *[1 << 16 / 64]uint64, names map[string]bool) (string, bool) {
	if no == 0 || no+1 >= uint32(len(k.strs)) {
		return "", false
	}
	if i := uint16(k.strs[no])<<8 | uint16(k.strs[no+1]); firsts[i/64]&(1<<(i%64)) == 0 {
		return "", false
	}
	name := k.strBytes(no)
	if j := bytes.LastIndex(name, []byte("___")); j > 0 {
		name = name[:j]
	}
	if !names[string(name)] {
		return "", false
	}
	return string(name), true
}

// Sizes of the kind-specific data after a type header, in units of 4 bytes,
// two bits per kind: fixed data, and data per vlen entry. Looked up rather
// than switched on: the kinds of consecutive types follow no pattern, and a
// mispredicted branch per type would be most of the scan's time (as
// internal/kbtf found).
const (
	fixedWords uint64 = 1<<(2*kindInt) | 3<<(2*kindArray) | 1<<(2*kindVar) | 1<<(2*kindDeclTag)
	entryWords uint64 = 3<<(2*kindStruct) | 3<<(2*kindUnion) | 2<<(2*kindEnum) |
		2<<(2*kindFuncProto) | 3<<(2*kindDatasec) | 3<<(2*kindEnum64)
	knownKinds uint32 = 1<<(kindEnum64+1) - 1<<kindInt // kinds 1 to 19
	// The kinds a relocation's root can resolve to.
	rootKinds uint32 = 1<<kindInt | 1<<kindStruct | 1<<kindUnion | 1<<kindEnum | 1<<kindFwd |
		1<<kindTypedef | 1<<kindFloat | 1<<kindEnum64
)

// dataLen is the length of the kind-specific data after a type header.
func dataLen(kind, vlen uint32) (uint32, bool) {
	fixed := uint32(fixedWords>>(2*kind)) & 3
	entry := uint32(entryWords>>(2*kind)) & 3
	return 4 * (fixed + entry*vlen), knownKinds>>kind&1 != 0
}

func (k *rawBTF) u32(off uint32) uint32 { return binary.LittleEndian.Uint32(k.types[off:]) }

// off is the offset of type id in the type section; id must exist.
func (k *rawBTF) off(id uint32) uint32 {
	if off, ok := k.offs[id]; ok {
		return off
	}
	off := k.marks[(id-1)/markStride]
	for range (id - 1) % markStride {
		info := k.u32(off + 4)
		n, _ := dataLen(info>>24&0x1f, info&0xffff)
		off += typeHeaderLen + n
	}
	k.offs[id] = off
	return off
}

// header returns a type's kind, name offset, vlen and size-or-type; an
// unknown id reads as void's.
func (k *rawBTF) header(id uint32) (kind int, nameOff uint32, vlen int, sizeOrType uint32) {
	if id == 0 || id > k.n {
		return 0, 0, 0, 0
	}
	off := k.off(id)
	info := k.u32(off + 4)
	return int(info >> 24 & 0x1f), k.u32(off), int(info & 0xffff), k.u32(off + 8)
}

func (k *rawBTF) kindFlag(id uint32) bool { return k.u32(k.off(id)+4)>>31 != 0 }

// underlying skips typedefs, qualifiers and type tags (at most 32, so that
// a cyclic blob cannot hang it).
func (k *rawBTF) underlying(id uint32) uint32 {
	for range 32 {
		switch kind, _, _, next := k.header(id); kind {
		case kindTypedef, kindVolatile, kindConst, kindRestrict, kindTypeTag:
			id = next
		default:
			return id
		}
	}
	return id
}

// member returns member i of composite id: name, type id, raw offset.
func (k *rawBTF) member(id uint32, i int) (string, uint32, uint32) {
	m := k.off(id) + typeHeaderLen + uint32(i)*12
	return k.str(k.u32(m)), k.u32(m + 4), k.u32(m + 8)
}

func (k *rawBTF) arrayElem(id uint32) uint32 { return k.u32(k.off(id) + typeHeaderLen) }

func (k *rawBTF) strBytes(off uint32) []byte {
	if off >= uint32(len(k.strs)) {
		return nil
	}
	s := k.strs[off:]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return nil
}

func (k *rawBTF) str(off uint32) string { return string(k.strBytes(off)) }

// kernelBTF maps /sys/kernel/btf/vmlinux read-only (sysfs hands it out a
// page per read(2) otherwise, several ms), or reads it where it cannot be
// mapped (before Linux 6.16).
func kernelBTF() (raw []byte, release func(), err error) {
	const path = "/sys/kernel/btf/vmlinux"
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() > 0 && int64(int(info.Size())) == info.Size() {
		raw, err := syscall.Mmap(int(f.Fd()), 0, int(info.Size()), syscall.PROT_READ, syscall.MAP_PRIVATE)
		if err == nil {
			return raw, func() { _ = syscall.Munmap(raw) }, nil
		}
	}
	raw, err = os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return raw, func() {}, nil
}
