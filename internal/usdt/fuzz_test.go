package usdt

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// tinyELF is an x86-64 executable of one PT_LOAD segment (read, execute)
// whose .note.stapsdt holds notes, with a .stapsdt.base: the smallest file
// Read finds probes in.
func tinyELF(notes []byte) []byte {
	le := binary.LittleEndian
	const vaddr = 0x400000
	shstrtab := []byte("\x00.text\x00.note.stapsdt\x00.stapsdt.base\x00.shstrtab\x00")
	b := make([]byte, 0x100)
	textOff := len(b)
	b = append(b, 0x90, 0x90, 0x90, 0xc3)
	baseOff := len(b)
	b = append(b, 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	notesOff := len(b)
	b = append(b, notes...)
	shstrOff := len(b)
	b = append(b, shstrtab...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	shOff := len(b)
	sh := func(name, typ uint32, flags, addr uint64, off, size int) {
		h := make([]byte, 64)
		le.PutUint32(h, name)
		le.PutUint32(h[4:], typ)
		le.PutUint64(h[8:], flags)
		le.PutUint64(h[16:], addr)
		le.PutUint64(h[24:], uint64(off))
		le.PutUint64(h[32:], uint64(size))
		le.PutUint64(h[48:], 1)
		b = append(b, h...)
	}
	sh(0, 0, 0, 0, 0, 0)
	sh(1, 1, 6, vaddr+uint64(textOff), textOff, 4)  // .text: PROGBITS, ALLOC|EXEC
	sh(7, 7, 0, 0, notesOff, len(notes))            // .note.stapsdt: NOTE
	sh(21, 1, 2, vaddr+uint64(baseOff), baseOff, 1) // .stapsdt.base
	sh(35, 3, 0, 0, shstrOff, len(shstrtab))        // .shstrtab
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], 2)  // ET_EXEC
	le.PutUint16(b[18:], 62) // EM_X86_64
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[24:], vaddr+uint64(textOff))
	le.PutUint64(b[32:], 64) // program headers
	le.PutUint64(b[40:], uint64(shOff))
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], 1)
	le.PutUint16(b[58:], 64)
	le.PutUint16(b[60:], 5)
	le.PutUint16(b[62:], 4)
	ph := b[64:]
	le.PutUint32(ph, 1)     // PT_LOAD
	le.PutUint32(ph[4:], 5) // R|X
	le.PutUint64(ph[16:], vaddr)
	le.PutUint64(ph[24:], vaddr)
	le.PutUint64(ph[32:], uint64(len(b)))
	le.PutUint64(ph[40:], uint64(len(b)))
	le.PutUint64(ph[48:], 0x1000)
	return b
}

func TestTinyELF(t *testing.T) {
	notes := note("stapsdt", 3, sdtDesc(0x400101, 0x400104, 0, "prov", "probe1", "-4@%eax 8@-8(%rbp)"))
	probes, err := Read(bytes.NewReader(tinyELF(notes)))
	if err != nil || len(probes) != 1 || probes[0].ID() != "prov:probe1" || probes[0].Offset != 0x101 || len(probes[0].Args) != 2 {
		t.Fatalf("got %+v, %v", probes, err)
	}
}

// FuzzRead: no file, however damaged, makes Read panic or return probes
// that are not in the file; its errors are one line.
func FuzzRead(f *testing.F) {
	f.Add(tinyELF(note("stapsdt", 3, sdtDesc(0x400101, 0x400104, 0, "prov", "probe1", "-4@%eax 8@-8(%rbp)"))))
	f.Add(tinyELF(note("stapsdt", 3, sdtDesc(0x400101, 0x400104, 0x400104, "p", "n", "8@sym(%rip)"))))
	f.Add(tinyELF(nil))
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		probes, err := Read(bytes.NewReader(b))
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of several lines: %v", err)
			}
			return
		}
		for _, p := range probes {
			if p.Offset >= uint64(len(b)) {
				t.Errorf("probe %s at file offset %#x, beyond the %d-byte file", p.ID(), p.Offset, len(b))
			}
		}
	})
}
