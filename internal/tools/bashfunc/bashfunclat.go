package bashfunc

import (
	"fmt"
	"sort"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/funclatency"
)

// Hist is the duration histogram of one shell function over one report's
// interval.
type Hist struct {
	Time  event.Time `json:"time"`
	Func  string     `json:"func"` // escaped, as Event.Func
	Unit  string     `json:"unit"` // msecs, usecs or nsecs
	Count uint64     `json:"count"`
	Total uint64     `json:"total"` // sum of the durations, in Unit (truncated)
	Avg   uint64     `json:"avg"`   // Total / Count, in Unit (truncated)
	// Buckets are the rows the text histogram prints: power-of-two
	// ranges in Unit, from [0, 1] to the last non-empty one.
	Buckets []output.Bucket `json:"buckets"`
	// Slots are the output.Log2Slots counts Buckets come from.
	Slots []uint64 `json:"-"`
}

// LatConfig is bashfunclat's config: the bash, and the histograms' unit.
type LatConfig struct {
	Config
	Unit funclatency.Unit // funclatency's units; bashfunclat's default is Msecs
	// Funcs bounds the distinct function names timed (0: DefaultFuncs);
	// calls of others are lost and counted (map_full).
	Funcs int
}

// DefaultFuncs is how many distinct function names bashfunclat times by
// default (a histogram of 520 bytes each, preallocated).
const DefaultFuncs = 4096

// MaxFuncs bounds LatConfig.Funcs.
const MaxFuncs = 1 << 20

const latHookName = "uprobe bash:find_function_def + uprobe bash:restore_funcarray_state (uprobe-multi where the kernel has it)"

type latSpecConfig struct {
	LatConfig
	t *target
}

var latSpec = tool.Spec[latSpecConfig, Hist]{
	Name:    "bashfunclat",
	Group:   "language",
	Summary: "Time bash's shell functions as a log2 histogram per function",
	Long: `Time each call of a shell function by bash, from call to return, and print a
power-of-two histogram of the durations of each function (by name), with
their count, average and total, in milliseconds (--microseconds,
--nanoseconds). The histograms are kept in the kernel: owl reads them on
exit and, with -i, every interval (each report covers its own interval).

Calls are bashfunc's (find_function_def); the return is bash's
restore_funcarray_state, which runs once as each function ends (and at the
end of each "source", told apart). A call and its return are paired by
process and bash's nesting depth (funcnest), so recursion pairs exactly. A
call whose return never comes (the shell jumped past it: an error in an
interactive shell, exit) stays waiting until the next call at its depth
replaces it, and is then counted as evicted from the pending table; calls
still running at the end are neither timed nor counted. Time in functions
called by a function counts in both. Up to 4096 distinct names (--funcs);
the calls of others are counted as lost (table full).`,
	Task: true,
	Load: loadBashfunc,
	Default: func() latSpecConfig {
		return latSpecConfig{LatConfig: LatConfig{Unit: funclatency.Msecs}, t: newTarget(Config{}, 0)}
	},
	Caps:  tool.ReadsPID[latSpecConfig],
	Hooks: func(c latSpecConfig) []probe.Hook { return callHook(c.t, latHookName, true) },
	Configure: func(c latSpecConfig, cs *ebpf.CollectionSpec) error {
		funcs := c.Funcs
		if funcs == 0 {
			funcs = DefaultFuncs
		}
		return configure(c.t, cs, false, true, c.Unit.Nanoseconds(), funcs)
	},
	Pending: bashfuncMapCalls,
	// Counted in the kernel: no ring, no events; the histograms are the
	// output.
	Stream: func(latSpecConfig) bool { return false },
	Decoder: func(latSpecConfig, *probe.Session) (func([]byte, *Hist) bool, error) {
		return func([]byte, *Hist) bool { return false }, nil
	},
}

// LatTool is bashfunclat's registry entry.
var LatTool = tool.Register(&latSpec, latCommand)

// LatSource is a running bashfunclat: histograms in the kernel, read by
// Since and Totals.
type LatSource struct {
	*tool.Source[Hist]
	cfg  LatConfig
	last map[bashfuncNameKey]bashfuncHist // what Since read last
}

// OpenLat loads bashfunclat and attaches it to the bash of cfg; with a
// pid in opts, to that process only.
func OpenLat(cfg LatConfig, opts tool.Options) (*LatSource, error) {
	if cfg.Funcs < 0 || cfg.Funcs > MaxFuncs {
		return nil, fmt.Errorf("bashfunclat: %d functions: want 1 to %d", cfg.Funcs, MaxFuncs)
	}
	t, err := foundTarget(cfg.Config, opts.Task.PID)
	if err != nil {
		return nil, err
	}
	src, err := tool.Open(&latSpec, latSpecConfig{LatConfig: cfg, t: t}, opts)
	if err != nil {
		return nil, err
	}
	return &LatSource{Source: src, cfg: cfg, last: map[bashfuncNameKey]bashfuncHist{}}, nil
}

// Totals returns the histograms since tracing began, one per function
// that returned, sorted by name, stamped with now.
func (s *LatSource) Totals(now time.Time) ([]Hist, error) {
	cur, err := s.read()
	if err != nil {
		return nil, err
	}
	return s.hists(now, cur, nil), nil
}

// Since returns the histograms of the calls that returned since the
// previous Since (or since tracing began). The kernel's counts are never
// reset, so no call falls between a read and a reset: each interval is
// the difference of two reads.
func (s *LatSource) Since(now time.Time) ([]Hist, error) {
	cur, err := s.read()
	if err != nil {
		return nil, err
	}
	h := s.hists(now, cur, s.last)
	s.last = cur
	return h, nil
}

func (s *LatSource) read() (map[bashfuncNameKey]bashfuncHist, error) {
	var m bashfuncMaps
	if err := s.Assign(&m); err != nil {
		return nil, err
	}
	cur := map[bashfuncNameKey]bashfuncHist{}
	var (
		k bashfuncNameKey
		h bashfuncHist
	)
	it := m.Hists.Iterate()
	for it.Next(&k, &h) {
		cur[k] = h
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read histograms: %w", err)
	}
	return cur, nil
}

// hists makes the reports of cur minus prev, for the functions with calls.
func (s *LatSource) hists(now time.Time, cur, prev map[bashfuncNameKey]bashfuncHist) []Hist {
	unit := s.cfg.Unit
	var out []Hist
	for k, c := range cur {
		p := prev[k]
		slots := make([]uint64, output.Log2Slots)
		h := Hist{Time: event.Time{Time: now}, Func: cName(k.Name[:]), Unit: unit.Label(), Slots: slots}
		for i := range slots {
			slots[i] = c.Slots[i] - p.Slots[i]
			h.Count += slots[i]
		}
		if h.Count == 0 {
			continue
		}
		totalNs := c.TotalNs - p.TotalNs
		h.Total = totalNs / unit.Nanoseconds()
		h.Avg = totalNs / h.Count / unit.Nanoseconds()
		h.Buckets = output.Log2Buckets(slots)
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Func < out[j].Func })
	return out
}
