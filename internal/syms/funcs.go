package syms

import (
	"debug/elf"
	"errors"
	"fmt"
)

// Func is one function of an ELF file, from its symbol tables or, in a Go
// binary, its pclntab: what probe specifiers (internal/uprobe) expand
// globs against. Unlike the symbolizer's table, which keeps one name per
// address, every alias is listed (malloc and __libc_malloc), so that a
// user's pattern finds the name they know.
type Func struct {
	Name string      // as the table spells it: mangled for C++ and Rust
	Addr uint64      // link-time address of the entry
	Size uint64      // bytes, 0 when the table does not say
	Bind elf.SymBind // STB_GLOBAL, STB_WEAK or STB_LOCAL; STB_GLOBAL for the pclntab
	Type elf.SymType // STT_FUNC or STT_GNU_IFUNC; STT_FUNC for the pclntab
	Go   bool        // from the Go pclntab
	From FuncSource  // the table it came from
}

// FuncSource is the table a Func was read from.
type FuncSource uint8

const (
	FromSymtab FuncSource = iota
	FromDynsym
	FromPclntab
)

// Funcs reads the functions of ef: the defined STT_FUNC and STT_GNU_IFUNC
// symbols of .symtab and .dynsym (a stripped file keeps .dynsym, its
// exported functions), and the pclntab of a Go binary, which the Go
// runtime needs for tracebacks and so survives `-ldflags=-s -w`. A table
// that cannot be read is an error only when no other table gave anything.
//
// debug/gosym and debug/elf can panic on crafted input; Funcs turns a
// panic into an error, since the files it reads are anyone's.
func Funcs(ef *elf.File) (funcs []Func, err error) {
	defer func() {
		if r := recover(); r != nil {
			funcs, err = nil, fmt.Errorf("malformed ELF file: %v", r)
		}
	}()
	var errs []error
	var t table
	if err := t.loadGo(ef); err != nil {
		errs = append(errs, err)
	}
	if t.gosym != nil {
		for _, fn := range t.gosym.Funcs {
			if fn.Entry == 0 || fn.End < fn.Entry {
				continue
			}
			funcs = append(funcs, Func{Name: fn.Name, Addr: fn.Entry, Size: fn.End - fn.Entry,
				Bind: elf.STB_GLOBAL, Type: elf.STT_FUNC, Go: true, From: FromPclntab})
		}
	}
	for _, tab := range []struct {
		read func() ([]elf.Symbol, error)
		from FuncSource
	}{{ef.Symbols, FromSymtab}, {ef.DynamicSymbols, FromDynsym}} {
		all, err := tab.read()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			errs = append(errs, err)
		}
		for _, s := range all {
			typ := elf.ST_TYPE(s.Info)
			if (typ != elf.STT_FUNC && typ != elf.STT_GNU_IFUNC) || s.Section == elf.SHN_UNDEF || s.Value == 0 {
				continue
			}
			funcs = append(funcs, Func{Name: s.Name, Addr: s.Value, Size: s.Size,
				Bind: elf.ST_BIND(s.Info), Type: typ, From: tab.from})
		}
	}
	if len(funcs) == 0 {
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		return nil, errors.New("no function symbols")
	}
	return funcs, nil
}

// FileOffset converts the link-time address addr of ef to the offset in
// the file of the byte loaded there, what uprobes attach at: addr - vaddr +
// offset of the PT_LOAD segment holding it. Executable segments are
// preferred where segments overlap. It reports false for an address no
// segment loads from the file.
func FileOffset(ef *elf.File, addr uint64) (uint64, bool) {
	found, exec := false, false
	var off uint64
	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr-p.Vaddr >= p.Filesz {
			continue
		}
		x := p.Flags&elf.PF_X != 0
		if !found || (x && !exec) {
			found, exec, off = true, x, addr-p.Vaddr+p.Off
		}
	}
	return off, found
}
