package syms

import (
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
)

// table is the symbols of one ELF file at their link-time addresses, and
// what it takes to relocate them into a process: shared by every process
// that maps the file.
type table struct {
	module string // base name of the file it was first read from
	exec   bool   // ET_EXEC: loaded where linked, no bias
	loads  []segment
	syms   []elfSym     // functions sorted by address, one per address
	gosym  *gosym.Table // Go binaries: the pclntab, kept even when stripped
}

type segment struct {
	off, vaddr, filesz uint64
	exec               bool
}

type elfSym struct {
	value, size uint64
	name        string
}

// fileID returns the build-id of an ELF file: the GNU one, else Go's,
// else "" so the caller falls back on (dev, inode).
func fileID(ef *elf.File) string {
	if id := noteDesc(ef, ".note.gnu.build-id", "GNU\x00", 3); id != nil {
		return gnuKey(id)
	}
	if id := noteDesc(ef, ".note.go.buildid", "Go\x00\x00", 4); id != nil {
		return "go:" + string(id)
	}
	return ""
}

// noteDesc returns the descriptor of the note of the given name and type in
// section sec: notes are namesz, descsz, type, then name and descriptor each
// padded to 4 bytes.
func noteDesc(ef *elf.File, sec, name string, typ uint32) []byte {
	s := ef.Section(sec)
	if s == nil || s.Type != elf.SHT_NOTE {
		return nil
	}
	b, err := s.Data()
	if err != nil {
		return nil
	}
	for len(b) >= 12 {
		namesz, descsz := uint64(ef.ByteOrder.Uint32(b)), uint64(ef.ByteOrder.Uint32(b[4:]))
		t := ef.ByteOrder.Uint32(b[8:])
		b = b[12:]
		nend := (namesz + 3) &^ 3
		dend := nend + (descsz+3)&^3
		if uint64(len(b)) < dend {
			return nil
		}
		if t == typ && string(b[:namesz]) == name {
			return b[nend : nend+descsz]
		}
		b = b[dend:]
	}
	return nil
}

// loadTable reads the symbols of an open ELF file.
func loadTable(ef *elf.File) (*table, error) {
	t := &table{exec: ef.Type == elf.ET_EXEC}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			t.loads = append(t.loads, segment{off: p.Off, vaddr: p.Vaddr, filesz: p.Filesz, exec: p.Flags&elf.PF_X != 0})
		}
	}
	// A pclntab this Go release cannot parse, or a damaged symbol table,
	// still leaves the other sources.
	var errs []error
	if err := t.loadGo(ef); err != nil {
		errs = append(errs, err)
	}
	// Stripped files keep .dynsym, the exported functions only.
	for _, read := range []func() ([]elf.Symbol, error){ef.Symbols, ef.DynamicSymbols} {
		syms, err := read()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			errs = append(errs, err)
		}
		if t.syms = functions(syms); len(t.syms) > 0 {
			break
		}
	}
	if len(t.syms) == 0 && t.gosym == nil {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, errors.New("no function symbols")
	}
	return t, nil
}

// loadGo reads the pclntab of a Go binary. The runtime needs it for
// tracebacks, so `-ldflags=-s -w` keeps it: Go binaries are symbolized even
// stripped.
func (t *table) loadGo(ef *elf.File) error {
	pcln := ef.Section(".gopclntab")
	if pcln == nil {
		pcln = ef.Section(".data.rel.ro.gopclntab")
	}
	text := ef.Section(".text")
	if pcln == nil || text == nil {
		return nil
	}
	data, err := pcln.Data()
	if err != nil {
		return fmt.Errorf("read .gopclntab: %w", err)
	}
	if err := checkPclntab(data); err != nil {
		return fmt.Errorf("parse .gopclntab: %w", err)
	}
	t.gosym, err = gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		return fmt.Errorf("parse .gopclntab: %w", err)
	}
	return nil
}

// functions keeps the defined function symbols, sorted, one per address.
// GNU ifuncs count: the code at their address is their resolver, and libc
// exports many of them only that way.
// Of aliases (getpid, __getpid) it keeps the one with the fewest leading
// underscores, then global over weak over local: the name a user would
// recognize and call.
func functions(all []elf.Symbol) []elfSym {
	type cand struct {
		elfSym
		rank, order int
	}
	var cs []cand
	for i, s := range all {
		typ := elf.ST_TYPE(s.Info)
		if (typ != elf.STT_FUNC && typ != elf.STT_GNU_IFUNC) || s.Section == elf.SHN_UNDEF || s.Value == 0 {
			continue
		}
		rank := 2 // local
		switch elf.ST_BIND(s.Info) {
		case elf.STB_GLOBAL:
			rank = 0
		case elf.STB_WEAK:
			rank = 1
		}
		rank += 4 * (len(s.Name) - len(strings.TrimLeft(s.Name, "_")))
		cs = append(cs, cand{elfSym{s.Value, s.Size, s.Name}, rank, i})
	}
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.value != b.value {
			return a.value < b.value
		}
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		return a.order < b.order
	})
	var out []elfSym
	for _, c := range cs {
		if len(out) == 0 || out[len(out)-1].value != c.value {
			out = append(out, c.elfSym)
		}
	}
	return out
}

// bias is what the loader added to the file's link-time addresses in the
// mapping m. The segment that holds m's file offset tells it: the byte at
// file offset off is at link address off - p.off + p.vaddr and at run time
// at m.Start + off - m.Offset.
func (t *table) bias(m Mapping) uint64 {
	if t.exec {
		return 0
	}
	page := uint64(os.Getpagesize())
	var best *segment
	for i := range t.loads {
		p := &t.loads[i]
		if p.off&^(page-1) <= m.Offset && m.Offset < p.off+p.filesz {
			// Segments can share a page; prefer the one of the same kind.
			if best == nil || (p.exec == m.Exec() && best.exec != m.Exec()) {
				best = p
			}
		}
	}
	if best == nil {
		return m.Start - m.Offset
	}
	return m.Start - m.Offset + best.off - best.vaddr
}

// lookupOffset names the code at file offset off: the segment that holds
// it gives its link-time address.
func (t *table) lookupOffset(off uint64) (name string, symOff uint64, ok bool) {
	for _, p := range t.loads {
		if p.off <= off && off-p.off < p.filesz {
			return t.lookup(off - p.off + p.vaddr)
		}
	}
	return "", 0, false
}

// lookup names link-time address v.
func (t *table) lookup(v uint64) (name string, off uint64, ok bool) {
	if t.gosym != nil {
		if fn := t.gosym.PCToFunc(v); fn != nil {
			return fn.Name, v - fn.Entry, true
		}
	}
	i := sort.Search(len(t.syms), func(i int) bool { return t.syms[i].value > v }) - 1
	if i < 0 {
		return "", 0, false
	}
	s := t.syms[i]
	if s.size != 0 && v-s.value >= s.size {
		return "", 0, false
	}
	return s.name, v - s.value, true
}

// openELF opens the first of paths that is an ELF file.
func openELF(paths []string) (*elf.File, error) {
	var errs []error
	for _, p := range paths {
		ef, err := elf.Open(p)
		if err == nil {
			return ef, nil
		}
		if pe := (*fs.PathError)(nil); !errors.As(err, &pe) {
			err = fmt.Errorf("read %s: %w", p, err) // the ELF parser does not name the file
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// checkPclntab bounds the function count in a pclntab's header by the
// table's size before debug/gosym allocates a Func for each: a crafted
// binary claiming billions of functions would otherwise make owl allocate
// gigabytes and die (found by FuzzFuncs). Every Go version since 1.2 keeps
// the count at offset 8, pointer-sized, and at least 8 bytes of function
// table per function after the header.
func checkPclntab(data []byte) error {
	if len(data) < 16 {
		return errors.New("too short")
	}
	// The magic (0xfffffffb, 0xfffffffa, 0xfffffff0, 0xfffffff1) tells the
	// byte order: its first byte is 0xff only in a big-endian table.
	order := binary.ByteOrder(binary.LittleEndian)
	if data[0] == 0xff {
		order = binary.BigEndian
	}
	var n uint64
	switch data[7] {
	case 4:
		n = uint64(order.Uint32(data[8:]))
	case 8:
		n = order.Uint64(data[8:])
	default:
		return fmt.Errorf("pointer size %d", data[7])
	}
	if n > uint64(len(data))/8 {
		return fmt.Errorf("%d functions claimed in %d bytes", n, len(data))
	}
	return nil
}
