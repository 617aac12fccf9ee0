package uprobe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
)

// Library names ("c" in c:malloc) are found as BCC finds them: the first
// entry of the dynamic loader's cache, /etc/ld.so.cache, whose name starts
// with "lib" + name + ".so" and which is built for this architecture.

// LdEntry is one library of ld.so.cache.
type LdEntry struct {
	Name  string // the soname, "libc.so.6"
	Path  string // "/lib/x86_64-linux-gnu/libc.so.6"
	Flags int32  // FLAG_ELF_LIBC6 | FLAG_X8664_LIB64 and the like
	HWCap uint64
}

// The cache formats of glibc's sysdeps/generic/dl-cache.h. glibc 2.32 and
// later write only the new format ("glibc-ld.so.cache1.1"); older ones
// write the old format ("ld.so-1.7.0") followed by the new one.
const (
	ldMagicNew = "glibc-ld.so.cache1.1"
	ldMagicOld = "ld.so-1.7.0"

	ldNewHeader = 48 // magic, version, nlibs, len_strings, flags, padding, extension_offset, unused
	ldNewEntry  = 24 // flags, key, value, osversion, hwcap
	ldOldHeader = 16 // magic padded to 12, nlibs
	ldOldEntry  = 12 // flags, key, value

	// Byte order recorded in the new header's flags (glibc 2.33+; 0 in
	// older files, which are in the host's order).
	ldEndianUnset  = 0
	ldEndianLittle = 2
	ldEndianBig    = 3

	ldFlagTypeMask     = 0x00ff
	ldFlagELFLibc6     = 0x0003
	ldFlagRequiredMask = 0xff00
	ldFlagX8664Lib64   = 0x0300
	ldFlagAArch64Lib64 = 0x0a00
)

// ParseLdCache reads the entries of an ld.so.cache file. Everything in it
// is checked against its size: a damaged or hostile cache is an error,
// never a panic or a huge allocation.
func ParseLdCache(b []byte) ([]LdEntry, error) {
	start := 0
	if bytes.HasPrefix(b, []byte(ldMagicOld)) {
		// The old format, then the new one at the next 8-byte boundary.
		if len(b) < ldOldHeader {
			return nil, errors.New("ld.so.cache: truncated header")
		}
		n := uint64(binary.NativeEndian.Uint32(b[12:]))
		end := (ldOldHeader + n*ldOldEntry + 7) &^ 7
		if end > uint64(len(b)) {
			return nil, errors.New("ld.so.cache: old-format entries run past the end and no new format follows")
		}
		start = int(end)
	}
	b = b[start:]
	if !bytes.HasPrefix(b, []byte(ldMagicNew)) {
		return nil, errors.New("ld.so.cache: not the glibc-ld.so.cache1.1 format")
	}
	if len(b) < ldNewHeader {
		return nil, errors.New("ld.so.cache: truncated header")
	}
	var order binary.ByteOrder = binary.NativeEndian
	switch b[28] {
	case ldEndianUnset:
	case ldEndianLittle:
		order = binary.LittleEndian
	case ldEndianBig:
		order = binary.BigEndian
	default:
		return nil, fmt.Errorf("ld.so.cache: unknown byte order flag %d", b[28])
	}
	n := uint64(order.Uint32(b[20:]))
	if ldNewHeader+n*ldNewEntry > uint64(len(b)) {
		return nil, fmt.Errorf("ld.so.cache: %d entries do not fit in %d bytes", n, len(b))
	}
	// Strings are offsets from the start of the new-format header.
	str := func(off uint32) (string, bool) {
		if uint64(off) >= uint64(len(b)) {
			return "", false
		}
		s := b[off:]
		end := bytes.IndexByte(s, 0)
		if end < 0 {
			return "", false
		}
		return string(s[:end]), true
	}
	entries := make([]LdEntry, 0, n)
	for i := uint64(0); i < n; i++ {
		e := b[ldNewHeader+i*ldNewEntry:]
		name, ok1 := str(order.Uint32(e[4:]))
		path, ok2 := str(order.Uint32(e[8:]))
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("ld.so.cache: entry %d names a string outside the file", i)
		}
		entries = append(entries, LdEntry{Name: name, Path: path, Flags: int32(order.Uint32(e)), HWCap: order.Uint64(e[16:])})
	}
	return entries, nil
}

// archFlags are the ld.so.cache flags of a 64-bit glibc library of this
// architecture, as BCC's match_so_flags wants them.
func archFlags() (int32, bool) {
	switch runtime.GOARCH {
	case "amd64":
		return ldFlagELFLibc6 | ldFlagX8664Lib64, true
	case "arm64":
		return ldFlagELFLibc6 | ldFlagAArch64Lib64, true
	}
	return 0, false
}

// LookupLib finds library name in the cache entries as BCC does: the first
// entry for this architecture whose soname starts with "lib" + name +
// ".so" ("c" → libc.so.6); a name written as a soname prefix ("libc.so.6",
// "libssl.so") is taken as it is.
func LookupLib(entries []LdEntry, name string) (string, bool) {
	want, ok := archFlags()
	prefix := "lib" + name + ".so"
	if strings.HasPrefix(name, "lib") && strings.Contains(name, ".so") {
		prefix = name
	}
	for _, e := range entries {
		if ok && e.Flags&(ldFlagTypeMask|ldFlagRequiredMask) != want {
			continue
		}
		if strings.HasPrefix(e.Name, prefix) {
			return e.Path, true
		}
	}
	return "", false
}
