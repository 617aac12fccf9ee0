package syms

import (
	"bytes"
	"strings"
	"testing"
)

const perfMapSample = `7f0000001000 100 LazyCompile:~main file:///app/main.js:1:1
7f0000001100 80 Builtin:ArgumentsAdaptorTrampoline
garbage line
7f0000001200 zz bad_size
7f0000001300 0 empty_size
7f0000001400 10
0x7f0000002000 0x20 with_prefix
7f0000001040 20 jit_overwrite
ffffffffffffff00 1000 wraps
`

func TestParsePerfMap(t *testing.T) {
	m, err := ParsePerfMap(strings.NewReader(perfMapSample))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr uint64
		name string
		off  uint64
	}{
		{0x7f0000001000, "LazyCompile:~main file:///app/main.js:1:1", 0},
		{0x7f000000103f, "LazyCompile:~main file:///app/main.js:1:1", 0x3f},
		{0x7f0000001040, "jit_overwrite", 0}, // the later line wins
		{0x7f000000105f, "jit_overwrite", 0x1f},
		{0x7f0000001060, "LazyCompile:~main file:///app/main.js:1:1", 0x60}, // and only where it overlaps
		{0x7f00000010ff, "LazyCompile:~main file:///app/main.js:1:1", 0xff},
		{0x7f0000001100, "Builtin:ArgumentsAdaptorTrampoline", 0},
		{0x7f0000001180, "", 0},
		{0x7f0000001300, "", 0},
		{0x7f0000002010, "with_prefix", 0x10},
		{0xffffffffffffffff, "", 0}, // end clamped, exclusive
		{0xfffffffffffffffe, "wraps", 0xfe},
		{0x1000, "", 0},
	} {
		name, off, ok := m.Lookup(c.addr)
		if name != c.name || off != c.off || ok != (c.name != "") {
			t.Errorf("Lookup(%#x) = %q+%#x %v, want %q+%#x", c.addr, name, off, ok, c.name, c.off)
		}
	}
}

// naiveLookup is the definition Lookup must match: the last line covering
// addr.
func naiveLookup(entries []*perfEntry, addr uint64) (string, uint64, bool) {
	for i := len(entries) - 1; i >= 0; i-- {
		if e := entries[i]; e.start <= addr && addr < e.end {
			return e.name, addr - e.start, true
		}
	}
	return "", 0, false
}

func FuzzPerfMap(f *testing.F) {
	f.Add([]byte(perfMapSample))
	f.Add([]byte("1000 100 a\n1050 10 b\n1000 100 c\n1020 1 d\n"))
	f.Add([]byte("10 10 x\n0 ffffffffffffffff y\n18 8 z"))
	f.Add([]byte("ffffffffffffffff 1 top\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParsePerfMap(bytes.NewReader(data))
		if err != nil {
			return // lines over 1 MiB
		}
		entries, _ := readPerfEntries(bytes.NewReader(data))
		for i, s := range m.segs {
			if s.start >= s.end || (i > 0 && m.segs[i-1].end > s.start) {
				t.Fatalf("segments not sorted and disjoint: %+v", m.segs)
			}
		}
		if len(entries) > 200 {
			return // the naive check is quadratic
		}
		for _, e := range entries {
			for _, a := range []uint64{e.start - 1, e.start, e.start + (e.end-e.start)/2, e.end - 1, e.end} {
				name, off, ok := m.Lookup(a)
				wn, wo, wok := naiveLookup(entries, a)
				if name != wn || off != wo || ok != wok {
					t.Fatalf("Lookup(%#x) = %q+%#x %v, want %q+%#x %v", a, name, off, ok, wn, wo, wok)
				}
			}
		}
	})
}

func FuzzKallsyms(f *testing.F) {
	f.Add([]byte(kallsymsSample))
	f.Add([]byte("0000000000000000 T _stext\n"))
	f.Add([]byte("ffffffffffffffff T top\n0000000000000001 t low\t[m]\n0000000000000001 W low2\n"))
	f.Add([]byte("1 T a b c d e\n\n\t\t\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKallsyms(bytes.NewReader(data))
		if err != nil {
			return
		}
		for i, s := range k.syms {
			if s.addr == 0 || (i > 0 && k.syms[i-1].addr >= s.addr) {
				t.Fatalf("symbols not sorted and distinct: %+v", k.syms)
			}
			for _, a := range []uint64{s.addr - 1, s.addr, s.addr + 1} {
				f := k.Resolve(a)
				if a == s.addr && (f.Symbol != k.name(s) || f.Offset != 0) {
					t.Fatalf("Resolve(%#x) = %+v, want %s", a, f, k.name(s))
				}
				_ = f.String()
			}
		}
	})
}
