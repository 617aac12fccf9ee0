// Package funclatency times user functions, from entry to return, into a
// log2 histogram per function kept in the kernel: BCC's funclatency for
// C, C++, Rust and Go programs.
package funclatency

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/uprobe"
)

// Hist is the latency histogram of one function (-F), or of all the
// matched functions together, over one report's interval.
type Hist struct {
	Time event.Time `json:"time"`
	// Func is the function (with -F), or the pattern as given.
	Func  string `json:"func"`
	Unit  string `json:"unit"` // nsecs, usecs or msecs
	Count uint64 `json:"count"`
	Total uint64 `json:"total"` // sum of the durations, in Unit (truncated)
	Avg   uint64 `json:"avg"`   // Total / Count, in Unit (truncated)
	// Buckets are the rows the text histogram prints: power-of-two
	// ranges in Unit, from [0, 1] to the last non-empty one.
	Buckets []output.Bucket `json:"buckets"`
	// Slots are the output.Log2Slots counts Buckets come from.
	Slots   []uint64 `json:"-"`
	totalNs uint64
}

// Unit is the unit durations are bucketed in.
type Unit int

const (
	Nsecs Unit = iota // default
	Usecs             // -u
	Msecs             // -m
)

// Label is the unit as BCC's funclatency names it.
func (u Unit) Label() string {
	switch u {
	case Usecs:
		return "usecs"
	case Msecs:
		return "msecs"
	}
	return "nsecs"
}

// Nanoseconds is the unit's length.
func (u Unit) Nanoseconds() uint64 {
	switch u {
	case Usecs:
		return 1000
	case Msecs:
		return 1000000
	}
	return 1
}

// Config selects the functions and the histogram's unit; the task
// filters are in tool.Options (-p also resolves libraries as that process
// sees them).
type Config struct {
	Pattern string // [PATH_OR_LIB:]FUNC_GLOB
	Unit    Unit
	PerFunc bool // one histogram per function (-F)
	Max     int  // refuse patterns matching more functions (0: uprobe.DefaultMax)

	// Set by Open.
	funcs   []uprobe.Func // the functions timed; index = function id
	pid     int
	goidOff uint32
	// each attaches one uprobe per function even where the kernel has
	// uprobe-multi links: the path of kernels before 6.6, for tests.
	each bool
	// starts sizes the table of calls in flight (0: the BPF object's
	// 16384), for tests that overflow it.
	starts uint32
}

const hookName = "uprobe + uretprobe (Go: uprobes at each RET)"

// hooks attaches, per file, an entry uprobe to every function with its
// function id as cookie, and its returns: a uretprobe for native code, a
// uprobe at each RET for Go.
func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: hookName}
	at := probe.UprobesAt
	if cfg.each {
		at = probe.UprobeEachAt
	}
	type group struct{ native, goEntry, goRet, nativeIDs, goIDs, retIDs []uint64 }
	groups := map[string]*group{}
	var paths []string
	for id, f := range cfg.funcs {
		g := groups[f.Path]
		if g == nil {
			g = &group{}
			groups[f.Path] = g
			paths = append(paths, f.Path)
		}
		if !f.Go {
			g.native = append(g.native, f.Offset)
			g.nativeIDs = append(g.nativeIDs, uint64(id))
			continue
		}
		g.goEntry = append(g.goEntry, f.Entry)
		g.goIDs = append(g.goIDs, uint64(id))
		for _, r := range f.Rets {
			g.goRet = append(g.goRet, r)
			g.retIDs = append(g.retIDs, uint64(id))
		}
	}
	for _, p := range paths {
		g := groups[p]
		if len(g.native) > 0 {
			h.Attachments = append(h.Attachments,
				at(funclatencyProgNativeEntry, p, g.native, g.nativeIDs, false, cfg.pid),
				at(funclatencyProgNativeReturn, p, g.native, g.nativeIDs, true, cfg.pid))
		}
		if len(g.goEntry) > 0 {
			h.Attachments = append(h.Attachments,
				at(funclatencyProgGoEntry, p, g.goEntry, g.goIDs, false, cfg.pid),
				at(funclatencyProgGoReturn, p, g.goRet, g.retIDs, false, cfg.pid))
		}
	}
	return []probe.Hook{h}
}

var spec = tool.Spec[Config, Hist]{
	Name:    "funclatency",
	Group:   "language",
	Summary: "Time user functions and print their latency as a log2 histogram",
	Long: `Time each call of the functions a pattern matches, from entry to return, and
print the durations as a power-of-two histogram (as BCC's funclatency), with
their count, average and total. The histograms are kept in the kernel: owl
reads them on exit and, with -i, every interval (each report covers its own
interval). Durations are in nanoseconds, or in microseconds (-u, as BCC's;
the uid filter is --uid here) or milliseconds (-m); -F prints one histogram
per function.

PATTERN is [PATH_OR_LIB:]FUNC_GLOB: a program or library path, or a library
name (c, ssl) found as the dynamic loader would, or, with -p, the process's
own executable and libraries; the glob matches symbol names, C++ and Rust
names demangled, and Go functions (stripped Go binaries too).

Returns of C, C++ and Rust functions are taken by uretprobes. Go functions
get a uprobe at each of their RET instructions instead (a uretprobe would
corrupt the goroutine's stack), and calls are told apart by goroutine, not
thread. Recursive and nested calls are paired by their stack frame.

Calls not timed are counted in the Lost line on exit (unpaired_return in
JSON): returns that found no start, because more calls were in flight at
once than the table of starts holds (16384) and its oldest were evicted, or,
for Go functions, because the call began before tracing did (a uretprobe is
set at entry, so a C call begun before tracing is not seen returning). A
call that never returns (a longjmp or C++ exception out of it, a Go panic)
is neither timed nor counted.`,
	Task:    true,
	Load:    loadFunclatency,
	Caps:    tool.ReadsPID[Config], // -p: its maps
	Default: func() Config { return Config{} },
	Hooks:   hooks,
	Configure: func(cfg Config, cs *ebpf.CollectionSpec) error {
		// Started without Open (the registry's default config), there is
		// nothing to time: say so rather than attach nothing.
		if len(cfg.funcs) == 0 {
			return ErrNoPattern
		}
		var v funclatencyVariableSpecs
		if err := cs.Assign(&v); err != nil {
			return err
		}
		if err := v.UnitNs.Set(cfg.Unit.Nanoseconds()); err != nil {
			return err
		}
		if err := v.GoidOff.Set(cfg.goidOff); err != nil {
			return err
		}
		var m funclatencyMapSpecs
		if err := cs.Assign(&m); err != nil {
			return err
		}
		m.Hists.MaxEntries = uint32(max(len(cfg.funcs), 1))
		if cfg.starts != 0 {
			m.Starts.MaxEntries = cfg.starts
		}
		if cfg.each {
			return nil
		}
		var progs []string
		for _, p := range []string{funclatencyProgNativeEntry, funclatencyProgNativeReturn, funclatencyProgGoEntry, funclatencyProgGoReturn} {
			if cs.Programs[p] != nil {
				progs = append(progs, p)
			}
		}
		return probe.PrepareUprobes(cs, progs...)
	},
	// Counted in the kernel: no ring, no events; the histograms are the
	// output.
	Stream: func(Config) bool { return false },
	Decoder: func(Config, *probe.Session) (func([]byte, *Hist) bool, error) {
		return func([]byte, *Hist) bool { return false }, nil
	},
}

// Tool is funclatency's registry entry.
var Tool = tool.Register(&spec, command)

// ErrNoPattern is the error for a Config without a pattern.
var ErrNoPattern = fmt.Errorf("funclatency: no function pattern (%w)", tool.ErrNeedsArgs)

// Resolve returns the functions cfg.Pattern matches, as the process pid
// sees them when pid is not 0: what Open would time. Its errors (no such
// file, no match, too many) are the user's to fix.
func Resolve(cfg Config, pid int) ([]uprobe.Func, error) {
	if cfg.Pattern == "" {
		return nil, ErrNoPattern
	}
	sp, err := uprobe.Parse(cfg.Pattern)
	if err != nil {
		return nil, err
	}
	return uprobe.Resolve(sp, uprobe.Options{PID: pid, Max: cfg.Max, Rets: true})
}

// Source is a running funclatency: histograms in the kernel, read by
// Totals and Since.
type Source struct {
	*tool.Source[Hist]
	cfg Config
	// Untimed are Go functions without a RET instruction (they never
	// return, or only by tail jumps): not attached.
	Untimed []uprobe.Func
	last    []funclatencyHist // what Since read last, per function id
}

// PatternError is Open's error for a pattern that resolves to nothing
// (no such file, not ELF, no match, too many): the user's to fix.
type PatternError struct{ Err error }

func (e *PatternError) Error() string { return e.Err.Error() }
func (e *PatternError) Unwrap() error { return e.Err }

// Open resolves the pattern, loads and attaches funclatency.
func Open(cfg Config, opts tool.Options) (*Source, error) {
	funcs, err := Resolve(cfg, opts.Task.PID)
	if err != nil {
		return nil, &PatternError{Err: err}
	}
	src := &Source{}
	goids := map[string]uint32{}
	for _, f := range funcs {
		if f.Go && len(f.Rets) == 0 {
			src.Untimed = append(src.Untimed, f)
			continue
		}
		if f.Go {
			if _, ok := goids[f.Path]; !ok {
				if goids[f.Path], err = uprobe.GoidOffset(f.Path); err != nil {
					return nil, err
				}
			}
			// One binary per pattern; the offset is the BPF object's.
			cfg.goidOff = goids[f.Path]
		}
		cfg.funcs = append(cfg.funcs, f)
	}
	if len(cfg.funcs) == 0 {
		return nil, fmt.Errorf("%s: no function to time: the Go functions matched have no RET instruction", cfg.Pattern)
	}
	if len(goids) > 1 {
		return nil, fmt.Errorf("%s: functions of %d Go binaries; time one at a time", cfg.Pattern, len(goids))
	}
	cfg.pid = opts.Task.PID
	if src.Source, err = tool.Open(&spec, cfg, opts); err != nil {
		return nil, err
	}
	src.cfg = cfg
	src.last = make([]funclatencyHist, len(cfg.funcs))
	return src, nil
}

// Funcs are the functions timed, in the order of -F's histograms.
func (s *Source) Funcs() []uprobe.Func { return s.cfg.funcs }

// Totals returns the histograms since tracing began, stamped with now:
// one per function that was called with PerFunc, else one for all.
func (s *Source) Totals(now time.Time) ([]Hist, error) {
	cur, err := s.read()
	if err != nil {
		return nil, err
	}
	return s.hists(now, cur, make([]funclatencyHist, len(cur))), nil
}

// Since returns the histograms of the calls that returned since the
// previous Since (or since tracing began), as BCC's -i prints them. The
// kernel's counts are never reset, so no call falls between a read and a
// reset: each interval is the difference of two reads.
func (s *Source) Since(now time.Time) ([]Hist, error) {
	cur, err := s.read()
	if err != nil {
		return nil, err
	}
	h := s.hists(now, cur, s.last)
	s.last = cur
	return h, nil
}

// read copies every function's histogram out of the kernel.
func (s *Source) read() ([]funclatencyHist, error) {
	var m funclatencyMaps
	if err := s.Assign(&m); err != nil {
		return nil, err
	}
	cur := make([]funclatencyHist, len(s.cfg.funcs))
	for id := range cur {
		if err := m.Hists.Lookup(uint32(id), &cur[id]); err != nil {
			return nil, fmt.Errorf("read histogram %d: %w", id, err)
		}
	}
	return cur, nil
}

// hists makes the reports of cur minus prev.
func (s *Source) hists(now time.Time, cur, prev []funclatencyHist) []Hist {
	unit := s.cfg.Unit
	if !s.cfg.PerFunc {
		slots := make([]uint64, output.Log2Slots)
		var total uint64
		for id := range cur {
			for i := range slots {
				slots[i] += cur[id].Slots[i] - prev[id].Slots[i]
			}
			total += cur[id].TotalNs - prev[id].TotalNs
		}
		return []Hist{newHist(now, s.cfg.Pattern, unit, slots, total)}
	}
	var out []Hist
	for id, f := range s.cfg.funcs {
		slots := make([]uint64, output.Log2Slots)
		var n uint64
		for i := range slots {
			slots[i] = cur[id].Slots[i] - prev[id].Slots[i]
			n += slots[i]
		}
		if n > 0 {
			out = append(out, newHist(now, f.Name, unit, slots, cur[id].TotalNs-prev[id].TotalNs))
		}
	}
	return out
}

func newHist(now time.Time, name string, unit Unit, slots []uint64, totalNs uint64) Hist {
	h := Hist{Time: event.Time{Time: now}, Func: name, Unit: unit.Label(), Slots: slots,
		Buckets: output.Log2Buckets(slots), Total: totalNs / unit.Nanoseconds(), totalNs: totalNs}
	for _, n := range slots {
		h.Count += n
	}
	if h.Count > 0 {
		// floor(floor(t/c)/u) = floor(t/(c*u)), without c*u overflowing.
		h.Avg = totalNs / h.Count / unit.Nanoseconds()
	}
	if h.Buckets == nil {
		h.Buckets = []output.Bucket{}
	}
	return h
}
