package usdt

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Probe is one location of a USDT probe in one file: what a uprobe needs
// to fire there (file offsets) and to read the arguments.
type Probe struct {
	// Path is the file to attach to (through /proc/PID/root for a
	// process in another mount namespace).
	Path           string
	Provider, Name string
	// Addr is the link-time virtual address of the location, adjusted by
	// .stapsdt.base (prelinked files); Offset is its file offset, the
	// uprobe's address.
	Addr, Offset uint64
	// Semaphore is the link-time address of the probe's enable counter
	// (0: none) and RefCtrOffset its file offset, which the kernel
	// increments while a uprobe is attached there (its *_ENABLED() test).
	Semaphore, RefCtrOffset uint64
	ArgsText                string // as the note wrote them
	Args                    []ArgSpec
	// ArgsErr says why Args is empty though ArgsText is not (an operand
	// this package cannot read, a symbol missing from a stripped file):
	// the probe still fires, without arguments.
	ArgsErr error
	Machine elf.Machine
}

// ID is "provider:name".
func (p Probe) ID() string { return p.Provider + ":" + p.Name }

// ReadFile returns every probe location of the ELF file path, in the
// order of its notes; a file without notes has none (no error).
func ReadFile(path string) ([]Probe, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *fs.PathError names the file
	}
	defer f.Close()
	probes, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i := range probes {
		probes[i].Path = path
	}
	return probes, nil
}

// ErrNotELF is Read's error for a file that is no ELF executable or
// shared library.
var ErrNotELF = errors.New("not an ELF executable or shared library")

// Read returns the probe locations of an ELF file (Path left empty).
func Read(r io.ReaderAt) (probes []Probe, err error) {
	var magic [4]byte
	if _, err := r.ReadAt(magic[:], 0); err != nil || string(magic[:]) != elf.ELFMAG {
		return nil, ErrNotELF
	}
	// debug/elf panics on some crafted files; the files probed are
	// anyone's to write.
	defer func() {
		if r := recover(); r != nil {
			probes, err = nil, fmt.Errorf("%w: malformed: %v", ErrNotELF, r)
		}
	}()
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNotELF, err)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return nil, fmt.Errorf("%w (ELF type %v)", ErrNotELF, ef.Type)
	}
	sec := ef.Section(".note.stapsdt")
	if sec == nil || sec.Type != elf.SHT_NOTE {
		return nil, nil
	}
	data, err := sectionData(sec)
	if err != nil {
		return nil, fmt.Errorf("read .note.stapsdt: %w", err)
	}
	addrSize := 8
	if ef.Class == elf.ELFCLASS32 {
		addrSize = 4
	}
	notes, err := ParseNotes(data, ef.ByteOrder, addrSize)
	if err != nil {
		return nil, fmt.Errorf(".note.stapsdt: %w", err)
	}
	var base uint64
	if b := ef.Section(".stapsdt.base"); b != nil {
		base = b.Addr
	}
	var syms *symbols
	for _, n := range notes {
		p := Probe{Provider: n.Provider, Name: n.Name, Addr: n.Loc, Semaphore: n.Semaphore,
			ArgsText: n.Args, Machine: ef.Machine}
		// The notes hold link-time addresses; prelink moves the file and
		// .stapsdt.base with it, so the difference is how far the probes
		// moved. The semaphore is not adjusted (as libbpf and BCC).
		if base != 0 && n.Base != 0 {
			p.Addr += base - n.Base
		}
		var ok bool
		if p.Offset, ok = fileOffset(ef, p.Addr, true); !ok {
			return nil, fmt.Errorf("probe %s at %#x: not in an executable segment", p.ID(), p.Addr)
		}
		// A segment header can claim bytes past the file's end.
		if !inFile(r, p.Offset) {
			return nil, fmt.Errorf("probe %s at %#x: file offset %#x is past the file's end", p.ID(), p.Addr, p.Offset)
		}
		if p.Semaphore != 0 {
			if p.RefCtrOffset, ok = fileOffset(ef, p.Semaphore, false); !ok || !inFile(r, p.RefCtrOffset) {
				return nil, fmt.Errorf("probe %s: semaphore at %#x is not in a writable segment backed by the file", p.ID(), p.Semaphore)
			}
		}
		p.Args, p.ArgsErr = ParseArgs(n.Args, ef.Machine)
		if p.ArgsErr == nil {
			if syms == nil {
				syms = &symbols{ef: ef}
			}
			p.ArgsErr = syms.resolve(p.Args)
		}
		if p.ArgsErr != nil {
			p.Args = nil
		}
		probes = append(probes, p)
	}
	return probes, nil
}

// maxNotesBytes bounds .note.stapsdt: libjvm's 531 notes take ~60 KiB.
const maxNotesBytes = 64 << 20

func sectionData(sec *elf.Section) ([]byte, error) {
	if sec.Size > maxNotesBytes {
		return nil, fmt.Errorf("%d bytes: at most %d", sec.Size, maxNotesBytes)
	}
	return sec.Data()
}

// fileOffset converts a link-time virtual address to the offset in the
// file of the PT_LOAD segment holding it: what uprobes and reference
// counters are given. A probe is in an executable segment, a semaphore
// in a writable one, within the bytes the file holds.
func fileOffset(ef *elf.File, addr uint64, exec bool) (uint64, bool) {
	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr-p.Vaddr >= p.Filesz {
			continue
		}
		if exec != (p.Flags&elf.PF_X != 0) || (!exec && p.Flags&elf.PF_W == 0) {
			continue
		}
		return p.Off + (addr - p.Vaddr), true
	}
	return 0, false
}

// inFile reports whether the file holds a byte at off.
func inFile(r io.ReaderAt, off uint64) bool {
	if off > math.MaxInt64 {
		return false
	}
	var b [1]byte
	n, _ := r.ReadAt(b[:], int64(off))
	return n == 1
}

// symbols resolves the symbols of x86 operands (counter(%rip)), reading
// the symbol tables once, and only for files whose probes have them.
type symbols struct {
	ef     *elf.File
	byName map[string]uint64
}

func (s *symbols) resolve(args []ArgSpec) error {
	for i := range args {
		a := &args[i]
		if a.Symbol == "" {
			continue
		}
		if s.byName == nil {
			s.byName = map[string]uint64{}
			for _, get := range []func() ([]elf.Symbol, error){s.ef.DynamicSymbols, s.ef.Symbols} {
				syms, _ := get()
				for _, sym := range syms {
					if sym.Name != "" && sym.Section != elf.SHN_UNDEF {
						s.byName[sym.Name] = sym.Value
					}
				}
			}
		}
		addr, ok := s.byName[a.Symbol]
		if !ok {
			return fmt.Errorf("argument %d %s: no symbol %s in the file (stripped?)", i, a, a.Symbol)
		}
		a.SymbolAddr = addr
	}
	return nil
}
