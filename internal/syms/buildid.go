package syms

import (
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// A user stack can be taken in the kernel as (build-id, file offset) pairs
// (BPF_F_STACK_BUILD_ID) instead of addresses. Addresses need the process's
// mappings to be named, and a process that exits right after the event
// takes them along; a build-id names the file itself, wherever it is found.
// So the Cache remembers where it saw files of each build-id: in the
// mappings of processes while they were there, and at exec.

// BuildIDSize is the length of a build-id as the kernel hands it to BPF
// (struct bpf_stack_build_id): shorter ones are padded with zeros.
const BuildIDSize = 20

// maxKnownFiles bounds the files whose build-id the Cache remembers, and the
// build-ids it remembers paths for.
const maxKnownFiles = 4096

// maxKnownPaths bounds the paths remembered for one build-id.
const maxKnownPaths = 4

// gnuKey is the cache key of a GNU build-id, padded as the kernel pads it,
// so that the key of a file and that of a stack frame match.
func gnuKey(id []byte) string {
	if len(id) < BuildIDSize {
		id = append(slices.Clip(id), make([]byte, BuildIDSize-len(id))...)
	}
	return "gnu:" + hex.EncodeToString(id)
}

// fileIdent is a file as /proc/PID/maps names it.
type fileIdent struct {
	major, minor uint32
	inode        uint64
	path         string
}

// knownFile is where files of one build-id were seen: paths to open later
// (each checked against the build-id, since the file there may have been
// replaced or be another mount namespace's), and the name frames carry.
type knownFile struct {
	paths  []string
	module string
}

// learn returns the build-id key of the file ident ("" when it has no GNU
// build-id or cannot be read), read through the first of the paths open
// returns that works unless it was read before, and remembers keep as
// paths to find the file at later. The file is read once, not its symbols:
// the table is loaded when a stack needs it.
func (c *Cache) learn(ident fileIdent, open func() []string, keep []string, module string) string {
	c.mu.Lock()
	key, ok := c.ids.get(ident)
	c.mu.Unlock()
	if ok {
		return key
	}
	ef, err := openELF(open())
	if err != nil {
		return "" // not remembered: another path may open it later
	}
	key = fileID(ef)
	ef.Close()
	if !strings.HasPrefix(key, "gnu:") {
		key = "" // the kernel reads GNU build-ids only
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ids.put(ident, key)
	if key == "" {
		return ""
	}
	kf, _ := c.known.get(key)
	if kf.module == "" {
		kf.module = module
	}
	for _, p := range keep {
		if !slices.Contains(kf.paths, p) && len(kf.paths) < maxKnownPaths {
			kf.paths = append(kf.paths, p)
		}
	}
	c.known.put(key, kf)
	delete(c.missed, key)
	return key
}

// fileByID returns the symbols of the file of build-id key, from the cache
// or from a path a file of that build-id was seen at, and the module name
// to give its frames. The table is nil when no such file can be read or it
// has no symbols; the module is "" when nothing is known of the file.
func (c *Cache) fileByID(key string) (*table, string) {
	c.mu.Lock()
	t, ok := c.tables.get(key)
	kf, known := c.known.peek(key)
	missed := c.missed[key]
	c.mu.Unlock()
	switch {
	case ok && t.module != "":
		return t, t.module
	case ok:
		return t, kf.module
	case !known || missed:
		return nil, kf.module
	}
	for _, p := range kf.paths {
		ef, err := elf.Open(p)
		if err != nil {
			continue
		}
		if fileID(ef) != key {
			ef.Close()
			continue
		}
		t, err := loadTable(ef)
		ef.Close()
		if err != nil {
			break // no symbols: no other copy of the file has any either
		}
		t.module = kf.module
		c.mu.Lock()
		defer c.mu.Unlock()
		if old, ok := c.tables.get(key); ok {
			return old, kf.module
		}
		c.tables.put(key, t)
		return t, kf.module
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.missed) >= maxKnownFiles {
		clear(c.missed)
	}
	c.missed[key] = true
	return nil, kf.module
}

// ResolveBuildID names the code at file offset off of the ELF file whose
// GNU build-id is id, in a stack that process pid sent. While the process's
// mappings hold that file it is named as Resolve names its address (Addr
// set); otherwise, the process being gone, from the file alone, found by
// its build-id (Addr 0). A file nothing is known of gives
// "[unknown] (build-id ID+0xOFF)", which still names the code exactly.
func (p *Processes) ResolveBuildID(pid uint32, id []byte, off uint64) Frame {
	key := gnuKey(id)
	f := Frame{Symbol: Unknown}
	if addr, ok := p.addrOf(pid, key, off); ok {
		if f = p.Resolve(pid, addr); f.Symbol != Unknown {
			return f
		}
	}
	t, module := p.cache.fileByID(key)
	if t != nil {
		if name, symOff, ok := t.lookupOffset(off); ok {
			return Frame{Addr: f.Addr, Symbol: name, Offset: symOff, Module: module}
		}
	}
	switch {
	case f.Module != "":
	case module != "":
		f.Module = module
	default:
		f.Module = fmt.Sprintf("build-id %x+%#x", id, off)
	}
	return f
}

// addrOf finds where file offset off of the file of build-id key is mapped
// in process pid, reading the mappings anew once when none holds it (the
// process mapped more, or exec'd, since they were read).
func (p *Processes) addrOf(pid uint32, key string, off uint64) (uint64, bool) {
	p.sweep()
	e, ok := p.procs.get(pid)
	fresh := !ok
	if !ok {
		if e, ok = p.add(pid); !ok {
			return 0, false
		}
	}
	for e != nil && e.r != nil {
		for _, m := range e.r.maps {
			if m.Exec() && m.File() && m.Offset <= off && off-m.Offset < m.End-m.Start && p.learnMapping(e.r, m) == key {
				return m.Start + off - m.Offset, true
			}
		}
		if fresh {
			break
		}
		e, fresh = p.reread(pid, e), true
	}
	return 0, false
}

// learnMapping returns the build-id key of the file of mapping m of r's
// process, reading it once per file.
func (p *Processes) learnMapping(r *Resolver, m Mapping) string {
	var keep []string
	if !m.Deleted() {
		keep = []string{m.Path}
	}
	ident := fileIdent{m.Major, m.Minor, m.Inode, m.Path}
	return p.cache.learn(ident, func() []string { return r.paths(m) }, keep, m.Module())
}

// Learn reads the mappings of process pid now and the build-ids of the
// files it runs, so that its stacks can be named after it exits. Tools
// call it for a process they trace by pid, when they start.
func (p *Processes) Learn(pid uint32) {
	e, ok := p.procs.get(pid)
	if !ok {
		if e, ok = p.add(pid); !ok {
			return
		}
	}
	if e.r == nil {
		return
	}
	for _, m := range e.r.maps {
		if m.Exec() && m.File() {
			p.learnMapping(e.r, m)
		}
	}
}

// Exec notes that process pid exec'd the file at path (as the process
// named it, perhaps relative): its build-id is read now, through
// /proc/PID/exe while the process is there, so that its stacks can be named
// after it exits. Tools call it from an exec event.
func (p *Processes) Exec(pid uint32, path string) {
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	open := []string{exe}
	var st unix.Stat_t
	if unix.Stat(exe, &st) != nil {
		// Gone: a relative path would be relative to a directory we do
		// not know.
		if !filepath.IsAbs(path) || unix.Stat(path, &st) != nil {
			return
		}
		open = []string{path}
	}
	module := filepath.Base(path)
	var keep []string
	// The file's path as the process sees it, which is also ours unless
	// it runs in another mount namespace: checked against the build-id
	// when opened.
	if target, err := os.Readlink(exe); err == nil && filepath.IsAbs(target) && !strings.HasSuffix(target, " (deleted)") {
		keep, module = append(keep, target), filepath.Base(target)
	}
	if filepath.IsAbs(path) && !strings.HasPrefix(path, "/proc/") && !slices.Contains(keep, path) {
		keep = append(keep, path)
	}
	ident := fileIdent{unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino, path}
	p.cache.learn(ident, func() []string { return open }, keep, module)
}
