package syms

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// sweepEvery is how often Processes looks for held processes that exited
// or whose pid now names another process. It bounds how long a recycled
// pid can be symbolized with the old process's mappings, and costs one read
// of /proc/PID/stat per held process.
const sweepEvery = time.Second

// Processes holds the Resolvers of the processes whose stacks a long-running
// tool symbolizes: at most a fixed number, dropping the least recently used
// first, and dropping those that exited.
//
// A process is its pid and its start time, so a pid the kernel gave to a
// new process does not get the old one's symbols. The start time is read
// when the Resolver is made, when an address falls in none of its mappings
// and, for every held process, once a second: reading it on every address
// would cost a /proc read per frame. Between sweeps a held process is
// trusted: one that exited is still symbolized from the mappings it had,
// which names the stacks it sent just before exiting, but for up to a
// second after its pid is reused, addresses that fall in the old process's
// mappings are named from them.
//
// Not safe for concurrent use: it is meant for the single reader of a ring.
type Processes struct {
	cache     *Cache
	procs     *lru[uint32, *process]
	lastSweep time.Time

	// The clock and the start-time reader, replaced by tests.
	now       func() time.Time
	startTime func(pid uint32) (uint64, error)
}

// process is one held process. r is nil when its mappings could not be
// read (permissions): kept so as not to retry on every address.
type process struct {
	start uint64
	r     *Resolver
}

// NewProcesses returns a set of per-process resolvers sharing cache,
// holding at most max processes (least recently used dropped first; max < 1
// means 1). A nil cache gets one of the default size.
func NewProcesses(cache *Cache, max int) *Processes {
	if cache == nil {
		cache = NewCache()
	}
	return &Processes{
		cache:     cache,
		procs:     newLRU[uint32, *process](max),
		now:       time.Now,
		startTime: readStartTime,
	}
}

// Len is the number of processes held.
func (p *Processes) Len() int { return p.procs.len() }

// Resolve symbolizes addr in process pid. It makes the process's resolver
// on first use; when addr falls in no mapping it re-reads the maps once
// (the process mapped more or exec'd since); a process that is gone gives
// Frame{Addr: addr, Symbol: Unknown}, unless it is still held from before
// it exited.
func (p *Processes) Resolve(pid uint32, addr uint64) Frame {
	p.sweep()
	e, ok := p.procs.get(pid)
	if !ok {
		if e, ok = p.add(pid); !ok {
			return Frame{Addr: addr, Symbol: Unknown}
		}
	} else if e.r != nil {
		if _, in := e.r.mapping(addr); !in {
			e = p.reread(pid, e)
		}
	}
	if e == nil || e.r == nil {
		return Frame{Addr: addr, Symbol: Unknown}
	}
	return e.r.Resolve(addr)
}

// add makes the resolver of pid and holds it; false when the process is
// gone.
func (p *Processes) add(pid uint32) (*process, bool) {
	// The start time first: should the pid be reused before the maps are
	// read, the next sweep sees a new start time and drops the process,
	// rather than holding the new process's maps under the old one's key.
	start, err := p.startTime(pid)
	if err != nil {
		return nil, false
	}
	r, _ := NewResolver(int(pid), p.cache)
	e := &process{start: start, r: r}
	p.procs.put(pid, e)
	return e, true
}

// reread refreshes the mappings of held process e for an address in none
// of them: the process mapped more, exec'd, or the pid is another
// process's now. It returns the process to resolve with, nil if none.
func (p *Processes) reread(pid uint32, e *process) *process {
	start, err := p.startTime(pid)
	if err != nil {
		return e // gone: its mappings are still the best guess until the sweep
	}
	if start != e.start {
		p.procs.remove(pid)
		e, _ = p.add(pid)
		return e
	}
	// An error means it exited meanwhile: the sweep drops it, and its old
	// mappings stay the best guess until then.
	_ = e.r.Refresh()
	return e
}

// sweep drops, at most once per sweepEvery, the processes that exited or
// whose pid now names another process.
func (p *Processes) sweep() {
	now := p.now()
	if now.Sub(p.lastSweep) < sweepEvery {
		return
	}
	p.lastSweep = now
	for _, pid := range p.procs.keys() {
		e, _ := p.procs.peek(pid)
		if start, err := p.startTime(pid); err != nil || start != e.start {
			p.procs.remove(pid)
		}
	}
}

// readStartTime returns the start time of pid, in clock ticks since boot.
func readStartTime(pid uint32) (uint64, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	start, err := parseStartTime(b)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return start, nil
}

// parseStartTime reads field 22, starttime, of a /proc/PID/stat line:
// "PID (COMM) STATE PPID ... STARTTIME ...". COMM is whatever the process
// named itself, spaces and parentheses included, so the fields are counted
// from the last ')'.
func parseStartTime(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no ')' closing the command name")
	}
	// Field 3, the state, is the first after the name.
	const n = 22 - 3 + 1
	f := bytes.Fields(b[i+1:])
	if len(f) < n {
		return 0, fmt.Errorf("%d fields after the command name, want at least %d", len(f), n)
	}
	start, err := strconv.ParseUint(string(f[n-1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("start time: %w", err)
	}
	return start, nil
}
