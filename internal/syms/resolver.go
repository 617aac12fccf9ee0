package syms

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"
)

// Cache keeps the symbol tables of ELF files so that a file mapped by many
// processes (libc, a container image's binary) is parsed once. Tables are
// keyed by build-id, which also matches copies of one file, or without one
// by (dev, inode). The caller owns it and shares it between Resolvers; it
// is safe for concurrent use.
//
// It holds a bounded number of files, dropping the least recently loaded
// or looked up first, so a host that runs many different binaries over
// days does not grow it forever. A Resolver keeps the tables of the files
// it already looked up: dropping one from the cache frees it once no
// Resolver uses it, and only costs a new parse when a process maps it
// again.
type Cache struct {
	mu     sync.Mutex
	tables *lru[string, *table]
	vdso   *table // the kernel's vDSO, the same image in every process
	vdsoOK bool

	// Where to find files by build-id, for stacks of processes that are
	// gone (see buildid.go): the build-id of each file read, and the
	// paths a file of each build-id was seen at.
	ids    *lru[fileIdent, string]
	known  *lru[string, knownFile]
	missed map[string]bool // build-ids no known path gave, until one is learned
}

// defaultCacheSize is enough for the libraries and binaries a busy host
// runs at once, which are what stacks come from.
const defaultCacheSize = 256

// NewCache returns an empty cache of at most 256 files.
func NewCache() *Cache { return NewCacheSize(defaultCacheSize) }

// NewCacheSize returns an empty cache of at most n files (at least one).
func NewCacheSize(n int) *Cache {
	return &Cache{
		tables: newLRU[string, *table](n),
		ids:    newLRU[fileIdent, string](maxKnownFiles),
		known:  newLRU[string, knownFile](maxKnownFiles),
		missed: map[string]bool{},
	}
}

// Len is the number of ELF files whose symbols are cached.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tables.len()
}

// load returns the table of the file of m, opened through one of paths.
func (c *Cache) load(m Mapping, paths []string) (*table, error) {
	ef, err := openELF(paths)
	if err != nil {
		return nil, err
	}
	defer ef.Close()
	key := fileID(ef)
	if key == "" {
		key = fmt.Sprintf("dev:%d:%d:%d", m.Major, m.Minor, m.Inode)
	}
	c.mu.Lock()
	t, ok := c.tables.get(key)
	c.mu.Unlock()
	if ok {
		return t, nil
	}
	// Parse without the lock: another Resolver may parse the same file at
	// the same time, which wastes work once but never blocks on a big file.
	if t, err = loadTable(ef); err != nil {
		return nil, fmt.Errorf("symbols of %s: %w", m.Path, err)
	}
	t.module = m.Module()
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.tables.get(key); ok {
		return old, nil
	}
	c.tables.put(key, t)
	return t, nil
}

// loadVDSO reads the vDSO's symbols from this process's own copy: the
// kernel maps one image into every process, and it is not a file.
func (c *Cache) loadVDSO() *table {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.vdsoOK {
		c.vdsoOK = true
		c.vdso, _ = readVDSO()
	}
	return c.vdso
}

func readVDSO() (*table, error) {
	maps, err := ReadMaps(os.Getpid())
	if err != nil {
		return nil, err
	}
	for _, m := range maps {
		if m.Path != "[vdso]" {
			continue
		}
		f, err := os.Open("/proc/self/mem")
		if err != nil {
			return nil, err
		}
		defer f.Close()
		buf := make([]byte, m.End-m.Start)
		if _, err := f.ReadAt(buf, int64(m.Start)); err != nil && err != io.EOF {
			return nil, fmt.Errorf("read vdso: %w", err)
		}
		ef, err := elf.NewFile(bytes.NewReader(buf))
		if err != nil {
			return nil, fmt.Errorf("read vdso: %w", err)
		}
		return loadTable(ef)
	}
	return nil, fmt.Errorf("no vdso")
}

// Resolver symbolizes the user-space addresses of one process. It reads
// the mappings once: call Refresh after the process loaded libraries or
// wrote more JIT symbols. Not safe for concurrent use.
type Resolver struct {
	pid   int
	cache *Cache
	maps  []Mapping
	files map[fileKey]*table // nil when the file has no usable symbols
	errs  []error            // why files had none
	// The perf map, the version of its file it was read from, and when
	// the file was last looked at (zero: not since Refresh).
	perf        *PerfMap
	perfStamp   perfStamp
	perfChecked time.Time
	perfEvery   time.Duration // perfRecheck; tests set 0
}

// perfRecheck bounds how often a Resolver looks at a perf map again: a
// JIT appends to it (node) or rewrites it (jcmd Compiler.perfmap) as it
// compiles, reusing the memory of code it freed, so names may be this old;
// a changed file is read again whole, at most this often per process.
const perfRecheck = time.Second

// NewResolver reads the mappings of pid. Symbol tables are loaded on first
// use and kept in cache, which may be shared by many Resolvers.
func NewResolver(pid int, cache *Cache) (*Resolver, error) {
	r := &Resolver{pid: pid, cache: cache, perfEvery: perfRecheck}
	if err := r.Refresh(); err != nil {
		return nil, err
	}
	return r, nil
}

// Refresh rereads the process's mappings and, when next needed, its perf
// map. A process that has no mappings any more (it is exiting, or a zombie)
// keeps those it had: they name the stacks it sent before.
func (r *Resolver) Refresh() error {
	maps, err := ReadMaps(r.pid)
	if err != nil {
		return err
	}
	if len(maps) == 0 && r.maps != nil {
		return nil
	}
	r.maps, r.files, r.errs = maps, map[fileKey]*table{}, nil
	r.perf, r.perfStamp, r.perfChecked = nil, perfStamp{}, time.Time{}
	return nil
}

// Maps returns the mappings the Resolver read.
func (r *Resolver) Maps() []Mapping { return r.maps }

// Resolve names addr in the process: from the symbols of the mapped file,
// else from the perf map (JIT code lives in anonymous mappings; the map
// is read again when its file changed, looked at once a second), else as
// "[unknown]" with the mapping's file as module.
func (r *Resolver) Resolve(addr uint64) Frame {
	f := Frame{Addr: addr, Symbol: Unknown}
	if m, ok := r.mapping(addr); ok {
		f.Module = m.Module()
		if t := r.fileTable(m); t != nil {
			if name, off, ok := t.lookup(addr - t.bias(m)); ok {
				f.Symbol, f.Offset = name, off
			}
			return f
		}
	}
	if name, off, ok := r.perfLookup(addr); ok {
		f.Symbol, f.Offset, f.Module = name, off, fmt.Sprintf("perf-%d.map", r.pid)
	}
	return f
}

// perfLookup names addr from the perf map, read when first needed and
// again when the file changed, looked at no more than once per perfEvery.
func (r *Resolver) perfLookup(addr uint64) (string, uint64, bool) {
	if now := time.Now(); r.perfChecked.IsZero() || now.Sub(r.perfChecked) >= r.perfEvery {
		r.perfChecked = now
		if st, ok := statPerfMap(r.pid); ok && st != r.perfStamp {
			if m, err := loadPerfMapFile(st.path); err == nil {
				r.perf, r.perfStamp = m, st
			}
		}
	}
	if r.perf == nil {
		return "", 0, false
	}
	return r.perf.Lookup(addr)
}

// mapping returns the mapping that holds addr.
func (r *Resolver) mapping(addr uint64) (Mapping, bool) {
	i := sort.Search(len(r.maps), func(i int) bool { return r.maps[i].End > addr })
	if i < len(r.maps) && r.maps[i].Start <= addr {
		return r.maps[i], true
	}
	return Mapping{}, false
}

// Errors returns why files mapped by the process could not be symbolized
// (permissions, not ELF, no symbols), one per file tried since Refresh.
func (r *Resolver) Errors() []error { return r.errs }

// fileKey identifies a mapped file within one process.
type fileKey struct {
	major, minor uint32
	inode        uint64
	path         string
}

// fileTable returns the symbols of m's file, loading them once per file.
func (r *Resolver) fileTable(m Mapping) *table {
	if m.Path == "[vdso]" {
		return r.cache.loadVDSO()
	}
	if !m.File() {
		return nil
	}
	key := fileKey{m.Major, m.Minor, m.Inode, m.Path}
	if t, ok := r.files[key]; ok {
		return t
	}
	t, err := r.cache.load(m, r.paths(m))
	if err != nil {
		r.errs = append(r.errs, err)
	}
	r.files[key] = t
	return t
}

// paths are where to open the file of mapping m: as the process sees it
// (its mount namespace). A deleted or replaced file is gone from its path,
// but map_files still opens the mapped one.
func (r *Resolver) paths(m Mapping) []string {
	var paths []string
	if !m.Deleted() {
		paths = append(paths, fmt.Sprintf("/proc/%d/root%s", r.pid, m.Path))
	}
	return append(paths, fmt.Sprintf("/proc/%d/map_files/%x-%x", r.pid, m.Start, m.End))
}
