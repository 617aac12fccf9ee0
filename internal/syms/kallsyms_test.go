package syms

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

const kallsymsSample = `ffffffff81000000 T srso_alias_untrain_ret
ffffffff81000000 t _stext_local
ffffffff81000000 T _stext
ffffffff81000100 t helper
ffffffff81000200 D some_data
ffffffff81000300 W weak_fn
0000000000000000 A fixed_percpu_data
not a line
ffffffff81000400 X odd_type
zzzz T bad_addr
ffffffffc0a01000 t nft_do_chain	[nf_tables]
ffffffffc0a01800 T nft_register	[nf_tables]
`

func TestParseKallsyms(t *testing.T) {
	k, err := ParseKallsyms(strings.NewReader(kallsymsSample))
	if err != nil {
		t.Fatal(err)
	}
	if k.Len() != 5 {
		t.Errorf("%d symbols, want 5", k.Len())
	}
	for _, c := range []struct {
		addr uint64
		want string
		mod  string
	}{
		{0xffffffff81000000, "srso_alias_untrain_ret+0x0", ""}, // first global of the aliases
		{0xffffffff81000010, "srso_alias_untrain_ret+0x10", ""},
		{0xffffffff81000250, "helper+0x150", ""}, // data symbols do not cut text
		{0xffffffff81000300, "weak_fn+0x0", ""},
		{0xffffffffc0a01004, "nft_do_chain+0x4", "nf_tables"},
		{0xffffffffc0a01900, "nft_register+0x100", "nf_tables"},
		{0x1000, "[unknown]", ""},
	} {
		f := k.Resolve(c.addr)
		if f.String() != c.want || f.Module != c.mod || f.Addr != c.addr {
			t.Errorf("Resolve(%#x) = %+v, want %s [%s]", c.addr, f, c.want, c.mod)
		}
	}
	if a, ok := k.Address("helper"); !ok || a != 0xffffffff81000100 {
		t.Errorf("Address(helper) = %#x %v", a, ok)
	}
}

func TestParseKallsymsRestricted(t *testing.T) {
	in := "0000000000000000 T _stext\n0000000000000000 t helper\t[mod]\n"
	if _, err := ParseKallsyms(strings.NewReader(in)); !errors.Is(err, ErrKptrRestrict) {
		t.Errorf("zeros: %v, want ErrKptrRestrict", err)
	}
	if _, err := ParseKallsyms(strings.NewReader("")); err == nil {
		t.Error("empty input accepted")
	}
}

// TestLoadKallsyms resolves the real addresses of syscall functions, read
// from /proc/kallsyms by the test itself, back to their names.
func TestLoadKallsyms(t *testing.T) {
	needRoot(t)
	k, err := LoadKallsyms()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(KallsymsPath)
	if err != nil {
		t.Fatal(err)
	}
	byAddr := map[uint64][]string{}
	want := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		a, _ := strconv.ParseUint(f[0], 16, 64)
		byAddr[a] = append(byAddr[a], f[2])
		if f[2] == "do_sys_openat2" || f[2] == "__x64_sys_chroot" {
			want[f[2]] = a
		}
	}
	if len(want) == 0 {
		t.Fatal("neither do_sys_openat2 nor __x64_sys_chroot in kallsyms")
	}
	for name, addr := range want {
		f := k.Resolve(addr)
		if f.Offset != 0 || (f.Symbol != name && len(byAddr[addr]) == 1) {
			t.Errorf("Resolve(%#x) = %s, want %s+0x0 (or an alias of it: %v)", addr, f, name, byAddr[addr])
		}
		if f := k.Resolve(addr + 3); f.Offset != 3 {
			t.Errorf("Resolve(%#x+3) = %s", addr, f)
		}
		t.Logf("%s at %#x: %s", name, addr, f)
	}
	t.Logf("%d kernel text symbols", k.Len())
}
