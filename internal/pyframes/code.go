package pyframes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// code is what a frame is named by, read once per code object.
type code struct {
	name, file string
	firstLine  int
	lines      []byte // co_linetable or co_lnotab
}

// Limits on what is read of a code object: names and paths longer than
// this are cut, line tables longer are not read (lines then say 0).
const (
	maxString    = 1024
	maxLineTable = 64 << 10
)

// readCode reads the code object at addr of the process, checking that it
// is one (its type is PyCode_Type): a stack taken while the interpreter
// was between two states may point anywhere.
func (in *interp) readCode(mem memory, addr uint64) (*code, error) {
	cl := in.code
	head := make([]byte, max(cl.name, cl.filename, cl.firstline, cl.linetable)+8)
	if err := mem.read(addr, head); err != nil {
		return nil, err
	}
	if typ := binary.LittleEndian.Uint64(head[8:]); typ != in.codeType {
		return nil, fmt.Errorf("%#x is no code object (type %#x)", addr, typ)
	}
	c := &code{firstLine: int(int32(binary.LittleEndian.Uint32(head[cl.firstline:])))}
	var err error
	if c.name, err = in.readString(mem, binary.LittleEndian.Uint64(head[cl.name:])); err != nil {
		return nil, fmt.Errorf("name: %w", err)
	}
	if c.file, err = in.readString(mem, binary.LittleEndian.Uint64(head[cl.filename:])); err != nil {
		return nil, fmt.Errorf("file name: %w", err)
	}
	// bytes: PyVarObject (ob_size at 16), hash, then the bytes at 32.
	if lt := binary.LittleEndian.Uint64(head[cl.linetable:]); lt != 0 {
		if n, err := mem.u64(lt + 16); err == nil && n > 0 && n <= maxLineTable {
			c.lines = make([]byte, n)
			if mem.read(lt+32, c.lines) != nil {
				c.lines = nil
			}
		}
	}
	return c, nil
}

// readString reads a str object: a compact one (as every identifier and
// file name a code object holds is), in UTF-8.
func (in *interp) readString(mem memory, addr uint64) (string, error) {
	if addr == 0 {
		return "", errors.New("NULL")
	}
	var h [40]byte // ob_refcnt, ob_type, length, hash, state
	if err := mem.read(addr, h[:36]); err != nil {
		return "", err
	}
	n := binary.LittleEndian.Uint64(h[16:])
	state := binary.LittleEndian.Uint32(h[32:])
	kind := uint64(state >> 2 & 7)
	compact, ascii := state>>5&1 != 0, state>>6&1 != 0
	if !compact || kind == 0 || kind == 3 || kind > 4 {
		return "", fmt.Errorf("str at %#x: not compact (state %#x)", addr, state)
	}
	n = min(n, maxString)
	data := addr + in.lay.compact
	if ascii {
		data = addr + in.lay.ascii
	}
	b := make([]byte, n*kind)
	if n == 0 {
		return "", nil
	}
	if err := mem.read(data, b); err != nil {
		return "", err
	}
	if kind == 1 && ascii {
		return string(b), nil
	}
	out := make([]byte, 0, len(b))
	for i := uint64(0); i < n; i++ {
		var r rune
		switch kind {
		case 1:
			r = rune(b[i])
		case 2:
			r = rune(binary.LittleEndian.Uint16(b[2*i:]))
		case 4:
			r = rune(binary.LittleEndian.Uint32(b[4*i:]))
		}
		out = utf8.AppendRune(out, r)
	}
	return string(out), nil
}

// line is the source line of the instruction a frame is at: ip is the
// frame's instruction pointer (3.11+) or f_lasti (≤ 3.10), codeAddr the
// code object's address. 0 when unknown.
func (in *interp) line(c *code, codeAddr, ip uint64) int {
	switch {
	case in.minor >= 11:
		start := codeAddr + in.code.code
		if ip < start {
			return c.firstLine
		}
		return lineOfLocations(c.lines, c.firstLine, int((ip-start)/2))
	case in.minor == 10:
		return lineOf310(c.lines, c.firstLine, 2*int(int32(ip))) // lasti counts code units
	default:
		return lineOfLnotab(c.lines, c.firstLine, int(int32(ip))) // lasti is a byte offset
	}
}

// lineOfLocations reads 3.11+'s location table (Objects/locations.md) up
// to instruction index: entries of one header byte (code, length in code
// units) and varint fields; only the line delta matters here.
func lineOfLocations(t []byte, first, index int) int {
	line, addr := first, 0
	for i := 0; i < len(t); {
		h := t[i]
		i++
		kind, length := int(h>>3&15), int(h&7)+1
		delta, none := 0, false
		switch {
		case kind == 15:
			none = true
		case kind == 14: // long form: line delta, end line, column, end column
			delta, i = svarint(t, i)
			for range 3 {
				_, i = varint(t, i)
			}
		case kind == 13: // no column
			delta, i = svarint(t, i)
		case kind >= 10: // one line: delta kind-10, two column bytes
			delta = kind - 10
			i += 2
		default: // short form: same line, one column byte
			i++
		}
		line += delta
		if index < addr+length {
			if none {
				return 0
			}
			return line
		}
		addr += length
	}
	return 0
}

func varint(t []byte, i int) (int, int) {
	if i >= len(t) {
		return 0, i
	}
	b := t[i]
	i++
	v, shift := int(b&63), 0
	for b&64 != 0 && i < len(t) {
		b = t[i]
		i++
		shift += 6
		v |= int(b&63) << shift
	}
	return v, i
}

func svarint(t []byte, i int) (int, int) {
	u, i := varint(t, i)
	if u&1 != 0 {
		return -(u >> 1), i
	}
	return u >> 1, i
}

// lineOf310 reads 3.10's co_linetable: (byte delta, signed line delta)
// pairs, -128 meaning no line.
func lineOf310(t []byte, first, addr int) int {
	line, start := first, 0
	for i := 0; i+1 < len(t); i += 2 {
		end := start + int(t[i])
		d := int(int8(t[i+1]))
		if d != -128 {
			line += d
		}
		if addr < end {
			if d == -128 {
				return 0
			}
			return line
		}
		start = end
	}
	return 0
}

// lineOfLnotab reads ≤ 3.9's co_lnotab: (byte increment, signed line
// increment) pairs from the first line.
func lineOfLnotab(t []byte, first, addr int) int {
	line, at := first, 0
	for i := 0; i+1 < len(t); i += 2 {
		at += int(t[i])
		if at > addr {
			break
		}
		line += int(int8(t[i+1]))
	}
	return line
}
