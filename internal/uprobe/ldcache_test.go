package uprobe

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ldCache writes a cache in glibc's new format, as ldconfig 2.36 does:
// header, entries, then the strings, offsets from the header's start.
func ldCache(order binary.ByteOrder, entries []LdEntry) []byte {
	b := make([]byte, ldNewHeader+len(entries)*ldNewEntry)
	copy(b, ldMagicNew)
	order.PutUint32(b[20:], uint32(len(entries)))
	b[28] = ldEndianLittle
	if order == binary.BigEndian {
		b[28] = ldEndianBig
	}
	str := func(s string) uint32 {
		off := uint32(len(b))
		b = append(append(b, s...), 0)
		return off
	}
	for i, e := range entries {
		key, val := str(e.Name), str(e.Path)
		at := ldNewHeader + i*ldNewEntry
		order.PutUint32(b[at:], uint32(e.Flags))
		order.PutUint32(b[at+4:], key)
		order.PutUint32(b[at+8:], val)
		order.PutUint64(b[at+16:], e.HWCap)
	}
	order.PutUint32(b[24:], uint32(len(b)-ldNewHeader-len(entries)*ldNewEntry))
	return b
}

// ldCacheCompat prefixes the new format with an old-format part, as
// glibc before 2.32 wrote by default.
func ldCacheCompat(entries []LdEntry) []byte {
	old := make([]byte, ldOldHeader+len(entries)*ldOldEntry)
	copy(old, ldMagicOld)
	binary.NativeEndian.PutUint32(old[12:], uint32(len(entries)))
	for len(old)%8 != 0 {
		old = append(old, 0)
	}
	return append(old, ldCache(binary.NativeEndian, entries)...)
}

var testEntries = []LdEntry{
	{Name: "libc.so.6", Path: "/lib/i386-linux-gnu/libc.so.6", Flags: ldFlagELFLibc6},                   // 32-bit: skipped
	{Name: "libcrypt.so.1", Path: "/lib/x86_64-linux-gnu/libcrypt.so.1", Flags: ldFlagELFLibc6 | 0x300}, // libc prefix, not libc.so
	{Name: "libc.so.6", Path: "/lib/x86_64-linux-gnu/libc.so.6", Flags: ldFlagELFLibc6 | ldFlagX8664Lib64},
	{Name: "libc.so.6", Path: "/lib/aarch64-linux-gnu/libc.so.6", Flags: ldFlagELFLibc6 | ldFlagAArch64Lib64},
	{Name: "libssl.so.3", Path: "/lib/x86_64-linux-gnu/libssl.so.3", Flags: ldFlagELFLibc6 | ldFlagX8664Lib64},
	{Name: "libssl.so.3", Path: "/lib/aarch64-linux-gnu/libssl.so.3", Flags: ldFlagELFLibc6 | ldFlagAArch64Lib64},
}

func TestLdCache(t *testing.T) {
	want, ok := archFlags()
	if !ok {
		t.Skip("no ld.so.cache flags known for this architecture")
	}
	arch := "x86_64-linux-gnu"
	if want&ldFlagRequiredMask == ldFlagAArch64Lib64 {
		arch = "aarch64-linux-gnu"
	}
	for name, b := range map[string][]byte{
		"little":  ldCache(binary.LittleEndian, testEntries),
		"big":     ldCache(binary.BigEndian, testEntries),
		"compat":  ldCacheCompat(testEntries),
		"trailer": append(ldCache(binary.LittleEndian, testEntries), "extension data"...),
	} {
		entries, err := ParseLdCache(b)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(entries) != len(testEntries) || entries[2] != testEntries[2] {
			t.Errorf("%s: got %+v", name, entries)
		}
		for lib, path := range map[string]string{"c": "/lib/" + arch + "/libc.so.6", "ssl": "/lib/" + arch + "/libssl.so.3", "libssl.so": "/lib/" + arch + "/libssl.so.3"} {
			if got, ok := LookupLib(entries, lib); !ok || got != path {
				t.Errorf("%s: LookupLib(%q) = %q, %v; want %q", name, lib, got, ok, path)
			}
		}
		if got, ok := LookupLib(entries, "nosuch"); ok {
			t.Errorf("%s: LookupLib(nosuch) = %q", name, got)
		}
	}
	good := ldCache(binary.LittleEndian, testEntries)
	for name, b := range map[string][]byte{
		"empty":      nil,
		"magic only": []byte(ldMagicNew),
		"truncated":  good[:ldNewHeader+ldNewEntry],
		"bad string": func() []byte {
			b := append([]byte(nil), good...)
			binary.LittleEndian.PutUint32(b[ldNewHeader+4:], 1<<30)
			return b
		}(),
		"no nul": good[:len(good)-1],
		"huge count": func() []byte {
			b := append([]byte(nil), good...)
			binary.LittleEndian.PutUint32(b[20:], 0xffffffff)
			return b
		}(),
		"old only": []byte(ldMagicOld + "\x00\x05\x00\x00\x00"),
	} {
		if _, err := ParseLdCache(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// This machine's own cache (glibc 2.36 on Debian 12) has libc.
func TestLdCacheOfThisHost(t *testing.T) {
	b, err := os.ReadFile("/etc/ld.so.cache")
	if errors.Is(err, fs.ErrNotExist) {
		t.Skip("no /etc/ld.so.cache here (a static system)")
	}
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ParseLdCache(b)
	if err != nil {
		t.Fatal(err)
	}
	p, ok := LookupLib(entries, "c")
	if !ok || !strings.HasPrefix(filepath.Base(p), "libc.so") {
		t.Fatalf("LookupLib(c) = %q, %v among %d entries", p, ok, len(entries))
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("libc found at %s: %v", p, err)
	}
}

func FuzzLdCache(f *testing.F) {
	f.Add(ldCache(binary.LittleEndian, testEntries))
	f.Add(ldCache(binary.BigEndian, testEntries[:2]))
	f.Add(ldCacheCompat(testEntries[:3]))
	f.Add([]byte(ldMagicOld + "\x00\x05\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseLdCache(b)
		if err != nil {
			return
		}
		if len(entries)*ldNewEntry > len(b) {
			t.Fatalf("%d entries from %d bytes", len(entries), len(b))
		}
		LookupLib(entries, "c")
	})
}
