package syms

import (
	"cmp"
	"errors"
	"fmt"
	"io"
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
	syms []ksym
}

type ksym struct {
	addr   uint64
	name   string
	module string
	rank   int32 // preference among symbols at one address: lower wins
	order  int32 // line number, the last tie-break
}

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
// make the whole table unusable. The kernel has some 200,000 symbols and
// tools read them at startup, so names are slices of one string read at
// once rather than one allocation each.
func ParseKallsyms(r io.Reader) (*Kallsyms, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	text := string(b)
	syms := make([]ksym, 0, strings.Count(text, "\n")+1)
	zeros := 0
	for len(text) > 0 {
		var line string
		line, text, _ = strings.Cut(text, "\n")
		addrField, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		typ, rest, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
		name, mod, _ := strings.Cut(strings.TrimLeft(rest, " "), "\t")
		if len(typ) != 1 || name == "" {
			continue
		}
		rank := strings.IndexByte("TWtw", typ[0])
		addr, ok := parseHex(addrField)
		if rank < 0 || !ok {
			continue
		}
		if addr == 0 {
			zeros++
			continue
		}
		syms = append(syms, ksym{
			addr:   addr,
			name:   strings.TrimSpace(name),
			module: strings.Trim(strings.TrimSpace(mod), "[]"),
			rank:   int32(rank),
			order:  int32(len(syms)),
		})
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
	return &Kallsyms{syms: slices.Clip(out)}, nil
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
	return Frame{Addr: addr, Symbol: s.name, Offset: addr - s.addr, Module: s.module}
}

// Address returns the address of the kept symbol called name.
func (k *Kallsyms) Address(name string) (uint64, bool) {
	for _, s := range k.syms {
		if s.name == name {
			return s.addr, true
		}
	}
	return 0, false
}

// Len is the number of distinct symbol addresses.
func (k *Kallsyms) Len() int { return len(k.syms) }
