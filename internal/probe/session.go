package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Session is a tool's BPF collection loaded and attached through one hook.
// Its links are fd-based, so they go away with the process even on SIGKILL.
type Session struct {
	Coll  *ebpf.Collection
	Hook  Hook
	Tried []Failure // hooks tried before Hook, with the reason each failed
	// Skipped lists the targets of per-target attachments (TracingEachAt,
	// KprobesEachAt) that did not attach, with the reason: the hook works
	// without them.
	Skipped []Failure
	Runtime *Runtime   // shared with the other tools of the process
	linkMu  sync.Mutex // Relink and Close
	links   []link.Link
	// relinks are the attachments the kernel filters on one process, by
	// index in links (Relink).
	relinks    map[int]Attachment
	reader     *ringbuf.Reader
	counterMap *ebpf.Map
	pending    *ebpf.Map // LRU table of events waiting for their end, or nil
	// pendingPartial: an eviction from pending loses a part of an event,
	// not the event (Options.PendingPartial).
	pendingPartial bool
	latency        time.Duration

	clockMu sync.Mutex
	clock   int64 // wall-clock ns minus CLOCK_MONOTONIC ns, for event times
	clockAt int64 // CLOCK_MONOTONIC ns when clock was taken
}

// DefaultLatency is how often a reader polls its ring for records that
// did not wake it.
const DefaultLatency = 10 * time.Millisecond

// Options tune Open. Everything is explicit: the library reads no
// environment variable and mounts nothing (the command layer does).
type Options struct {
	Tool string // for error messages
	// Only restricts the chain to these hook kinds (comma-separated); a
	// tool without such a hook fails.
	Only string
	// Prefer restricts the chain to these kinds when the tool has them
	// and is ignored otherwise, so that one setting can force a kind in a
	// whole run of tools (the command layer passes OWL_HOOKS here).
	Prefer string
	// Runtime is shared by the tools of a process; nil makes a new one.
	Runtime *Runtime
	// Configure is called on a copy of the spec before each load, to set
	// the tool's own variables.
	Configure func(*ebpf.CollectionSpec) error
	// Task, when set, applies the task filters and fills the task header
	// (for tools whose events have a task).
	Task *TaskFilter
	// Net, when set, applies the family and port filters of bpf/sock.h.
	Net *NetFilter
	// RingBytes is the ring buffer's size: a power of two, at least a
	// page; 0 gives one page (for count-only modes, which read none).
	RingBytes uint32
	// NoReader skips opening the ring buffer (count-only modes, `owl
	// tools`).
	NoReader bool
	// Latency bounds how long a record below the ring's wakeup threshold
	// (WakeupBytes) waits before the reader polls for it: 0 means
	// DefaultLatency.
	Latency time.Duration
	// Pending names the tool's table of events waiting for their end. An
	// LRU table's evictions Stats derives from the pending counters of
	// bpf/owl.h; a plain hash evicts nothing (a put into a full one is
	// counted as map_full).
	Pending string
	// PendingPartial says that an eviction from the Pending table loses
	// what the entry held, not the event, which is delivered without it
	// (uthreads: a thread's stop without its start routine): Stats counts
	// such evictions as PendingPartial, not as PendingEvicted.
	PendingPartial bool
	// PendingEntries, when not 0, is max_entries of the Pending table:
	// tests shrink it to overfill it (owl's hidden --pending-entries).
	PendingEntries uint32
}

// Open walks the hooks in order and returns a session on the first one that
// loads and attaches. When none does, the error is a *NoHookError.
func Open(spec *ebpf.CollectionSpec, hooks []Hook, opts Options) (*Session, error) {
	if opts.PendingEntries != 0 && opts.Pending == "" {
		return nil, fmt.Errorf("%s has no table of pending events to size", opts.Tool)
	}
	only := opts.Only
	if only == "" && opts.Prefer != "" {
		if _, err := Select(hooks, opts.Prefer); err == nil {
			only = opts.Prefer
		}
	}
	hooks, err := Select(hooks, only)
	if err != nil {
		return nil, err
	}
	if opts.Runtime == nil {
		opts.Runtime = NewRuntime()
	}
	if opts.RingBytes != 0 && (opts.RingBytes < minRing || opts.RingBytes&(opts.RingBytes-1) != 0) {
		return nil, fmt.Errorf("ring buffer of %d bytes: want a power of two of at least %d", opts.RingBytes, minRing)
	}
	var tried []Failure
	for _, h := range hooks {
		s, err := tryHook(spec, h, &opts, only != "")
		if err != nil {
			tried = append(tried, Failure{Hook: h.Name, Err: explain(h.Kind, err)})
			continue
		}
		s.Tried = tried
		return s, nil
	}
	return nil, &NoHookError{Tool: opts.Tool, Tried: tried}
}

// tryHook loads the programs of h and attaches them. A forced hook skips
// its Check: whoever forces it wants that path even where it is not the best.
func tryHook(spec *ebpf.CollectionSpec, h Hook, opts *Options, forced bool) (_ *Session, err error) {
	if h.Check != nil && !forced {
		if err := h.Check(); err != nil {
			return nil, err
		}
	}
	cs := spec.Copy()
	want := map[string]bool{}
	for _, n := range h.Programs() {
		if cs.Programs[n] == nil {
			return nil, fmt.Errorf("program %s missing from the BPF object", n)
		}
		want[n] = true
	}
	for name := range cs.Programs {
		if !want[name] {
			delete(cs.Programs, name)
		}
	}
	if err := configureShared(cs, opts); err != nil {
		return nil, fmt.Errorf("configure: %w", err)
	}
	if opts.Configure != nil {
		if err := opts.Configure(cs); err != nil {
			return nil, fmt.Errorf("configure: %w", err)
		}
	}
	co := ebpf.CollectionOptions{Cache: opts.Runtime.BTF}
	co.Programs.KernelTypes = opts.Runtime.kernelTypes(cs)
	coll, err := ebpf.NewCollectionWithOptions(cs, co)
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load: %w", verr)
		}
		return nil, fmt.Errorf("load: %w", err)
	}
	latency := opts.Latency
	if latency <= 0 {
		latency = DefaultLatency
	}
	s := &Session{Coll: coll, Hook: h, Runtime: opts.Runtime, latency: latency}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	var sh sharedMaps
	if err := s.Assign(&sh); err != nil {
		return nil, err
	}
	s.counterMap = sh.Counters
	if opts.Pending != "" {
		if s.pending = coll.Maps[opts.Pending]; s.pending == nil {
			return nil, fmt.Errorf("map %s missing from the BPF object", opts.Pending)
		}
		s.pendingPartial = opts.PendingPartial
	}
	if opts.Net != nil {
		if err := s.setPorts(opts.Net.Ports); err != nil {
			return nil, err
		}
	}
	for _, a := range h.Attachments {
		var l link.Link
		var err error
		if a.each != nil {
			var skipped []Failure
			l, skipped, err = a.each.attach(cs, coll, a.Program, opts.Runtime.BTF)
			s.Skipped = append(s.Skipped, skipped...)
		} else {
			l, err = a.attach(coll.Programs[a.Program])
		}
		if err != nil {
			if a.Optional {
				continue
			}
			return nil, fmt.Errorf("attach %s: %w", a.Target, err)
		}
		if a.each == nil && a.forPID() != 0 {
			if s.relinks == nil {
				s.relinks = map[int]Attachment{}
			}
			s.relinks[len(s.links)] = a
		}
		s.links = append(s.links, l)
	}
	if !opts.NoReader {
		if s.reader, err = ringbuf.NewReader(sh.Events); err != nil {
			return nil, fmt.Errorf("ring buffer reader: %w", err)
		}
	}
	if err := s.syncClock(); err != nil {
		return nil, err
	}
	return s, nil
}

// syncClock takes the offset between the wall clock and the monotonic
// clock that bpf_ktime_get_ns() reads.
func (s *Session) syncClock() error {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	return s.syncClockLocked()
}

func (s *Session) syncClockLocked() error {
	var mono unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		return fmt.Errorf("clock_gettime: %w", err)
	}
	s.clock, s.clockAt = time.Now().UnixNano()-mono.Nano(), mono.Nano()
	return nil
}

// resync is how often the wall/monotonic offset is taken again: NTP steps
// and slews the wall clock, the monotonic clock does not follow, and a
// tool may run for weeks.
const resync = int64(10 * time.Second)

// Time converts a bpf_ktime_get_ns() timestamp to wall-clock time. It is
// on the per-event path: one lock, and two clock reads every 10 s.
func (s *Session) Time(ktimeNs uint64) time.Time {
	s.clockMu.Lock()
	if int64(ktimeNs)-s.clockAt > resync {
		s.syncClockLocked()
	}
	off := s.clock
	s.clockMu.Unlock()
	return time.Unix(0, int64(ktimeNs)+off)
}

// HasReader reports whether the session reads a ring buffer (count-only
// modes and `owl tools` do not).
func (s *Session) HasReader() bool { return s.reader != nil }

// Read calls fn with each ring-buffer record until ctx is done, then with
// the records still in the ring: an event the kernel wrote before the end is
// delivered, not dropped. The slice is only valid during the call. Idle is
// called when the ring is drained, so callers can flush output in batches.
// Without a reader, Read waits for ctx.
func (s *Session) Read(ctx context.Context, fn func(raw []byte), idle func()) error {
	if s.reader == nil {
		<-ctx.Done()
		return nil
	}
	// Flush wakes a blocked read; reads then return what is pending, then
	// ErrFlushed.
	stop := context.AfterFunc(ctx, func() { s.reader.Flush() })
	defer stop()
	// Records below the wakeup threshold wake no one: the reader looks
	// for them when its deadline passes, then sets the next one.
	s.reader.SetDeadline(time.Now().Add(s.latency))
	var rec ringbuf.Record
	for {
		if err := s.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if idle != nil {
					idle()
				}
				s.reader.SetDeadline(time.Now().Add(s.latency))
				continue
			}
			if errors.Is(err, ringbuf.ErrFlushed) || errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, os.ErrClosed) {
				if idle != nil {
					idle()
				}
				return nil
			}
			return fmt.Errorf("read ring buffer: %w", err)
		}
		fn(rec.RawSample)
		if idle != nil && s.reader.AvailableBytes() == 0 {
			idle()
		}
	}
}

// Stats reads the kernel-side drop counters; Events and QueueFull are the
// caller's to fill. Safe to call at any time, from any goroutine.
func (s *Session) Stats() (Stats, error) {
	c, err := s.counters()
	if err != nil {
		return Stats{}, err
	}
	st := Stats{RingFull: c[ctrRingFull], MapFull: c[ctrMapFull], StackUnavailable: c[ctrStack]}
	if m := s.unpairedMap(); m != nil {
		var perCPU []uint64
		if err := m.Lookup(uint32(0), &perCPU); err != nil {
			return st, fmt.Errorf("read %s: %w", UnpairedMap, err)
		}
		for _, n := range perCPU {
			st.UnpairedReturn += n
		}
	}
	// Only an LRU table evicts; counting a plain hash's entries would cost
	// a walk of it for nothing.
	if s.pending != nil && (s.pending.Type() == ebpf.LRUHash || s.pending.Type() == ebpf.LRUCPUHash) {
		held, err := count(s.pending)
		if err != nil {
			return st, err
		}
		// What was put and neither taken back nor still held was evicted.
		var evicted uint64
		if out := c[ctrPendingTaken] + held; c[ctrPendingPut] > out {
			evicted = c[ctrPendingPut] - out
		}
		if s.pendingPartial {
			st.PendingPartial = evicted
		} else {
			st.PendingEvicted = evicted
		}
	}
	return st, nil
}

// unpairedMap is the tool's UnpairedMap, nil when it has none or the
// session is closed.
func (s *Session) unpairedMap() *ebpf.Map {
	if s.Coll == nil {
		return nil
	}
	return s.Coll.Maps[UnpairedMap]
}

// count returns the number of entries in m.
func count(m *ebpf.Map) (uint64, error) {
	var (
		n   uint64
		key = make([]byte, m.KeySize())
	)
	it := m.Iterate()
	val := make([]byte, m.ValueSize())
	for it.Next(&key, &val) {
		n++
	}
	if err := it.Err(); err != nil {
		return n, fmt.Errorf("count %s: %w", m, err)
	}
	return n, nil
}

// PIDFiltered reports whether the kernel filters some of the session's
// uprobes on one process (-p): see Relink.
func (s *Session) PIDFiltered() bool {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	return len(s.relinks) > 0
}

// Relink attaches again the uprobes the kernel filters on one process,
// after that process exec'd from a thread other than its leader. The
// kernel's filter holds the leading thread (a task, not the pid), and
// such an exec ends that thread: the new image would never trap. Calls
// between the exec and Relink are not seen.
func (s *Session) Relink() error {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	if s.Coll == nil {
		return errors.New("session closed")
	}
	var errs []error
	for i, a := range s.relinks {
		// Closed first: where the old link still traps (an exec by the
		// leader), both together would count each call twice.
		if s.links[i] != nil {
			errs = append(errs, s.links[i].Close())
			s.links[i] = nil
		}
		l, err := a.attach(s.Coll.Programs[a.Program])
		if err != nil {
			errs = append(errs, fmt.Errorf("attach %s again: %w", a.Target, err))
			continue
		}
		s.links[i] = l
	}
	return errors.Join(errs...)
}

// Close detaches every link and frees the collection. Safe to call twice.
func (s *Session) Close() error {
	var errs []error
	if s.reader != nil {
		errs = append(errs, s.reader.Close())
		s.reader = nil
	}
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	for _, l := range s.links {
		if l != nil {
			errs = append(errs, l.Close())
		}
	}
	s.links = nil
	if s.Coll != nil {
		s.Coll.Close()
		s.Coll = nil
	}
	return errors.Join(errs...)
}
