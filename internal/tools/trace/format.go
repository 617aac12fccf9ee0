package trace

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"unicode/utf8"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/uprobe"
)

// ErrorValue is a Go error value in JSON: null when nil.
type ErrorValue struct {
	// Type is the dynamic type ("*errors.errorString"), "" when the
	// binary does not tell (stripped of its types' names, or unreadable).
	Type string `json:"type"`
	// Msg is the message of error types whose first field is it
	// (errors.New, fmt.Errorf), else "".
	Msg       string `json:"msg"`
	Truncated bool   `json:"truncated"`
}

// record is what a format needs of one event.
type record struct {
	words [nWords]uint64
	strs  [maxStrings]struct {
		aux   uint64
		flags uint32
		data  []byte
	}
}

// message formats the event of target t into b (the text of the format,
// as BCC's trace prints it) and appends its values to vals.
func (t *target) message(b []byte, vals []any, r *record, types *goTypes) ([]byte, []any) {
	for i, v := range t.p.Format.Verbs {
		b = append(b, t.p.Format.Lits[i]...)
		s := t.verbs[i]
		w := r.words[s.idx]
		if si := t.strs[i]; si >= 0 {
			str := &r.strs[si]
			var val any
			switch t.desc.Strs[si].Kind {
			case strGoErr:
				b, val = appendError(b, w, str.aux, str.flags, str.data, types)
			default:
				b, val = appendString(b, !t.fn.Go && w == 0, str.flags, str.data)
			}
			vals = append(vals, val)
			continue
		}
		bits := v.Bits
		if t.fn.Go && s.size > 0 && len(v.Text) == 2 {
			bits = int(s.size) * 8 // %d of a Go int64 is 64 bits wide
		}
		var val any
		b, val = appendInt(b, v, bits, w)
		vals = append(vals, val)
	}
	// A probe without a format string ('./app:work') has no Lits at all.
	if n := len(t.p.Format.Verbs); n < len(t.p.Format.Lits) {
		b = append(b, t.p.Format.Lits[n]...)
	}
	return b, vals
}

// appendInt formats w as verb v of the given width (C's conversions:
// %d of an int is its low 32 bits, signed).
func appendInt(b []byte, v Verb, bits int, w uint64) ([]byte, any) {
	if bits < 64 {
		w &= 1<<bits - 1
	}
	switch v.Conv {
	case 'd':
		n := int64(w<<(64-bits)) >> (64 - bits) // sign-extend
		return strconv.AppendInt(b, n, 10), n
	case 'x':
		return strconv.AppendUint(b, w, 16), w
	case 'X':
		s := strconv.FormatUint(w, 16)
		for i := range len(s) {
			c := s[i]
			if c >= 'a' {
				c -= 'a' - 'A'
			}
			b = append(b, c)
		}
		return b, w
	case 'p':
		return strconv.AppendUint(append(b, "0x"...), w, 16), w
	case 'c':
		return event.AppendEscaped(b, []byte{byte(w)}), w
	}
	return strconv.AppendUint(b, w, 10), w
}

// appendString prints a string read by the BPF side, escaped, with "..."
// when cut; a NULL char* prints as (null), an unreadable one as
// (unreadable).
func appendString(b []byte, null bool, flags uint32, data []byte) ([]byte, any) {
	switch {
	case null:
		return append(b, "(null)"...), nil
	case flags&strFault != 0:
		return append(b, "(unreadable)"...), nil
	}
	b = event.AppendEscaped(b, data)
	s := string(data)
	if flags&strTrunc != 0 {
		b = append(b, "..."...)
		s += "..."
	}
	return b, s
}

// appendError prints a Go error: nil, or error(TYPE) "MESSAGE" when the
// type is known and its first field is the message, error(TYPE) when not,
// error(?) when the binary does not name the type.
func appendError(b []byte, itab, typ uint64, flags uint32, data []byte, types *goTypes) ([]byte, any) {
	if itab == 0 {
		return append(b, "nil"...), nil
	}
	ev := &ErrorValue{}
	if types != nil {
		ev.Type, _ = types.name(typ)
	}
	name := ev.Type
	if name == "" {
		name = "?"
	}
	b = append(append(append(b, "error("...), event.AppendEscaped(nil, []byte(name))...), ')')
	if messageFirst[ev.Type] && flags&strFault == 0 && utf8.Valid(data) {
		ev.Msg, ev.Truncated = string(data), flags&strTrunc != 0
		b = append(b, ' ')
		b = strconv.AppendQuote(b, ev.Msg)
		if ev.Truncated {
			b = append(b, "..."...)
		}
	}
	return b, ev
}

// messageFirst are error types whose value starts with the message
// string, which the BPF side reads.
var messageFirst = map[string]bool{
	"*errors.errorString": true, // errors.New
	"*fmt.wrapError":      true, // fmt.Errorf with %w
	"*fmt.wrapErrors":     true,
}

// goTypes names the runtime types of one Go binary from its file: a type
// descriptor (abi.Type) holds the offset of its name from the start of the
// module's types, runtime.types, which the linker puts at the start of
// .rodata (the fallback for binaries without a symbol table).
type goTypes struct {
	path  string
	progs []*elf.Prog
	base  uint64
	cache map[uint64]string
}

// Layout of abi.Type (Go 1.17 to 1.26 alike).
const (
	typeTFlagOff  = 20
	typeStrOff    = 40
	typeSize      = 48
	tflagExtraStr = 1 << 1 // the name has a leading '*' to drop
	maxTypeName   = 1024
)

func openGoTypes(path string) (*goTypes, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	defer f.Close()
	g := &goTypes{path: path, cache: map[uint64]string{}}
	if ef.Type != elf.ET_EXEC {
		// Position-independent: type addresses depend on where the
		// process loaded it. Not named.
		return nil, fmt.Errorf("%s: position-independent Go binary: error types are not named", path)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD {
			g.progs = append(g.progs, p)
		}
	}
	if syms, err := ef.Symbols(); err == nil {
		for _, s := range syms {
			if s.Name == "runtime.types" {
				g.base = s.Value
			}
		}
	}
	if g.base == 0 {
		if ro := ef.Section(".rodata"); ro != nil {
			g.base = ro.Addr
		}
	}
	return g, nil
}

// read reads len(b) bytes at virtual address addr of the file f.
func (g *goTypes) read(f *os.File, b []byte, addr uint64) bool {
	for _, p := range g.progs {
		if addr >= p.Vaddr && addr+uint64(len(b)) <= p.Vaddr+p.Filesz {
			_, err := f.ReadAt(b, int64(p.Off+addr-p.Vaddr))
			return err == nil
		}
	}
	return false
}

// name returns the name of the type whose descriptor is at typ.
func (g *goTypes) name(typ uint64) (string, bool) {
	if s, ok := g.cache[typ]; ok {
		return s, s != ""
	}
	s := g.lookup(typ)
	if len(g.cache) < 4096 {
		g.cache[typ] = s
	}
	return s, s != ""
}

// lookup reads the name from the file, opened for the time of the read
// only: the decoder has no close, and names are cached.
func (g *goTypes) lookup(typ uint64) string {
	f, err := os.Open(g.path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var t [typeSize]byte
	if g.base == 0 || !g.read(f, t[:], typ) {
		return ""
	}
	off := int32(binary.LittleEndian.Uint32(t[typeStrOff:]))
	if off <= 0 {
		return ""
	}
	// A name: one byte of flags, a uvarint length, the bytes.
	var hdr [1 + binary.MaxVarintLen32]byte
	at := g.base + uint64(off)
	if !g.read(f, hdr[:], at) {
		return ""
	}
	n, k := binary.Uvarint(hdr[1:])
	if k <= 0 || n == 0 || n > maxTypeName {
		return ""
	}
	name := make([]byte, n)
	if !g.read(f, name, at+1+uint64(k)) || !utf8.Valid(name) {
		return ""
	}
	if t[typeTFlagOff]&tflagExtraStr != 0 && name[0] == '*' {
		name = name[1:]
	}
	return string(name)
}

// goSignatures reads the DWARF signatures of the Go functions among
// funcs, by path; a binary without DWARF has no entry.
func goSignatures(funcs []uprobe.Func) (map[string]map[string]uprobe.GoSignature, error) {
	names := map[string][]string{}
	for _, f := range funcs {
		if f.Go {
			names[f.Path] = append(names[f.Path], f.Symbol)
		}
	}
	out := map[string]map[string]uprobe.GoSignature{}
	for path, ns := range names {
		sigs, err := uprobe.GoSignatures(path, ns)
		if err != nil {
			if errors.Is(err, uprobe.ErrNoDWARF) {
				continue
			}
			return nil, err
		}
		out[path] = sigs
	}
	return out, nil
}
