package syms

import (
	"bufio"
	"container/heap"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PerfMap is the symbol map a JIT compiler writes to /tmp/perf-PID.map
// (node --perf-basic-prof, the JVM's perf-map-agent, .NET, LuaJIT...).
// Read-only once built and safe for concurrent use.
type PerfMap struct {
	segs []perfSeg // sorted, disjoint
}

// perfEntry is one "START SIZE name" line; idx is its line order.
type perfEntry struct {
	start, end uint64
	name       string
	idx        int
}

// perfSeg is a range where entry e is the latest line covering it.
type perfSeg struct {
	start, end uint64
	e          *perfEntry
}

// ParsePerfMap reads lines "START SIZE symbolname" (hex, without 0x; the
// name may contain spaces). Malformed lines are ignored: JITs append to the
// file while it is read, so the last line may be cut. A JIT reuses freed
// code memory, so when entries overlap the later line wins.
func ParsePerfMap(r io.Reader) (*PerfMap, error) {
	entries, err := readPerfEntries(r)
	if err != nil {
		return nil, err
	}
	return &PerfMap{segs: perfSegments(entries)}, nil
}

// LoadPerfMap reads the perf map of process pid. A process in another pid
// namespace names its map by its own pid and writes it to its own /tmp, so
// that location is tried first.
func LoadPerfMap(pid int) (*PerfMap, error) {
	st, ok := statPerfMap(pid)
	if !ok {
		return nil, fmt.Errorf("perf map of pid %d: %w", pid, os.ErrNotExist)
	}
	return loadPerfMapFile(st.path)
}

func loadPerfMapFile(path string) (*PerfMap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := ParsePerfMap(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return m, nil
}

// perfStamp is one version of a perf map file: a JIT appends to it (node
// --perf-basic-prof) or writes it anew (jcmd PID Compiler.perfmap).
type perfStamp struct {
	path  string
	ino   uint64
	size  int64
	mtime time.Time
}

// statPerfMap finds the perf map of pid: /tmp/perf-NSPID.map in the
// process's mount namespace (NSPID: its pid in its own pid namespace),
// else /tmp/perf-PID.map in ours.
func statPerfMap(pid int) (perfStamp, bool) {
	var paths []string
	if ns := nsPid(pid); ns != 0 {
		paths = append(paths, fmt.Sprintf("/proc/%d/root/tmp/perf-%d.map", pid, ns))
	}
	paths = append(paths, fmt.Sprintf("/tmp/perf-%d.map", pid))
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		st := perfStamp{path: path, size: fi.Size(), mtime: fi.ModTime()}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			st.ino = sys.Ino
		}
		return st, true
	}
	return perfStamp{}, false
}

// nsPid returns pid as its own pid namespace numbers it (the last NSpid
// field of /proc/PID/status), or 0 when unknown.
func nsPid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[len(f)-1])
				return n
			}
		}
	}
	return 0
}

// Lookup returns the symbol covering addr and addr's offset from its start.
func (m *PerfMap) Lookup(addr uint64) (name string, offset uint64, ok bool) {
	i := sort.Search(len(m.segs), func(i int) bool { return m.segs[i].end > addr })
	if i == len(m.segs) || m.segs[i].start > addr {
		return "", 0, false
	}
	e := m.segs[i].e
	return e.name, addr - e.start, true
}

func readPerfEntries(r io.Reader) ([]*perfEntry, error) {
	var entries []*perfEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		start, rest, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		size, name, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
		name = strings.TrimSpace(name)
		s, err1 := strconv.ParseUint(strings.TrimPrefix(start, "0x"), 16, 64)
		n, err2 := strconv.ParseUint(strings.TrimPrefix(size, "0x"), 16, 64)
		if err1 != nil || err2 != nil || n == 0 || name == "" {
			continue
		}
		end := s + n
		if end < s { // wraps: the entry reaches the top of the address space
			end = math.MaxUint64
		}
		if end == s {
			continue
		}
		entries = append(entries, &perfEntry{start: s, end: end, name: name, idx: len(entries)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return entries, nil
}

// perfSegments sweeps the boundaries of all entries in address order with a
// heap of the entries covering the current point, latest line on top, and
// emits the disjoint ranges where one entry wins: O(n log n), where
// inserting lines one by one into a sorted list would be quadratic.
func perfSegments(entries []*perfEntry) []perfSeg {
	points := make([]uint64, 0, 2*len(entries))
	for _, e := range entries {
		points = append(points, e.start, e.end)
	}
	sort.Slice(points, func(i, j int) bool { return points[i] < points[j] })
	byStart := append([]*perfEntry(nil), entries...)
	sort.Slice(byStart, func(i, j int) bool { return byStart[i].start < byStart[j].start })

	var segs []perfSeg
	var live latestFirst
	next := 0
	for k := 0; k+1 < len(points); k++ {
		p, q := points[k], points[k+1]
		if p == q {
			continue
		}
		for next < len(byStart) && byStart[next].start <= p {
			heap.Push(&live, byStart[next])
			next++
		}
		// Entries that ended are dropped only when they reach the top:
		// the top is all that matters.
		for live.Len() > 0 && live[0].end <= p {
			heap.Pop(&live)
		}
		if live.Len() == 0 {
			continue
		}
		top := live[0]
		if n := len(segs); n > 0 && segs[n-1].e == top && segs[n-1].end == p {
			segs[n-1].end = q
			continue
		}
		segs = append(segs, perfSeg{start: p, end: q, e: top})
	}
	return segs
}

// latestFirst is a max-heap of entries by line order.
type latestFirst []*perfEntry

func (h latestFirst) Len() int           { return len(h) }
func (h latestFirst) Less(i, j int) bool { return h[i].idx > h[j].idx }
func (h latestFirst) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *latestFirst) Push(x any)        { *h = append(*h, x.(*perfEntry)) }
func (h *latestFirst) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
