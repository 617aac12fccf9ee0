// Package kbtf finds the byte offsets of struct members in the kernel's BTF
// without building a type graph.
//
// cilium/ebpf decodes the whole kernel BTF (tens of milliseconds) before the
// first lookup, which is several times owl's start-up. owl only needs a few
// member offsets to pass to its BPF programs as constants, so this package
// reads the raw type section in place: one forward scan that stops as soon as
// the wanted structs are found, remembering the position of every 64th type
// so that the few type ids it has to follow can be found again cheaply.
//
// Only little-endian, unsplit BTF (such as /sys/kernel/btf/vmlinux) is
// supported.
package kbtf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"syscall"
)

// kernelBTFPath is where the running kernel exposes its own BTF.
const kernelBTFPath = "/sys/kernel/btf/vmlinux"

const (
	magic   = 0xeb9f
	version = 1

	headerLen     = 24 // magic..str_len; hdr_len may announce more
	typeHeaderLen = 12 // name_off, info, size_or_type
	memberLen     = 12 // name_off, type, offset

	// Bounds loops over typedef chains and nested anonymous members, so that
	// a cyclic (malformed) blob gives an error instead of hanging.
	maxResolveDepth = 32

	// Bounds the members looked at for one path element: depth alone does
	// not, as anonymous union u0 holding u1 twice, u1 holding u2 twice and so
	// on would take 2^32 steps. Real structs have a few hundred members.
	maxMembersVisited = 1 << 20

	// A checkpoint every this many types bounds a lookup by id to at most
	// stride-1 skipped types while keeping the index ~1/64th the size of a
	// full one (about 10 KiB for a kernel).
	stride = 64
)

// BTF kinds, numbered as in include/uapi/linux/btf.h.
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
)

var errNoMoreTypes = errors.New("end of type section")

// KernelOffsets reads /sys/kernel/btf/vmlinux and calls Offsets.
func KernelOffsets(paths ...string) ([]uint32, error) {
	raw, release, err := readFile(kernelBTFPath)
	if err != nil {
		return nil, fmt.Errorf("btf: %w", err)
	}
	defer release()
	return Offsets(raw, paths...)
}

// readFile maps the file read-only when it can: sysfs hands out at most a
// page per read(2), so reading the ~5 MiB kernel BTF takes 3-6 ms, ten times
// the whole lookup, while the scan touches only a fraction of the pages.
// Kernels that cannot mmap it (before 6.16) get the plain read.
func readFile(path string) (raw []byte, release func(), err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if size := info.Size(); size > 0 && int64(int(size)) == size {
		raw, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_PRIVATE)
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

// Offsets returns, for each path "struct.member[.member...]", the byte offset
// of the last member from the start of the struct named first.
//
// Intermediate members are followed through their types (typedef, const,
// volatile, restrict, type_tag are skipped); a member of an anonymous
// struct/union member is found by name as C would (recursively), adding the
// anonymous member's offset.
//
// An unknown struct or member, a bitfield member that is not byte aligned, or
// a malformed BTF blob gives an error naming the path.
func Offsets(raw []byte, paths ...string) ([]uint32, error) {
	r, err := newReader(raw)
	if err != nil {
		if len(paths) == 0 {
			return nil, fmt.Errorf("btf: %w", err)
		}
		return nil, fmt.Errorf("btf: %s: %w", paths[0], err)
	}

	for _, path := range paths {
		if err := checkPath(path); err != nil {
			return nil, fmt.Errorf("btf: %s: %w", path, err)
		}
	}

	structs, err := r.findStructs(paths)
	if err != nil {
		return nil, err
	}

	offsets := make([]uint32, len(paths))
	for i, path := range paths {
		off, err := r.resolve(structs[i], path)
		if err != nil {
			return nil, fmt.Errorf("btf: %s: %w", path, err)
		}
		offsets[i] = off
	}
	return offsets, nil
}

// checkPath rejects paths that could never name a member, so that the scan
// and the resolution below can take "struct.member..." for granted.
func checkPath(path string) error {
	if !strings.Contains(path, ".") {
		return errors.New(`invalid path: want "struct.member[.member...]"`)
	}
	for part := range strings.SplitSeq(path, ".") {
		if part == "" {
			return errors.New(`invalid path: empty element`)
		}
	}
	return nil
}

type reader struct {
	types []byte // the type section
	strs  []byte // the string section

	// checkpoints[i] is the offset in types of type id i*stride+1.
	checkpoints []uint32
	scanned     uint32 // ids 1..scanned have been walked over and checked
	end         uint32 // offset just past type id scanned
}

func newReader(raw []byte) (*reader, error) {
	if len(raw) < headerLen {
		return nil, fmt.Errorf("header truncated: %d bytes", len(raw))
	}
	// The magic tells the blob's byte order; only little-endian is read.
	switch m := binary.LittleEndian.Uint16(raw); m {
	case magic:
	case magic>>8 | magic&0xff<<8:
		return nil, errors.New("big-endian BTF is not supported")
	default:
		return nil, fmt.Errorf("bad magic %#04x", m)
	}
	if raw[2] != version {
		return nil, fmt.Errorf("unsupported version %d", raw[2])
	}
	le := binary.LittleEndian
	hdrLen := uint64(le.Uint32(raw[4:]))
	if hdrLen < headerLen || hdrLen > uint64(len(raw)) {
		return nil, fmt.Errorf("header length %d out of range", hdrLen)
	}
	section := func(what string, off, n uint32) ([]byte, error) {
		start := hdrLen + uint64(off)
		end := start + uint64(n)
		if end > uint64(len(raw)) {
			return nil, fmt.Errorf("%s section [%d, %d) beyond end of data (%d bytes)", what, start, end, len(raw))
		}
		return raw[start:end:end], nil
	}
	types, err := section("type", le.Uint32(raw[8:]), le.Uint32(raw[12:]))
	if err != nil {
		return nil, err
	}
	strs, err := section("string", le.Uint32(raw[16:]), le.Uint32(raw[20:]))
	if err != nil {
		return nil, err
	}
	// A kernel's types average ~25 bytes; sizing the index for that saves
	// its reallocations.
	return &reader{
		types:       types,
		strs:        strs,
		checkpoints: make([]uint32, 0, len(types)/(stride*24)+1),
	}, nil
}

func (r *reader) u32(off uint32) uint32 {
	return binary.LittleEndian.Uint32(r.types[off:])
}

func kindOf(info uint32) uint32 { return info >> 24 & 0x1f }
func vlenOf(info uint32) uint32 { return info & 0xffff }
func kindFlag(info uint32) bool { return info>>31 != 0 }

// Sizes of the kind-specific data after a type header, in units of 4 bytes,
// two bits per kind: fixed data, and data per vlen entry. They are looked up
// rather than switched on because the kinds of consecutive types follow no
// pattern, and a mispredicted branch per type was most of the scan's time.
const (
	fixedWords uint64 = 1<<(2*kindInt) | 3<<(2*kindArray) | 1<<(2*kindVar) | 1<<(2*kindDeclTag)
	entryWords uint64 = 3<<(2*kindStruct) | 3<<(2*kindUnion) | 2<<(2*kindEnum) |
		2<<(2*kindFuncProto) | 3<<(2*kindDatasec) | 3<<(2*kindEnum64)
	knownKinds uint32 = 1<<(kindEnum64+1) - 1<<kindInt // kinds 1 to 19
)

// dataLen returns how many bytes of kind-specific data follow a type header
// with this info word, or false for a kind this package does not know and so
// cannot step over.
func dataLen(info uint32) (uint32, bool) {
	k := kindOf(info)
	fixed := uint32(fixedWords>>(2*k)) & 3
	entry := uint32(entryWords>>(2*k)) & 3
	return 4 * (fixed + entry*vlenOf(info)), knownKinds>>k&1 != 0 // at most 4*(3+3*0xffff)
}

// typeSize returns the info word and length of the type record at off, and
// whether all of the record lies inside the type section; every later read
// of the record relies on this check. badType explains a rejection.
func (r *reader) typeSize(off uint32) (info, size uint32, ok bool) {
	rest := uint64(len(r.types)) - uint64(off) // off <= len(types) by construction
	if rest < typeHeaderLen {
		return 0, 0, false
	}
	info = r.u32(off + 4)
	n, known := dataLen(info)
	return info, typeHeaderLen + n, known && rest >= typeHeaderLen+uint64(n)
}

// badType says why typeSize rejected the record at off.
func (r *reader) badType(off uint32) error {
	if uint64(len(r.types))-uint64(off) >= typeHeaderLen {
		info := r.u32(off + 4)
		if _, known := dataLen(info); !known {
			return fmt.Errorf("type at offset %d has unknown kind %d", off, kindOf(info))
		}
	}
	return fmt.Errorf("type at offset %d truncated", off)
}

// scan walks over the types after the last one scanned, recording a
// checkpoint every stride types, until type id until has been scanned or,
// given a search, until the search is complete. It returns errNoMoreTypes at
// the end of the type section.
func (r *reader) scan(until uint32, search *structSearch) error {
	// Locals rather than r's fields keep the loop in registers.
	off, scanned, checkpoints := r.end, r.scanned, r.checkpoints
	var err error
	for scanned < until && (search == nil || search.missing > 0) {
		// typeSize, by hand: too big to be inlined, and this runs per type.
		rest := uint64(len(r.types)) - uint64(off)
		if rest == 0 {
			err = errNoMoreTypes
			break
		}
		if rest < typeHeaderLen {
			err = r.badType(off)
			break
		}
		info := r.u32(off + 4)
		n, known := dataLen(info)
		if !known || rest < typeHeaderLen+uint64(n) {
			err = r.badType(off)
			break
		}
		if scanned%stride == 0 {
			checkpoints = append(checkpoints, off)
		}
		scanned++
		if search != nil && kindOf(info) == kindStruct {
			search.offer(r, off, info)
		}
		off += typeHeaderLen + n
	}
	r.end, r.scanned, r.checkpoints = off, scanned, checkpoints
	return err
}

// typeOffset returns where type id starts, scanning further if the id lies
// beyond what the search for struct names has covered.
func (r *reader) typeOffset(id uint32) (uint32, error) {
	if id == 0 {
		return 0, errors.New("reference to type id 0 (void)")
	}
	if id > r.scanned {
		err := r.scan(id, nil)
		if err == errNoMoreTypes {
			return 0, fmt.Errorf("reference to type id %d beyond last type %d", id, r.scanned)
		}
		if err != nil {
			return 0, err
		}
	}
	off := r.checkpoints[(id-1)/stride]
	for n := (id - 1) % stride; n > 0; n-- {
		_, size, ok := r.typeSize(off) // checked by scan already
		if !ok {
			return 0, r.badType(off)
		}
		off += size
	}
	return off, nil
}

// nameIs compares a string-section entry with name without copying it, so
// that the scan over all struct names allocates nothing.
func (r *reader) nameIs(nameOff uint32, name string) bool {
	if uint64(nameOff)+uint64(len(name)) >= uint64(len(r.strs)) {
		return false // also leaves no room for the terminating NUL
	}
	s := r.strs[nameOff:]
	return s[len(name)] == 0 && string(s[:len(name)]) == name
}

// structSearch looks for the structs that paths start with. Forward
// declarations (FWD) and empty definitions of the same name are passed over,
// as the first complete definition is wanted; an empty one is kept in case
// no complete one follows, so that the error names the missing member.
type structSearch struct {
	names    []string // struct name of each path
	offs     []uint32 // offset of each path's struct, or notFound
	complete []bool   // offs[i] is a STRUCT with members
	missing  int      // paths without a complete struct
}

const notFound = math.MaxUint32

func (s *structSearch) offer(r *reader, off, info uint32) {
	nameOff := r.u32(off)
	hasMembers := vlenOf(info) > 0
	for i, name := range s.names {
		if s.complete[i] || !r.nameIs(nameOff, name) {
			continue
		}
		if hasMembers {
			s.offs[i] = off
			s.complete[i] = true
			s.missing--
		} else if s.offs[i] == notFound {
			s.offs[i] = off
		}
	}
}

// findStructs returns, for each path, the offset of the struct its first
// element names, scanning types in id order only as far as needed.
func (r *reader) findStructs(paths []string) ([]uint32, error) {
	s := structSearch{
		names:    make([]string, len(paths)),
		offs:     make([]uint32, len(paths)),
		complete: make([]bool, len(paths)),
		missing:  len(paths),
	}
	for i, path := range paths {
		s.names[i], _, _ = strings.Cut(path, ".")
		s.offs[i] = notFound
	}

	if err := r.scan(math.MaxUint32, &s); err != nil && err != errNoMoreTypes {
		i := 0
		for s.complete[i] {
			i++
		}
		return nil, fmt.Errorf("btf: %s: %w", paths[i], err)
	}
	for i, off := range s.offs {
		if off == notFound {
			return nil, fmt.Errorf("btf: %s: no struct %s", paths[i], s.names[i])
		}
	}
	return s.offs, nil
}

// resolve walks the members of path, starting from the struct at off.
func (r *reader) resolve(off uint32, path string) (uint32, error) {
	structName, rest, _ := strings.Cut(path, ".")
	var total uint64 // bytes; members are at most 2^32 bits into their parent
	for {
		name, tail, more := strings.Cut(rest, ".")
		budget := maxMembersVisited
		bits, typeID, bitfield, found, err := r.findMember(off, name, 0, &budget)
		if err != nil {
			return 0, err
		}
		if !found {
			if parent := path[:len(path)-len(rest)-1]; parent != structName {
				return 0, fmt.Errorf("%s has no member %s", parent, name)
			}
			return 0, fmt.Errorf("struct %s has no member %s", structName, name)
		}
		if bits%8 != 0 {
			if bitfield {
				return 0, fmt.Errorf("member %s is a bitfield at bit %d, not byte aligned", name, bits)
			}
			return 0, fmt.Errorf("member %s at bit %d is not byte aligned", name, bits)
		}
		total += bits / 8
		if total > math.MaxUint32 {
			return 0, fmt.Errorf("member %s: offset %d does not fit 32 bits", name, total)
		}
		if !more {
			return uint32(total), nil
		}

		var info uint32
		off, info, err = r.skipQualifiers(typeID)
		if err != nil {
			return 0, fmt.Errorf("member %s: %w", name, err)
		}
		if k := kindOf(info); k != kindStruct && k != kindUnion {
			return 0, fmt.Errorf("member %s is not a struct or union (BTF kind %d)", name, k)
		}
		rest = tail
	}
}

// skipQualifiers follows typedef, const, volatile, restrict and type_tag from
// type id to the type they name, returning its offset and info word.
func (r *reader) skipQualifiers(id uint32) (off, info uint32, err error) {
	for range maxResolveDepth {
		off, err = r.typeOffset(id)
		if err != nil {
			return 0, 0, err
		}
		info = r.u32(off + 4)
		switch kindOf(info) {
		case kindTypedef, kindConst, kindVolatile, kindRestrict, kindTypeTag:
			id = r.u32(off + 8)
		default:
			return off, info, nil
		}
	}
	return 0, 0, fmt.Errorf("type id %d: more than %d typedefs and qualifiers (cycle?)", id, maxResolveDepth)
}

// findMember looks for name among the members of the struct or union at off
// and, as C does, inside its anonymous struct and union members. It returns
// the member's bit offset from the start of the struct at off, its type id
// and whether it is a bitfield.
func (r *reader) findMember(off uint32, name string, depth int, budget *int) (bits uint64, typeID uint32, bitfield, found bool, err error) {
	if depth > maxResolveDepth {
		return 0, 0, false, false, fmt.Errorf("anonymous members nested more than %d deep (cycle?)", maxResolveDepth)
	}
	info := r.u32(off + 4)
	flag := kindFlag(info)
	if *budget -= int(vlenOf(info)); *budget < 0 {
		return 0, 0, false, false, fmt.Errorf("more than %d members in anonymous members (cycle?)", maxMembersVisited)
	}
	for i := range vlenOf(info) {
		m := off + typeHeaderLen + i*memberLen // inside the record, see typeSize
		nameOff, mType, mOffset := r.u32(m), r.u32(m+4), r.u32(m+8)
		if uint64(nameOff) >= uint64(len(r.strs)) {
			return 0, 0, false, false, fmt.Errorf("member name offset %d beyond string section", nameOff)
		}
		// With kind_flag the offset word also carries the bitfield size.
		mBits, mBitfield := uint64(mOffset), false
		if flag {
			mBits, mBitfield = uint64(mOffset&0xffffff), mOffset>>24 != 0
		}

		if r.strs[nameOff] != 0 {
			if r.nameIs(nameOff, name) {
				return mBits, mType, mBitfield, true, nil
			}
			continue
		}

		// Unnamed: an anonymous struct/union whose members belong to this
		// one, or padding such as "int :3", which is skipped.
		innerOff, innerInfo, err := r.skipQualifiers(mType)
		if err != nil {
			return 0, 0, false, false, err
		}
		if k := kindOf(innerInfo); k != kindStruct && k != kindUnion {
			continue
		}
		b, t, bf, ok, err := r.findMember(innerOff, name, depth+1, budget)
		if err != nil || ok {
			return mBits + b, t, bf, ok, err
		}
	}
	return 0, 0, false, false, nil
}
