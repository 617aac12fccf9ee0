// Package ugc traces garbage collections of Java, Python and Ruby
// processes through their runtimes' USDT probes: BCC's ugc.
package ugc

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/usdt"
)

// Event is one garbage collection, or one phase or memory pool of it.
type Event struct {
	event.Task
	Kind        string     `json:"kind"` // gc, pool, mark, sweep
	ElapsedNs   uint64     `json:"elapsed_ns"`
	Description langs.Text `json:"description"`
}

// Roles of a location (byte 0 of its cookie; ugc.bpf.c).
const (
	roleBegin = 1
	roleEnd   = 2
)

// gcKind is one begin/end probe pair of a runtime and how to describe
// what they saw.
type gcKind struct {
	name       string // Event.Kind
	begin, end string // probe names
	beginVals  [2]uint8
	endVals    [2]uint8
	names      [2]langs.Str
	describe   func(begin, end [2]uint64, names [2]string) string
}

var none = [2]uint8{langs.None, langs.None}

// kinds are each language's GC probe pairs, in cookie kind order.
var kinds = map[langs.Lang][]gcKind{
	langs.Java: {
		// gc__begin(is_full), gc__end(): one per collection.
		{name: "gc", begin: "gc__begin", end: "gc__end", beginVals: [2]uint8{0, langs.None}, endVals: none,
			names: [2]langs.Str{langs.NoStr, langs.NoStr},
			describe: func(b, _ [2]uint64, _ [2]string) string {
				if b[0]&0xff != 0 {
					return "full collection"
				}
				return "collection (not full)"
			}},
		// mem__pool__gc__begin(manager, len, pool, len, initial, used,
		// committed, max): one per memory pool a collection touched.
		{name: "pool", begin: "mem__pool__gc__begin", end: "mem__pool__gc__end", beginVals: [2]uint8{5, 7}, endVals: [2]uint8{5, 7},
			names: [2]langs.Str{{Ptr: 0, Len: 1}, {Ptr: 2, Len: 3}},
			describe: func(b, e [2]uint64, n [2]string) string {
				return fmt.Sprintf("%s %s used=%d->%d max=%d->%d", n[0], n[1], int64(b[0]), int64(e[0]), int64(b[1]), int64(e[1]))
			}},
	},
	langs.Python: {
		// gc__start(generation), gc__done(collected).
		{name: "gc", begin: "gc__start", end: "gc__done", beginVals: [2]uint8{0, langs.None}, endVals: [2]uint8{0, langs.None},
			names: [2]langs.Str{langs.NoStr, langs.NoStr},
			describe: func(b, e [2]uint64, _ [2]string) string {
				return fmt.Sprintf("gen %d GC collected %d objects", int32(b[0]), int64(e[0]))
			}},
	},
	langs.Ruby: {
		{name: "mark", begin: "gc__mark__begin", end: "gc__mark__end", beginVals: none, endVals: none,
			names:    [2]langs.Str{langs.NoStr, langs.NoStr},
			describe: func(_, _ [2]uint64, _ [2]string) string { return "GC mark stage" }},
		{name: "sweep", begin: "gc__sweep__begin", end: "gc__sweep__end", beginVals: none, endVals: none,
			names:    [2]langs.Str{langs.NoStr, langs.NoStr},
			describe: func(_, _ [2]uint64, _ [2]string) string { return "GC sweep stage" }},
	},
}

// Config is what to trace: the GC probes of one process's runtime.
type Config struct {
	Lang    langs.Lang
	Probes  []usdt.Probe
	Cookies []uint64
	// Min leaves out collections shorter than it (-M), in the kernel.
	Min  time.Duration
	pid  int
	each bool
}

// Resolve finds the GC probes of lang in process pid.
func Resolve(lang langs.Lang, pid int) (Config, error) {
	ks, ok := kinds[lang]
	if !ok {
		return Config{}, fmt.Errorf("ugc: no GC probes for %s", lang)
	}
	var want []langs.Want
	for i, k := range ks {
		want = append(want,
			langs.Want{Name: k.begin, Cookie: langs.Cookie{Role: roleBegin, Kind: uint8(i), Vals: k.beginVals, Strs: [2]langs.Str{langs.NoStr, {Ptr: k.names[1].Ptr, Len: langs.None}}}},
			langs.Want{Name: k.end, Cookie: langs.Cookie{Role: roleEnd, Kind: uint8(i), Vals: k.endVals, Strs: k.names}})
	}
	probes, cookies, err := langs.Probes(lang, pid, want)
	if err != nil {
		return Config{}, err
	}
	return Config{Lang: lang, Probes: probes, Cookies: cookies, pid: pid}, nil
}

const hookName = "USDT GC begin and end probes of the runtime: uprobes, semaphores counted by the kernel"

func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: hookName}
	as, err := usdt.Attachments(ugcProgUgcHit, cfg.Probes, cfg.pid, cfg.each)
	if err != nil {
		h.Check = func() error { return err }
	}
	h.Attachments = as
	return []probe.Hook{h}
}

// ErrNoProcess is the error of a Config without probes: ugc needs -p.
var ErrNoProcess = fmt.Errorf("ugc: no process given (-p PID) (%w)", tool.ErrNeedsArgs)

var spec = tool.Spec[Config, Event]{
	Name:    "ugc",
	Group:   "language",
	Summary: "Trace garbage collections of a Java, Python or Ruby process",
	Long: `Print one line per garbage collection of process -p PID, a Java, Python or
Ruby program, with the time it took and a description, from its runtime's
USDT probes, as BCC's ugc: START is the seconds since tracing began. The
language comes from -l, else from the process's executable and the runtime
libraries it maps.

Java: one "gc" line per collection (hotspot gc__begin/gc__end: full or
not) and, where the JVM fires them, one "pool" line per memory pool it
touched (mem__pool__gc__begin/end: manager, pool, used and max bytes
before and after). Python: gc__start/gc__done (generation, objects
collected). Ruby: gc__mark__begin/end and gc__sweep__begin/end, the
stages of its collector. No flag is needed in the traced program.

-M MS leaves out collections shorter than MS milliseconds (in the kernel);
-F TEXT prints only those whose description contains TEXT; -m prints the
time in milliseconds.`,
	Task:      true,
	RingBytes: 1 << 18,
	Load:      loadUgc,
	Caps:      tool.ReadsPID[Config], // the -p process: its executable, maps, root
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: func(cfg Config, cs *ebpf.CollectionSpec) error {
		if len(cfg.Probes) == 0 {
			return ErrNoProcess
		}
		if err := usdt.Configure(cs, cfg.Probes, cfg.Cookies); err != nil {
			return err
		}
		var v ugcVariableSpecs
		if err := cs.Assign(&v); err != nil {
			return err
		}
		if err := v.MinNs.Set(uint64(cfg.Min)); err != nil {
			return err
		}
		if cfg.each {
			return nil
		}
		return probe.PrepareUprobes(cs, ugcProgUgcHit)
	},
	Decoder: func(cfg Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		ks := kinds[cfg.Lang]
		return func(raw []byte, e *Event) bool {
			r, ok := probe.View[ugcEvent](raw)
			if !ok || int(r.Kind) >= len(ks) {
				return false
			}
			k := ks[r.Kind]
			names := [2]string{langs.Int8String(r.Names[0][:]), langs.Int8String(r.Names[1][:])}
			*e = Event{Task: s.Task(raw), Kind: k.name, ElapsedNs: r.ElapsedNs,
				Description: langs.Text(k.describe(r.Begin, r.End, names))}
			return true
		}, nil
	},
}

// Tool is ugc's registry entry.
var Tool = tool.Register(&spec, command)

// Open loads ugc and attaches it to the GC probes of cfg, in opts' -p
// process.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	if len(cfg.Probes) == 0 {
		return nil, ErrNoProcess
	}
	cfg.pid = opts.Task.PID
	return tool.Open(&spec, cfg, opts)
}
