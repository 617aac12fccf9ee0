// Package funccount counts calls of user functions (uprobes on C, C++,
// Rust and Go code) and hits of kernel tracepoints, in the kernel, as
// BCC's funccount does.
package funccount

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/uprobe"
)

// Count is how often one function or tracepoint was hit, in one report.
// funccount streams nothing: its outputs are these rows, read from a
// kernel map, so Count is also its Event type (the registry's; no record
// is ever decoded into one).
type Count struct {
	Time event.Time `json:"time"`
	// Func is the function's name as users see it (C++ and Rust
	// demangled), or GROUP:NAME for a tracepoint.
	Func  Name   `json:"func"`
	Count uint64 `json:"count"`
	// Path is the file the function is in, "" for a tracepoint.
	Path Name `json:"path"`
}

// Name is a symbol or file name: anyone can write them, so text and
// JSON print them escaped (event.AppendEscaped).
type Name string

// Append appends the escaped name.
func (n Name) Append(b []byte) []byte { return event.AppendEscaped(b, []byte(n)) }

// MarshalJSON writes the escaped name as a JSON string.
func (n Name) MarshalJSON() ([]byte, error) { return json.Marshal(string(n.Append(nil))) }

// Tracepoint is a kernel tracepoint, group:name.
type Tracepoint struct{ Group, Name string }

func (t Tracepoint) String() string { return t.Group + ":" + t.Name }

// Config is what to count: the functions (one counter each, in this
// order) then the tracepoints. The task filters are in tool.Options.
type Config struct {
	Funcs       []uprobe.Func
	Tracepoints []Tracepoint
	// PID limits the uprobes to one process, so that others do not even
	// trap into them; Open sets it from the task filter (-p).
	PID int
	// each attaches one uprobe per function even where uprobe-multi
	// links exist: the path older kernels take, for tests.
	each bool
}

// Len is the number of counters: functions and tracepoints.
func (c Config) Len() int { return len(c.Funcs) + len(c.Tracepoints) }

// hookName says what the default hook does, for README and --help.
const hookName = "uprobe (uprobe-multi where the kernel has it) + tracepoint for t:GROUP:NAME"

func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: hookName, Check: haveUprobes}
	if len(cfg.Funcs) == 0 && len(cfg.Tracepoints) > 0 {
		h = probe.Hook{Kind: probe.Tracepoint, Name: "tracepoint"}
	}
	// One attachment per file; the cookie of a function is its index.
	type file struct{ offsets, cookies []uint64 }
	var order []string
	files := map[string]*file{}
	for i, fn := range cfg.Funcs {
		f := files[fn.Path]
		if f == nil {
			f = &file{}
			files[fn.Path] = f
			order = append(order, fn.Path)
		}
		f.offsets = append(f.offsets, fn.Entry)
		f.cookies = append(f.cookies, uint64(i))
	}
	attach := probe.UprobesAt
	if cfg.each {
		attach = probe.UprobeEachAt
	}
	for _, path := range order {
		f := files[path]
		h.Attachments = append(h.Attachments, attach(funccountProgCountUprobe, path, f.offsets, f.cookies, false, cfg.PID))
	}
	for i, tp := range cfg.Tracepoints {
		h.Attachments = append(h.Attachments,
			probe.TracepointCookieAt(funccountProgCountTracepoint, tp.Group, tp.Name, uint64(len(cfg.Funcs)+i)))
	}
	return []probe.Hook{h}
}

// haveUprobes rejects kernels built without uprobe events (where sysfs
// says so) before anything is loaded.
func haveUprobes() error {
	if _, err := os.Stat("/sys/bus/event_source/devices"); err != nil {
		return nil // no sysfs to ask: let the attach tell
	}
	if _, err := os.Stat("/sys/bus/event_source/devices/uprobe"); errors.Is(err, fs.ErrNotExist) {
		return errors.New("this kernel has no uprobes (CONFIG_UPROBE_EVENTS)")
	}
	return nil
}

var spec = tool.Spec[Config, Count]{
	Name:    "funccount",
	Group:   "language",
	Summary: "Count calls of user functions (C, C++, Rust, Go) or kernel tracepoints",
	Long: `Count calls of the functions matching each PATTERN, in the kernel, and print
the counts on exit and, with -i, every interval (then the counts of that
interval, as BCC's funccount). Nothing is streamed: each call adds one to a
per-CPU counter.

A PATTERN is [PATH_OR_LIB:]FUNCTION, the function a glob (*, ?, [...]):
  ./app:work          function work of the file ./app
  c:malloc            malloc of libc, found as the dynamic loader finds it
                      (/etc/ld.so.cache; with -p, the process's own mappings)
  /usr/bin/python3:PyObject_*
  ./app:Shape::*      C++ and Rust names match and print demangled
  ./goapp:main.*      Go functions, from the pclntab (stripped binaries too)
  work                with -p: a function of that process's executable
  t:sched:sched_switch  a kernel tracepoint (t:GROUP:NAME, globs allowed)
Globs match symbol names of .symtab, .dynsym and the Go pclntab, raw and
demangled; a glob matching more than --max functions (default 1000) is
refused. -l lists what the patterns match without tracing.

With -p, uprobes fire in that process only (its libraries resolved through
its /proc/PID/maps and root). Functions that share an address (aliases) are
counted once. Text output is BCC's: a FUNC and COUNT table, smallest count
first, functions never called left out, the time above it with -T. With -o
json each report is one object per function called: its count (of the
interval with -i) and file ("" for a tracepoint).`,
	Task: true,
	Load: loadFunccount,
	// The default config counts nothing: its hook and the hook's check
	// are what `owl tools` reports.
	Caps:    tool.ReadsPID[Config], // -p: its maps
	Default: func() Config { return Config{} },
	Hooks:   hooks,
	Configure: func(cfg Config, cs *ebpf.CollectionSpec) error {
		var m funccountMapSpecs
		if err := cs.Assign(&m); err != nil {
			return err
		}
		m.Counts.MaxEntries = uint32(max(1, cfg.Len()))
		if cfg.each || cs.Programs[funccountProgCountUprobe] == nil {
			return nil
		}
		return probe.PrepareUprobes(cs, funccountProgCountUprobe)
	},
	Stream: func(Config) bool { return false },
	Decoder: func(Config, *probe.Session) (func([]byte, *Count) bool, error) {
		return func([]byte, *Count) bool { return false }, nil
	},
}

// Tool is funccount's registry entry.
var Tool = tool.Register(&spec, command)

// Source is a running funccount.
type Source struct {
	*tool.Source[Count]
	cfg Config
}

// MaxCounters bounds functions plus tracepoints in one run.
const MaxCounters = 1 << 20

// Open loads funccount and attaches it to every function and tracepoint
// of cfg; uprobes are limited to the -p process when opts has one.
func Open(cfg Config, opts tool.Options) (*Source, error) {
	if cfg.Len() == 0 {
		return nil, errors.New("funccount: nothing to count")
	}
	if cfg.Len() > MaxCounters {
		return nil, fmt.Errorf("funccount: %d functions and tracepoints, at most %d", cfg.Len(), MaxCounters)
	}
	cfg.PID = opts.Task.PID
	src, err := tool.Open(&spec, cfg, opts)
	if err != nil {
		return nil, err
	}
	return &Source{Source: src, cfg: cfg}, nil
}

// Counts returns the counts since tracing began, stamped with now: one
// per function then per tracepoint, in the order of the Config, zeros
// included. They are never reset, so no call is lost between a read and
// a reset; intervals are differences of two reads.
func (s *Source) Counts(now time.Time) ([]Count, error) {
	var m funccountMaps
	if err := s.Assign(&m); err != nil {
		return nil, err
	}
	counts := make([]Count, s.cfg.Len())
	for i, fn := range s.cfg.Funcs {
		counts[i] = Count{Func: Name(fn.Name), Path: Name(fn.Path)}
	}
	for i, tp := range s.cfg.Tracepoints {
		counts[len(s.cfg.Funcs)+i] = Count{Func: Name(tp.String())}
	}
	err := probe.Each(m.Counts, func(k *uint32, perCPU *[]uint64) {
		if int(*k) >= len(counts) {
			return
		}
		var n uint64
		for _, v := range *perCPU {
			n += v
		}
		counts[*k].Count = n
	})
	if err != nil {
		return nil, err
	}
	for i := range counts {
		counts[i].Time = event.Time{Time: now}
	}
	return counts, nil
}
