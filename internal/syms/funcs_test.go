package syms

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"slices"
	"testing"
)

// tinyELF is a small x86-64 executable with one PT_LOAD segment (file
// offset 0 at 0x400000), a .text of 16 bytes at offset 0x100 and a symbol
// table: work (global, 2 bytes), helper (local, 1 byte), counter (an
// object) and puts (undefined); with pclntab, also a .gopclntab section
// holding it. It seeds the fuzzer: a real binary is tens of KiB, which the
// fuzzer minimizes for minutes.
func tinyELF(pclntab []byte) []byte {
	le := binary.LittleEndian
	text := []byte{0x55, 0xc3, 0xc3, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc}
	strtab := []byte("\x00work\x00helper\x00counter\x00puts\x00")
	shstrtab := []byte("\x00.text\x00.symtab\x00.strtab\x00.shstrtab\x00.gopclntab\x00")
	sym := func(name uint32, info byte, shndx uint16, value, size uint64) []byte {
		b := make([]byte, 24)
		le.PutUint32(b, name)
		b[4] = info
		le.PutUint16(b[6:], shndx)
		le.PutUint64(b[8:], value)
		le.PutUint64(b[16:], size)
		return b
	}
	var symtab []byte
	symtab = append(symtab, sym(0, 0, 0, 0, 0)...)
	symtab = append(symtab, sym(6, byte(elf.STB_LOCAL)<<4|byte(elf.STT_FUNC), 1, 0x400102, 1)...)
	symtab = append(symtab, sym(1, byte(elf.STB_GLOBAL)<<4|byte(elf.STT_FUNC), 1, 0x400100, 2)...)
	symtab = append(symtab, sym(13, byte(elf.STB_GLOBAL)<<4|byte(elf.STT_OBJECT), 1, 0x400104, 4)...)
	symtab = append(symtab, sym(21, byte(elf.STB_GLOBAL)<<4|byte(elf.STT_FUNC), 0, 0, 0)...)

	b := make([]byte, 0x100)
	b = append(b, text...)
	symOff := len(b)
	b = append(b, symtab...)
	strOff := len(b)
	b = append(b, strtab...)
	shstrOff := len(b)
	b = append(b, shstrtab...)
	pclnOff := len(b)
	b = append(b, pclntab...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	shOff := len(b)
	sh := func(name, typ uint32, flags, addr uint64, off, size int, link, info uint32, entsize uint64) {
		h := make([]byte, 64)
		le.PutUint32(h, name)
		le.PutUint32(h[4:], typ)
		le.PutUint64(h[8:], flags)
		le.PutUint64(h[16:], addr)
		le.PutUint64(h[24:], uint64(off))
		le.PutUint64(h[32:], uint64(size))
		le.PutUint32(h[40:], link)
		le.PutUint32(h[44:], info)
		le.PutUint64(h[48:], 1)
		le.PutUint64(h[56:], entsize)
		b = append(b, h...)
	}
	sh(0, 0, 0, 0, 0, 0, 0, 0, 0)
	sh(1, uint32(elf.SHT_PROGBITS), uint64(elf.SHF_ALLOC|elf.SHF_EXECINSTR), 0x400100, 0x100, len(text), 0, 0, 0)
	sh(7, uint32(elf.SHT_SYMTAB), 0, 0, symOff, len(symtab), 3, 2, 24)
	sh(15, uint32(elf.SHT_STRTAB), 0, 0, strOff, len(strtab), 0, 0, 0)
	sh(23, uint32(elf.SHT_STRTAB), 0, 0, shstrOff, len(shstrtab), 0, 0, 0)
	if pclntab != nil {
		sh(33, uint32(elf.SHT_PROGBITS), uint64(elf.SHF_ALLOC), 0x500000, pclnOff, len(pclntab), 0, 0, 0)
	}

	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], uint16(elf.ET_EXEC))
	le.PutUint16(b[18:], uint16(elf.EM_X86_64))
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], 0x400100)
	le.PutUint64(b[32:], 64)
	le.PutUint64(b[40:], uint64(shOff))
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], 1)
	le.PutUint16(b[58:], 64)
	le.PutUint16(b[60:], 5)
	if pclntab != nil {
		le.PutUint16(b[60:], 6)
	}
	le.PutUint16(b[62:], 4)
	ph := b[64:]
	le.PutUint32(ph, uint32(elf.PT_LOAD))
	le.PutUint32(ph[4:], uint32(elf.PF_R|elf.PF_X))
	le.PutUint64(ph[16:], 0x400000)
	le.PutUint64(ph[24:], 0x400000)
	le.PutUint64(ph[32:], 0x110)
	le.PutUint64(ph[40:], 0x110)
	le.PutUint64(ph[48:], 0x1000)
	return b
}

func TestFuncsTiny(t *testing.T) {
	ef, err := elf.NewFile(bytes.NewReader(tinyELF(nil)))
	if err != nil {
		t.Fatal(err)
	}
	funcs, err := Funcs(ef)
	if err != nil {
		t.Fatal(err)
	}
	want := []Func{
		{Name: "helper", Addr: 0x400102, Size: 1, Bind: elf.STB_LOCAL, Type: elf.STT_FUNC, From: FromSymtab},
		{Name: "work", Addr: 0x400100, Size: 2, Bind: elf.STB_GLOBAL, Type: elf.STT_FUNC, From: FromSymtab},
	}
	if !slices.Equal(funcs, want) {
		t.Errorf("got %+v, want %+v", funcs, want)
	}
	for addr, off := range map[uint64]uint64{0x400100: 0x100, 0x400102: 0x102, 0x400000: 0} {
		if got, ok := FileOffset(ef, addr); !ok || got != off {
			t.Errorf("FileOffset(%#x) = %#x, %v; want %#x", addr, got, ok, off)
		}
	}
	for _, addr := range []uint64{0, 0x3fffff, 0x400110, 0x500000} {
		if got, ok := FileOffset(ef, addr); ok {
			t.Errorf("FileOffset(%#x) = %#x outside every segment", addr, got)
		}
	}
}

// The test binary is a Go program: its functions come from the pclntab,
// and the file offset of one is where its code is in the file.
func TestFuncsGo(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	funcs, err := Funcs(ef)
	if err != nil {
		t.Fatal(err)
	}
	const want = "github.com/owlbpf/owl/internal/syms.TestFuncsGo"
	var found *Func
	for i := range funcs {
		if funcs[i].Name == want && funcs[i].Go {
			found = &funcs[i]
		}
	}
	if found == nil {
		t.Fatalf("no %s among %d functions", want, len(funcs))
	}
	off, ok := FileOffset(ef, found.Addr)
	text := ef.Section(".text")
	if !ok || text == nil || off < text.Offset || off >= text.Offset+text.Size || found.Size == 0 {
		t.Errorf("%s at %#x (size %d): file offset %#x, %v", want, found.Addr, found.Size, off, ok)
	}
}

// FuzzFuncs: no ELF file, however damaged, makes the function-table reader
// panic.
func FuzzFuncs(f *testing.F) {
	f.Add(tinyELF(nil))
	// The start of a real pclntab (header, function names): its offsets
	// point past the cut, as a damaged file's would.
	if self, err := os.Executable(); err == nil {
		if ef, err := elf.Open(self); err == nil {
			if s := ef.Section(".gopclntab"); s != nil {
				if data, err := s.Data(); err == nil {
					f.Add(tinyELF(data[:min(len(data), 2048)]))
				}
			}
			ef.Close()
		}
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ef, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			return
		}
		funcs, _ := Funcs(ef)
		for _, fn := range funcs {
			FileOffset(ef, fn.Addr)
		}
	})
}
