package syms

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
)

// KallsymsPath is where the kernel lists its symbols.
const KallsymsPath = "/proc/kallsyms"

// ErrKptrRestrict reports a kallsyms whose addresses are all zero: the
// kernel hides them from readers without CAP_SYSLOG when
// kernel.kptr_restrict is set, and symbolizing against zeros would name
// every address wrongly.
var ErrKptrRestrict = errors.New("kallsyms addresses are all zero (hidden by kernel.kptr_restrict; run as root or lower it)")

// Kallsyms is the kernel's text symbols sorted by address. It is read-only
// once built and safe for concurrent use.
type Kallsyms struct {
	syms    []ksym
	names   string   // every kept name, back to back
	modules []string // module names; ksym.module indexes it, 0 is none
}

// ksym is one symbol, 24 bytes: the kernel has ~100,000 text symbols,
// and one string header per name and per module would double their size.
type ksym struct {
	addr    uint64
	nameOff uint32 // in Kallsyms.names
	nameLen uint16
	module  uint16
	order   int32 // line number, the last tie-break
	rank    int8  // preference among symbols at one address: lower wins
}

func (k *Kallsyms) name(s ksym) string { return k.names[s.nameOff : s.nameOff+uint32(s.nameLen)] }

// LoadKallsyms reads /proc/kallsyms.
func LoadKallsyms() (*Kallsyms, error) {
	f, err := os.Open(KallsymsPath)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", KallsymsPath, err)
	}
	defer f.Close()
	k, err := ParseKallsyms(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", KallsymsPath, err)
	}
	return k, nil
}

// ParseKallsyms reads lines like "ffffffff81000000 T _stext" or
// "ffffffffc0a01000 t foo\t[mod]". Only text symbols are kept: stacks hold
// code addresses, and data symbols in between would only cut text ranges
// short. Malformed lines are skipped, so that a format extension does not
// make the whole table unusable. The file (~6 MB for some 200,000
// symbols) is read line by line and only the text symbols' names are
// kept, in one string: a few MB where holding the file would take
// several times that (capable -K reads it while running).
func ParseKallsyms(r io.Reader) (*Kallsyms, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var (
		syms    []ksym
		names   []byte
		modules = []string{""}
		modIdx  = map[string]uint16{"": 0}
		zeros   int
		line    int32
	)
	for sc.Scan() {
		line++
		addrField, rest, _ := bytes.Cut(bytes.TrimSpace(sc.Bytes()), []byte(" "))
		typ, rest, _ := bytes.Cut(bytes.TrimLeft(rest, " "), []byte(" "))
		name, mod, _ := bytes.Cut(bytes.TrimLeft(rest, " "), []byte("\t"))
		name = bytes.TrimSpace(name)
		if len(typ) != 1 || len(name) == 0 || len(name) > math.MaxUint16 {
			continue
		}
		rank := strings.IndexByte("TWtw", typ[0])
		if rank < 0 {
			continue
		}
		addr, ok := parseHex(string(addrField))
		if !ok {
			continue
		}
		if addr == 0 {
			zeros++
			continue
		}
		mi, ok := modIdx[string(bytes.Trim(bytes.TrimSpace(mod), "[]"))]
		if !ok {
			if len(modules) > math.MaxUint16 {
				continue
			}
			m := string(bytes.Trim(bytes.TrimSpace(mod), "[]"))
			mi = uint16(len(modules))
			modIdx[m] = mi
			modules = append(modules, m)
		}
		if len(names)+len(name) > math.MaxUint32 {
			break
		}
		syms = append(syms, ksym{addr: addr, nameOff: uint32(len(names)), nameLen: uint16(len(name)),
			module: mi, order: line, rank: int8(rank)})
		names = append(names, name...)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(syms) == 0 {
		if zeros > 0 {
			return nil, ErrKptrRestrict
		}
		return nil, errors.New("no text symbols")
	}
	// Several names often share an address (_text, _stext): keep one,
	// preferring global over weak over local, then the first listed.
	slices.SortFunc(syms, func(a, b ksym) int {
		if c := cmp.Compare(a.addr, b.addr); c != 0 {
			return c
		}
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		return cmp.Compare(a.order, b.order)
	})
	out := syms[:1]
	for _, s := range syms[1:] {
		if s.addr != out[len(out)-1].addr {
			out = append(out, s)
		}
	}
	return &Kallsyms{syms: slices.Clip(out), names: string(names), modules: modules}, nil
}

// parseHex parses up to 16 hex digits without a prefix.
func parseHex(b string) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range []byte(b) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(c)
	}
	return v, true
}

// Resolve names a kernel address as the closest symbol at or below it.
// Kallsyms has no sizes, so an address past the end of a function is
// attributed to it, as BCC and perf do.
func (k *Kallsyms) Resolve(addr uint64) Frame {
	i := sort.Search(len(k.syms), func(i int) bool { return k.syms[i].addr > addr }) - 1
	if i < 0 {
		return Frame{Addr: addr, Symbol: Unknown}
	}
	s := k.syms[i]
	return Frame{Addr: addr, Symbol: k.name(s), Offset: addr - s.addr, Module: k.modules[s.module]}
}

// Address returns the address of the kept symbol called name.
func (k *Kallsyms) Address(name string) (uint64, bool) {
	for _, s := range k.syms {
		if k.name(s) == name {
			return s.addr, true
		}
	}
	return 0, false
}

// Len is the number of distinct symbol addresses.
func (k *Kallsyms) Len() int { return len(k.syms) }
