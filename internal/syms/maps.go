package syms

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64 // [Start, End)
	Perms      string // "r-xp"
	Offset     uint64 // file offset of Start
	Major      uint32 // device of the file
	Minor      uint32
	Inode      uint64
	Path       string // file, "[heap]"-like pseudo name, or "" when anonymous
}

// Exec reports whether the mapping holds code.
func (m Mapping) Exec() bool { return len(m.Perms) > 2 && m.Perms[2] == 'x' }

// Deleted reports a file that was removed or replaced after it was mapped:
// its path now names nothing, or another file.
func (m Mapping) Deleted() bool { return strings.HasSuffix(m.Path, " (deleted)") }

// File reports whether the mapping is backed by a file (not anonymous,
// not a kernel pseudo mapping like [vdso] or [stack]).
func (m Mapping) File() bool { return m.Inode != 0 && strings.HasPrefix(m.Path, "/") }

// Module is the name frames carry: the path's base name.
func (m Mapping) Module() string {
	p := strings.TrimSuffix(m.Path, " (deleted)")
	return p[strings.LastIndexByte(p, '/')+1:]
}

// ReadMaps reads /proc/PID/maps.
func ReadMaps(pid int) ([]Mapping, error) {
	path := fmt.Sprintf("/proc/%d/maps", pid)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	maps, err := ParseMaps(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return maps, nil
}

// ParseMaps reads lines like
// "55d5c1a00000-55d5c1a02000 r-xp 00001000 08:01 1234    /usr/bin/cat".
// The kernel writes them in address order. Paths may contain spaces.
func ParseMaps(r io.Reader) ([]Mapping, error) {
	var maps []Mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var f [5]string
		for i := range f {
			line = strings.TrimLeft(line, " ")
			f[i], line, _ = strings.Cut(line, " ")
		}
		start, end, _ := strings.Cut(f[0], "-")
		major, minor, _ := strings.Cut(f[3], ":")
		m := Mapping{Perms: f[1], Path: strings.TrimLeft(line, " ")}
		var errs [6]error
		var ma, mi uint64
		m.Start, errs[0] = strconv.ParseUint(start, 16, 64)
		m.End, errs[1] = strconv.ParseUint(end, 16, 64)
		m.Offset, errs[2] = strconv.ParseUint(f[2], 16, 64)
		ma, errs[3] = strconv.ParseUint(major, 16, 32)
		mi, errs[4] = strconv.ParseUint(minor, 16, 32)
		m.Inode, errs[5] = strconv.ParseUint(f[4], 10, 64)
		for _, err := range errs {
			if err != nil {
				return nil, fmt.Errorf("bad maps line %q: %w", sc.Text(), err)
			}
		}
		m.Major, m.Minor = uint32(ma), uint32(mi)
		maps = append(maps, m)
	}
	return maps, sc.Err()
}
