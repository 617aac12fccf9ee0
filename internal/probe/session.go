package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Names every owl BPF object shares (bpf/owl.h).
const (
	eventsMap   = "events"
	lostVar     = "owl_lost"
	targTgidVar = "targ_tgid"
)

// Session is a tool's BPF collection loaded and attached through one hook.
// Its links are fd-based, so they go away with the process even on SIGKILL.
type Session struct {
	Coll   *ebpf.Collection
	Hook   Hook
	Tried  []Failure // hooks tried before Hook, with the reason each failed
	links  []link.Link
	reader *ringbuf.Reader
	clock  int64 // wall-clock ns minus CLOCK_MONOTONIC ns, for event times
}

// Options tune Open.
type Options struct {
	Tool string // for error messages
	// Only restricts the chain to these hook kinds (comma-separated); a
	// tool without such a hook fails. When empty, the OWL_HOOKS environment
	// variable is used, for the tools that have hooks of its kinds.
	Only string
	// Configure is called on a copy of the spec before each load, to set
	// filter variables and fill nothing else.
	Configure func(*ebpf.CollectionSpec) error
	// NoReader skips opening the ring buffer (for `owl tools`).
	NoReader bool
}

// SetTgid sets the shared pid filter (-p) of bpf/owl.h.
func SetTgid(spec *ebpf.CollectionSpec, pid int) error {
	if pid == 0 {
		return nil
	}
	v, ok := spec.Variables[targTgidVar]
	if !ok {
		return fmt.Errorf("variable %s missing from BPF object", targTgidVar)
	}
	return v.Set(uint32(pid))
}

// Open walks the hooks in order and returns a session on the first one that
// loads and attaches. When none does, the error is a *NoHookError.
func Open(spec *ebpf.CollectionSpec, hooks []Hook, opts Options) (*Session, error) {
	only := opts.Only
	if only == "" {
		// OWL_HOOKS forces a kind for the tools that have it and leaves the
		// others alone, so one setting can drive a whole test run.
		if env := os.Getenv("OWL_HOOKS"); env != "" {
			if _, err := Select(hooks, env); err == nil {
				only = env
			}
		}
	}
	hooks, err := Select(hooks, only)
	if err != nil {
		return nil, err
	}
	if err := EnsureTracefs(); err != nil {
		return nil, err
	}
	// One BTF cache for all attempts: parsing the kernel's BTF for CO-RE is
	// the dearest step of a load, and a fallback should not pay it twice.
	cache := btf.NewCache()
	var tried []Failure
	for _, h := range hooks {
		s, err := tryHook(spec, h, opts, cache, only != "")
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
func tryHook(spec *ebpf.CollectionSpec, h Hook, opts Options, cache *btf.Cache, forced bool) (_ *Session, err error) {
	if h.Check != nil && !forced {
		if err := h.Check(); err != nil {
			return nil, err
		}
	}
	cs := spec.Copy()
	want := map[string]bool{}
	for _, n := range h.Programs() {
		want[n] = true
	}
	for name := range cs.Programs {
		if !want[name] {
			delete(cs.Programs, name)
		}
	}
	if opts.Configure != nil {
		if err := opts.Configure(cs); err != nil {
			return nil, fmt.Errorf("configure: %w", err)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(cs, ebpf.CollectionOptions{Cache: cache})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load: %w", verr)
		}
		return nil, fmt.Errorf("load: %w", err)
	}
	s := &Session{Coll: coll, Hook: h}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, a := range h.Attachments {
		l, err := a.attach(coll.Programs[a.Program])
		if err != nil {
			if a.Optional {
				continue
			}
			return nil, fmt.Errorf("attach %s: %w", a.Target, err)
		}
		s.links = append(s.links, l)
	}
	if !opts.NoReader {
		m, ok := coll.Maps[eventsMap]
		if !ok {
			return nil, fmt.Errorf("map %s missing from BPF object", eventsMap)
		}
		if s.reader, err = ringbuf.NewReader(m); err != nil {
			return nil, fmt.Errorf("ring buffer reader: %w", err)
		}
	}
	var mono unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		return nil, fmt.Errorf("clock_gettime: %w", err)
	}
	s.clock = time.Now().UnixNano() - mono.Nano()
	return s, nil
}

// Time converts a bpf_ktime_get_ns() timestamp to wall-clock time.
func (s *Session) Time(ktimeNs uint64) time.Time {
	return time.Unix(0, int64(ktimeNs)+s.clock)
}

// Read calls fn with each ring-buffer record until ctx is done, then with
// the records still in the ring: an event the kernel wrote before the end is
// printed, not dropped. The slice is only valid during the call. Idle is
// called when the ring is drained, so callers can flush output in batches.
func (s *Session) Read(ctx context.Context, fn func(raw []byte), idle func()) error {
	// Flush wakes a blocked read; reads then return what is pending, then
	// ErrFlushed.
	stop := context.AfterFunc(ctx, func() { s.reader.Flush() })
	defer stop()
	var rec ringbuf.Record
	for {
		if err := s.reader.ReadInto(&rec); err != nil {
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

// Lost is the number of events the BPF side could not put in the ring.
func (s *Session) Lost() (uint64, error) {
	v, ok := s.Coll.Variables[lostVar]
	if !ok {
		return 0, fmt.Errorf("variable %s missing from BPF object", lostVar)
	}
	var n uint64
	if err := v.Get(&n); err != nil {
		return 0, fmt.Errorf("read %s: %w", lostVar, err)
	}
	return n, nil
}

// Close detaches every link and frees the collection. Safe to call twice.
func (s *Session) Close() error {
	var errs []error
	if s.reader != nil {
		errs = append(errs, s.reader.Close())
		s.reader = nil
	}
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	s.links = nil
	if s.Coll != nil {
		s.Coll.Close()
		s.Coll = nil
	}
	return errors.Join(errs...)
}
