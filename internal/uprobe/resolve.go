package uprobe

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ianlancetaylor/demangle"

	"github.com/owlbpf/owl/internal/syms"
)

// Func is one function a Spec resolved to.
type Func struct {
	// Path is the ELF file to attach to: absolute, through /proc/PID/root
	// for a process in another mount namespace.
	Path   string
	Symbol string // raw name (ELF symbol or Go pclntab name)
	// Name is the name users see: C++ and Rust names demangled, Go and C
	// names as they are.
	Name   string
	Offset uint64 // file offset of the function's first instruction
	// Entry is where entry probes go: Offset, or for a Go function past
	// the stack check that morestack re-runs (goEntry), so that one call
	// is one hit.
	Entry uint64
	Size  uint64 // function size in bytes, 0 if unknown
	// Go marks a function of a Go binary: uretprobes corrupt Go stacks
	// (bcc#1320, golang/go#22008), so returns are taken at Rets instead.
	Go bool
	// Rets are the file offsets of every RET instruction (Go functions
	// only, filled by Resolve when Options.Rets).
	Rets []uint64
	// RetsErr says why Rets is empty for a Go function when Options.Rets:
	// it never returns (runtime.throw), leaves by a tail jump, or holds
	// instructions the decoder does not know (AVX assembly). A tool that
	// needs returns skips such functions, saying so, or refuses them.
	RetsErr error
}

// Options tune Resolve.
type Options struct {
	// PID, when not 0, resolves the target as that process sees it:
	// libraries through /proc/PID/maps, files through /proc/PID/root.
	PID int
	// Max refuses globs matching more functions (default 1000 when 0).
	Max int
	// Rets fills Func.Rets for Go functions (instruction decoding).
	Rets bool
}

// DefaultMax is how many functions a glob may match unless Options.Max
// (--max) allows more: attaching thousands of probes by mistake (c:*)
// slows every process that calls them.
const DefaultMax = 1000

// The kinds of errors Resolve returns, for errors.Is; each error is one
// line that starts with the specifier.
var (
	ErrNoTarget = errors.New("no file given")
	ErrNoFile   = errors.New("no such file")
	ErrNotELF   = errors.New("not an ELF executable or shared library")
	ErrNoLib    = errors.New("no such library or program")
	ErrNoMatch  = errors.New("no function matches")
	ErrTooMany  = errors.New("too many functions match")
)

// Resolve expands s into the functions to attach to, sorted by name, one
// per entry address (aliases such as malloc and __libc_malloc are one
// function, named by the alias that matched).
func Resolve(s Spec, o Options) ([]Func, error) {
	if o.Max <= 0 {
		o.Max = DefaultMax
	}
	file, err := findFile(s.Target, o.PID)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	funcs, err := resolveIn(s, file, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	return funcs, nil
}

// resolveIn matches s against the functions of file.
func resolveIn(s Spec, file string, o Options) ([]Func, error) {
	f, err := os.Open(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", file, ErrNoFile)
		}
		return nil, err // *fs.PathError names the file
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s is a directory, %w", file, ErrNotELF)
	}
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || string(magic[:]) != elf.ELFMAG {
		return nil, fmt.Errorf("%s is %w", file, ErrNotELF)
	}
	ef, err := newELF(f)
	if err != nil {
		return nil, fmt.Errorf("%s is %w (%v)", file, ErrNotELF, err)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return nil, fmt.Errorf("%s is %w (ELF type %v)", file, ErrNotELF, ef.Type)
	}
	all, err := syms.Funcs(ef)
	if err != nil {
		return nil, fmt.Errorf("%w %q in %s: it has no readable function symbols (%v)", ErrNoMatch, s.Func, file, err)
	}
	isGo := goBinary(f)

	type cand struct {
		Func
		rank int
	}
	byOff := map[uint64]*cand{}
	for _, fn := range all {
		name, ok := matchName(s, fn.Name)
		if !ok {
			continue
		}
		off, ok := syms.FileOffset(ef, fn.Addr)
		if !ok {
			continue
		}
		c := &cand{Func: Func{Path: file, Symbol: fn.Name, Name: name, Offset: off, Size: fn.Size, Go: isGo}, rank: rank(fn)}
		old := byOff[off]
		if old == nil {
			byOff[off] = c
			continue
		}
		if c.Size == 0 {
			c.Size = old.Size
		}
		if c.rank < old.rank {
			byOff[off] = c
		} else if old.Size == 0 {
			old.Size = c.Size
		}
	}
	if len(byOff) == 0 {
		return nil, fmt.Errorf("%w %q in %s", ErrNoMatch, s.Func, file)
	}
	if len(byOff) > o.Max {
		return nil, fmt.Errorf("%w: %d in %s, more than %d (narrow the pattern or use --max N)", ErrTooMany, len(byOff), file, o.Max)
	}
	funcs := make([]Func, 0, len(byOff))
	for _, c := range byOff {
		funcs = append(funcs, c.Func)
	}
	sort.Slice(funcs, func(i, j int) bool {
		if funcs[i].Name != funcs[j].Name {
			return funcs[i].Name < funcs[j].Name
		}
		return funcs[i].Offset < funcs[j].Offset
	})
	for i := range funcs {
		funcs[i].Entry = funcs[i].Offset
		if funcs[i].Go {
			funcs[i].Entry = goEntry(f, ef.Machine, funcs[i].Offset)
		}
	}
	if o.Rets {
		for i := range funcs {
			if !funcs[i].Go {
				continue
			}
			funcs[i].Rets, funcs[i].RetsErr = rets(f, ef.Machine, funcs[i].Offset, funcs[i].Size)
		}
	}
	return funcs, nil
}

// newELF parses an ELF file. Anyone can write the files probed: a panic
// of debug/elf on a crafted one is an error here.
func newELF(f *os.File) (ef *elf.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			ef, err = nil, fmt.Errorf("malformed: %v", r)
		}
	}()
	return elf.NewFile(f)
}

// goBinary reports whether f is a Go program: it has Go's build info
// (kept by -ldflags=-s -w).
func goBinary(f *os.File) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_, err := buildinfo.Read(f)
	return err == nil
}

// matchName reports whether the glob of s matches the raw name or, for a
// C++ or Rust name, its demangled form with or without parameters
// ("Shape::area() const", "Shape::area"). It returns the name to show.
func matchName(s Spec, raw string) (string, bool) {
	if !strings.HasPrefix(raw, "_Z") && !strings.HasPrefix(raw, "_R") {
		return raw, s.Match(raw)
	}
	full := demangle.Filter(raw)
	if s.Match(raw) || s.Match(full) {
		return full, true
	}
	if short := demangle.Filter(raw, demangle.NoParams); short != full && s.Match(short) {
		return full, true
	}
	return full, false
}

// rank orders aliases of one address, lowest first: the Go pclntab's
// name, then global over weak over local, and fewer leading underscores
// (malloc before __libc_malloc): the name users know and call.
func rank(fn syms.Func) int {
	if fn.Go {
		return 0
	}
	r := 1
	switch fn.Bind {
	case elf.STB_WEAK:
		r = 2
	case elf.STB_LOCAL:
		r = 3
	}
	return r + 4*(len(fn.Name)-len(strings.TrimLeft(fn.Name, "_")))
}

// findFile returns the file target names, as process pid (when not 0)
// sees it.
func findFile(target string, pid int) (string, error) {
	root, err := procRoot(pid)
	if err != nil {
		return "", err
	}
	switch {
	case target == "" && pid == 0:
		return "", fmt.Errorf("%w: write PATH:FUNCTION or LIBRARY:FUNCTION, or give -p PID for its executable", ErrNoTarget)
	case target == "":
		return procExe(pid, root)
	case strings.Contains(target, "/"):
		if root != "" && filepath.IsAbs(target) {
			return root + target, nil
		}
		abs, err := filepath.Abs(target)
		if err != nil {
			return "", fmt.Errorf("%s: %w", target, err)
		}
		return abs, nil
	}
	return findLib(target, pid, root)
}

// procRoot is the prefix that reaches the files of process pid: "" when it
// shares this process's mount namespace, else /proc/PID/root.
func procRoot(pid int) (string, error) {
	if pid == 0 {
		return "", nil
	}
	theirs, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("process %d: no such process", pid)
		}
		return "", fmt.Errorf("process %d: %w", pid, err)
	}
	ours, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return "", err
	}
	if theirs == ours {
		return "", nil
	}
	return "/proc/" + strconv.Itoa(pid) + "/root", nil
}

// procExe is the executable of pid; /proc/PID/exe itself when the file
// was deleted or replaced since it started (the link still opens it).
func procExe(pid int, root string) (string, error) {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	p, err := os.Readlink(exe)
	if err != nil {
		return "", fmt.Errorf("executable of process %d: %w", pid, err)
	}
	if strings.HasSuffix(p, " (deleted)") {
		return exe, nil
	}
	return root + p, nil
}

// findLib finds a library or program by name: among the files pid maps
// (libNAME.so*, libNAME-*.so, or NAME itself), then in the dynamic
// loader's cache (the process's own, in its mount namespace), then, for
// programs, in $PATH.
func findLib(name string, pid int, root string) (string, error) {
	where := []string{"/etc/ld.so.cache", "$PATH"}
	if pid != 0 {
		maps, err := syms.ReadMaps(pid)
		if err != nil {
			return "", err
		}
		for _, m := range maps {
			if m.File() && mapsLib(m.Module(), name) {
				if m.Deleted() {
					return fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, m.Start, m.End), nil
				}
				return root + m.Path, nil
			}
		}
		where = append([]string{fmt.Sprintf("/proc/%d/maps", pid)}, where...)
	}
	if b, err := os.ReadFile(root + "/etc/ld.so.cache"); err == nil {
		if entries, err := ParseLdCache(b); err == nil {
			if p, ok := LookupLib(entries, name); ok {
				return root + p, nil
			}
		}
	}
	if root == "" {
		if p, err := exec.LookPath(name); err == nil {
			if abs, err := filepath.Abs(p); err == nil {
				return abs, nil
			}
		}
	}
	return "", fmt.Errorf("%w %q (looked in %s; write a path with a '/' for a file)", ErrNoLib, name, strings.Join(where, ", "))
}

// mapsLib reports whether a mapped file's base name is library name as
// BCC matches it in a process ("c": libc.so.6, libc-2.31.so), or name
// itself.
func mapsLib(base, name string) bool {
	if base == name {
		return true
	}
	rest, ok := strings.CutPrefix(base, "lib"+name)
	return ok && (strings.HasPrefix(rest, ".") || strings.HasPrefix(rest, "-"))
}

// maxFuncBytes bounds what rets reads of one function: no compiled
// function is near it, and a corrupt size must not allocate gigabytes.
const maxFuncBytes = 16 << 20

// rets returns the file offsets of the return instructions of the function
// of size bytes at file offset off.
func rets(f io.ReaderAt, machine elf.Machine, off, size uint64) ([]uint64, error) {
	if size == 0 {
		return nil, errors.New("size unknown")
	}
	if size > maxFuncBytes {
		return nil, fmt.Errorf("size %d: more than %d bytes", size, maxFuncBytes)
	}
	code := make([]byte, size)
	if _, err := f.ReadAt(code, int64(off)); err != nil {
		return nil, fmt.Errorf("read code: %w", err)
	}
	var at []uint64
	switch machine {
	case elf.EM_X86_64:
		rel, err := retsAMD64(code)
		if err != nil {
			return nil, err
		}
		for _, r := range rel {
			at = append(at, off+r)
		}
	case elf.EM_AARCH64:
		for _, r := range retsARM64(code) {
			at = append(at, off+r)
		}
	default:
		return nil, fmt.Errorf("cannot find returns in %v code", machine)
	}
	if len(at) == 0 {
		return nil, errors.New("no return instruction")
	}
	return at, nil
}

// retsARM64 finds RET (ret x30, 0xd65f03c0): arm64 instructions are four
// aligned bytes, so no decoding is needed.
func retsARM64(code []byte) []uint64 {
	ret := []byte{0xc0, 0x03, 0x5f, 0xd6}
	var at []uint64
	for i := 0; i+4 <= len(code); i += 4 {
		if bytes.Equal(code[i:i+4], ret) {
			at = append(at, uint64(i))
		}
	}
	return at
}
