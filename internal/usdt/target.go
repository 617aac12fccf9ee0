package usdt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/uprobe"
)

// Target is where probes are looked for.
type Target struct {
	// Path is a file (a path with a '/'), or a library or program name
	// ("ruby-3.1" for libruby-3.1.so, "python3.11"), found among the
	// files the process maps (with PID), in the dynamic loader's cache,
	// then in $PATH. "" with PID: the process's executable and every
	// shared object it maps.
	Path string
	// PID, when not 0, resolves Path as that process sees it (its mount
	// namespace, through /proc/PID/root).
	PID int
}

func (t Target) String() string {
	switch {
	case t.PID == 0:
		return t.Path
	case t.Path == "":
		return "process " + strconv.Itoa(t.PID)
	}
	return fmt.Sprintf("%s (process %d)", t.Path, t.PID)
}

// Errors of Find, for errors.Is; each error names the target.
var (
	ErrNoTarget = errors.New("no file or process given")
	ErrNoLib    = errors.New("no such library or program")
	ErrNoProbe  = errors.New("no USDT probe matches")
)

// Files returns the ELF files of t to read probes from: one, or with a
// PID and no Path the executable and every file it maps (deleted ones
// through /proc/PID/map_files), each once.
func (t Target) Files() ([]string, error) {
	root, err := procRoot(t.PID)
	if err != nil {
		return nil, err
	}
	switch {
	case t.Path == "" && t.PID == 0:
		return nil, ErrNoTarget
	case t.Path == "":
		return mappedFiles(t.PID, root)
	case strings.Contains(t.Path, "/"):
		if root != "" && filepath.IsAbs(t.Path) {
			return []string{root + t.Path}, nil
		}
		abs, err := filepath.Abs(t.Path)
		if err != nil {
			return nil, err
		}
		return []string{abs}, nil
	}
	p, err := findLib(t.Path, t.PID, root)
	if err != nil {
		return nil, err
	}
	return []string{p}, nil
}

// List returns every probe location in t's files, file by file in the
// order of their notes.
func List(t Target) ([]Probe, error) {
	files, err := t.Files()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t, err)
	}
	var all []Probe
	for _, f := range files {
		probes, err := ReadFile(f)
		if err != nil {
			// A process maps data files too (locales, caches): only an
			// ELF file named by the user must be readable.
			if t.Path == "" && (errors.Is(err, ErrNotELF) || errors.Is(err, fs.ErrNotExist)) {
				continue
			}
			return nil, err
		}
		all = append(all, probes...)
	}
	return all, nil
}

// Find returns the locations of the probes of t whose provider and name
// match the globs provider and name (path.Match syntax; "" matches any).
// None is an error wrapping ErrNoProbe.
func Find(t Target, provider, name string) ([]Probe, error) {
	for _, g := range []string{provider, name} {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("bad pattern %q: %w", g, err)
		}
	}
	all, err := List(t)
	if err != nil {
		return nil, err
	}
	var out []Probe
	for _, p := range all {
		if Match(provider, p.Provider) && Match(name, p.Name) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w %s:%s (owl usdt -l lists the probes)", t, ErrNoProbe, orAny(provider), orAny(name))
	}
	return out, nil
}

// Match reports whether glob ("" matches anything) matches s.
func Match(glob, s string) bool {
	if glob == "" {
		return true
	}
	ok, _ := path.Match(glob, s)
	return ok
}

func orAny(g string) string {
	if g == "" {
		return "*"
	}
	return g
}

// procRoot is the prefix that reaches the files of process pid: "" when it
// shares our mount namespace, else /proc/PID/root.
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

// mappedFiles lists the executable of pid and the files it maps, each
// file (device and inode) once, the executable first.
func mappedFiles(pid int, root string) ([]string, error) {
	maps, err := syms.ReadMaps(pid)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	type key struct{ dev, ino uint64 }
	seen := map[key]bool{}
	var files []string
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err == nil {
		seen[key{st.Dev, st.Ino}] = true
		if p, err := os.Readlink(exe); err == nil && !strings.HasSuffix(p, " (deleted)") {
			exe = root + p
		}
		files = append(files, exe)
	}
	for _, m := range maps {
		if !m.File() {
			continue
		}
		k := key{unix.Mkdev(m.Major, m.Minor), m.Inode}
		if seen[k] {
			continue
		}
		seen[k] = true
		if m.Deleted() {
			files = append(files, fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, m.Start, m.End))
		} else {
			files = append(files, root+m.Path)
		}
	}
	return files, nil
}

// findLib finds a library or program by name: among the files pid maps
// (libNAME.so*, libNAME-*.so, or NAME), then in the dynamic loader's
// cache (the process's own), then, for programs, in $PATH.
func findLib(name string, pid int, root string) (string, error) {
	if pid != 0 {
		maps, err := syms.ReadMaps(pid)
		if err != nil {
			return "", fmt.Errorf("process %d: %w", pid, err)
		}
		for _, m := range maps {
			if m.File() && mapsLib(m.Module(), name) {
				if m.Deleted() {
					return fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, m.Start, m.End), nil
				}
				return root + m.Path, nil
			}
		}
	}
	if b, err := os.ReadFile(root + "/etc/ld.so.cache"); err == nil {
		if entries, err := uprobe.ParseLdCache(b); err == nil {
			if p, ok := uprobe.LookupLib(entries, name); ok {
				return root + p, nil
			}
		}
	}
	if root == "" {
		if p, err := exec.LookPath(name); err == nil {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("%w %q (write a path with a '/' for a file)", ErrNoLib, name)
}

// mapsLib reports whether a mapped file's base name is library name
// ("ruby-3.1": libruby-3.1.so.3.1), or name itself.
func mapsLib(base, name string) bool {
	if base == name {
		return true
	}
	rest, ok := strings.CutPrefix(base, "lib"+name)
	return ok && (strings.HasPrefix(rest, ".") || strings.HasPrefix(rest, "-"))
}
