package uprobe

import (
	"debug/buildinfo"
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// GoidOffset returns the offset of goid in runtime.g of the Go binary at
// path, from its DWARF when it has some (-ldflags=-s strips it), else
// from the Go version in its build info. It returns 0 without an error
// when neither tells: the BPF side then names goroutines by g's address.
// Go before 1.17 has no g register on amd64: an error.
func GoidOffset(path string) (uint32, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("%s: Go build info: %w", path, err)
	}
	minor, ok := goMinor(bi.GoVersion)
	if ok && minor < 17 {
		return 0, fmt.Errorf("%s: built by %s: Go functions are timed in programs of Go 1.17 or later (earlier ones keep no g register)", path, bi.GoVersion)
	}
	if off, err := dwarfGoidFile(path); err == nil {
		return off, nil
	}
	if !ok {
		return 0, nil
	}
	return goidByVersion(minor), nil
}

// goidByVersion is goid's offset in runtime.g for Go 1.minor (amd64 and
// arm64 alike), 0 when not known. Go 1.23 added g.syscallbp before goid
// and Go 1.25 removed gobuf.ret from g.sched before it.
func goidByVersion(minor int) uint32 {
	switch {
	case minor >= 17 && minor <= 22:
		return 152
	case minor >= 23 && minor <= 24:
		return 160
	case minor >= 25 && minor <= 26:
		return 152
	}
	return 0
}

// goMinor parses "go1.26.8", "go1.26rc1" or "go1.26" into 26; "devel ..."
// builds are not versions.
func goMinor(v string) (int, bool) {
	rest, ok := strings.CutPrefix(v, "go1.")
	if !ok {
		return 0, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(rest[:end])
	return n, err == nil
}

var errNoGoid = errors.New("no runtime.g.goid in DWARF")

func dwarfGoidFile(path string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return dwarfGoid(f)
}

// dwarfGoid reads goid's offset from an ELF binary's DWARF: the member
// goid of the structure type runtime.g.
func dwarfGoid(r io.ReaderAt) (uint32, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return 0, err
	}
	if f.Section(".debug_info") == nil && f.Section(".zdebug_info") == nil {
		return 0, errNoGoid
	}
	d, err := f.DWARF()
	if err != nil {
		return 0, err
	}
	dr := d.Reader()
	for {
		e, err := dr.Next()
		if err != nil {
			return 0, err
		}
		if e == nil {
			return 0, errNoGoid
		}
		switch {
		case e.Tag == dwarf.TagCompileUnit:
			// Types are children of compile units: look inside.
		case e.Tag == dwarf.TagStructType && e.Val(dwarf.AttrName) == "runtime.g":
			return memberOffset(dr, "goid")
		case e.Children:
			dr.SkipChildren()
		}
	}
}

// memberOffset finds the member called name among the children of the
// structure r has just read.
func memberOffset(r *dwarf.Reader, name string) (uint32, error) {
	for {
		e, err := r.Next()
		if err != nil {
			return 0, err
		}
		if e == nil || e.Tag == 0 {
			return 0, errNoGoid
		}
		if e.Tag != dwarf.TagMember || e.Val(dwarf.AttrName) != name {
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		off, ok := e.Val(dwarf.AttrDataMemberLoc).(int64)
		if !ok || off <= 0 || off > 1<<16 {
			return 0, fmt.Errorf("runtime.g.%s: bad offset %v", name, e.Val(dwarf.AttrDataMemberLoc))
		}
		return uint32(off), nil
	}
}
