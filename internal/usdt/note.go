package usdt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Note is one SystemTap SDT note (.note.stapsdt, owner "stapsdt", type
// 3) as the file holds it: addresses are link-time virtual addresses,
// before any adjustment.
type Note struct {
	Provider, Name string
	Loc            uint64 // address of the probe's NOP
	Base           uint64 // address of .stapsdt.base when linked (0: none)
	Semaphore      uint64 // address of the 16-bit enable counter, 0 when none
	Args           string // argument specs, "-4@%eax 8@-8(%rbp)"
}

// noteType is NT_STAPSDT.
const noteType = 3

// noteOwner is the owner of the notes (NUL-terminated in the file).
const noteOwner = "stapsdt"

// maxNoteString bounds a provider, name or argument string: sys/sdt.h
// writes identifiers and up to 12 short specs; anything longer is junk.
const maxNoteString = 4096

// ParseNotes reads the notes of a .note.stapsdt section. addrSize is 8
// for ELF64, 4 for ELF32. Notes of other owners or types are skipped, as
// readelf does; a truncated or malformed SDT note is an error (the file is
// anyone's to write, so nothing here trusts a length).
func ParseNotes(sec []byte, order binary.ByteOrder, addrSize int) ([]Note, error) {
	if addrSize != 4 && addrSize != 8 {
		return nil, fmt.Errorf("address size %d: want 4 or 8", addrSize)
	}
	var notes []Note
	for off := 0; off < len(sec); {
		if len(sec)-off < 12 {
			return notes, fmt.Errorf("note at %#x: %d bytes left, a header needs 12", off, len(sec)-off)
		}
		namesz := uint64(order.Uint32(sec[off:]))
		descsz := uint64(order.Uint32(sec[off+4:]))
		typ := order.Uint32(sec[off+8:])
		nameAt := uint64(off) + 12
		descAt := nameAt + align4(namesz)
		next := descAt + align4(descsz)
		if next > uint64(len(sec)) {
			return notes, fmt.Errorf("note at %#x: name of %d and description of %d bytes overrun the section (%d bytes)", off, namesz, descsz, len(sec))
		}
		name := sec[nameAt : nameAt+namesz]
		desc := sec[descAt : descAt+descsz]
		if typ == noteType && string(bytes.TrimRight(name, "\x00")) == noteOwner {
			n, err := parseNote(desc, order, addrSize)
			if err != nil {
				return notes, fmt.Errorf("note at %#x: %w", off, err)
			}
			notes = append(notes, n)
		}
		off = int(next)
	}
	return notes, nil
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// parseNote reads a description: three addresses, then provider, name and
// arguments, each NUL-terminated.
func parseNote(desc []byte, order binary.ByteOrder, addrSize int) (Note, error) {
	if len(desc) < 3*addrSize {
		return Note{}, fmt.Errorf("description of %d bytes: the three addresses need %d", len(desc), 3*addrSize)
	}
	addr := func(i int) uint64 {
		if addrSize == 4 {
			return uint64(order.Uint32(desc[i*4:]))
		}
		return order.Uint64(desc[i*8:])
	}
	n := Note{Loc: addr(0), Base: addr(1), Semaphore: addr(2)}
	rest := desc[3*addrSize:]
	var strs [3]string
	for i := range strs {
		if i == 2 && len(rest) == 0 {
			break // no argument string at all: a probe without arguments
		}
		end := bytes.IndexByte(rest, 0)
		if end < 0 {
			return Note{}, errors.New("provider, name and arguments are not NUL-terminated")
		}
		if end > maxNoteString {
			return Note{}, fmt.Errorf("string of %d bytes: at most %d", end, maxNoteString)
		}
		strs[i] = string(rest[:end])
		rest = rest[end+1:]
	}
	n.Provider, n.Name, n.Args = strs[0], strs[1], strs[2]
	if n.Provider == "" || n.Name == "" {
		return Note{}, errors.New("empty provider or probe name")
	}
	return n, nil
}
