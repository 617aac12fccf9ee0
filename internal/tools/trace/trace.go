// Package trace prints calls of user functions with their arguments and
// return values, in BCC trace's probe syntax, for C, C++, Rust and Go.
package trace

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/caps"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/pyframes"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/uprobe"
)

// Event is one traced call (p:) or return (r:).
type Event struct {
	event.Task
	Probe  int    `json:"probe"` // index of the probe argument, from 0
	Func   string `json:"func"`
	Return bool   `json:"return"`
	// Msg is the format with its values, as the text output prints it.
	Msg string `json:"msg"`
	// Values are each conversion's value: a number, a string (%s; a cut
	// one ends with "..."; null for a NULL or unreadable char*), or for a
	// Go error null (nil) or an ErrorValue.
	Values []any        `json:"values"`
	UStack []syms.Frame `json:"ustack,omitempty"`
}

// Config is the probes and what else to gather; task filters are in
// tool.Options (-p also resolves libraries as that process sees them and
// attaches to it only).
type Config struct {
	Probes []string // probe arguments
	UStack bool     // -U
	Max    int      // functions one probe's glob may match (0: uprobe.DefaultMax)

	// Set by Open.
	targets []target
	pid     int
	goidOff uint32
	each    bool // one uprobe per offset even with uprobe-multi links (tests)
}

// ErrNoProbe is the error for a Config without probes.
var ErrNoProbe = fmt.Errorf("trace: no probe (%w)", tool.ErrNeedsArgs)

// SpecError is Open's error for a probe that is bad input: a syntax
// error, a file or function that does not resolve, an argument that
// cannot be read. Nothing was loaded.
type SpecError struct{ Err error }

func (e *SpecError) Error() string { return e.Err.Error() }
func (e *SpecError) Unwrap() error { return e.Err }

const hookName = "uprobe + uretprobe (Go: uprobes at each RET)"

// maxUStacks is how many distinct user stacks -U keeps.
const maxUStacks = 2048

// hooks attaches, per probe and file, entry uprobes where a probe emits or
// saves arguments at entry and, for r: probes, returns: a uretprobe for
// native code, a uprobe at each RET for Go. The cookie is the target id.
func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: hookName}
	at := probe.UprobesAt
	if cfg.each {
		at = probe.UprobeEachAt
	}
	type key struct {
		probe int
		path  string
		entry bool
		prog  string
	}
	type group struct{ offs, ids []uint64 }
	groups := map[key]*group{}
	var order []key
	add := func(k key, off uint64, id int) {
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
			order = append(order, k)
		}
		g.offs = append(g.offs, off)
		g.ids = append(g.ids, uint64(id))
	}
	for id, t := range cfg.targets {
		if t.entry {
			prog := traceProgNativeEntry
			if t.fn.Go {
				prog = traceProgGoEntry
			}
			add(key{t.probe, t.fn.Path, true, prog}, t.fn.Entry, id)
		}
		if !t.p.Return {
			continue
		}
		if !t.fn.Go {
			add(key{t.probe, t.fn.Path, false, traceProgNativeReturn}, t.fn.Offset, id)
			continue
		}
		for _, r := range t.fn.Rets {
			add(key{t.probe, t.fn.Path, false, traceProgGoReturn}, r, id)
		}
	}
	for _, k := range order {
		g := groups[k]
		h.Attachments = append(h.Attachments, at(k.prog, k.path, g.offs, g.ids, k.prog == traceProgNativeReturn, cfg.pid))
	}
	return []probe.Hook{h}
}

var spec = tool.Spec[Config, Event]{
	Name:    "trace",
	Group:   "language",
	Summary: "Trace calls of user functions with their arguments and return values",
	Long: `Print a line for each call (p:) or return (r:) of user functions, with their
arguments and return values formatted as a probe asks, as BCC's trace:

  [p:|r:][PATH_OR_LIB:]FUNC [(FILTER)] ["FORMAT"[, ARG...]]

PATH_OR_LIB:FUNC is a file or a library found as the dynamic loader would
(c, ssl), or with -p the process's executable and libraries, and a function
name or glob (C++ and Rust names demangled; Go functions, stripped binaries
too). p: (the default) fires at entry, r: at return. Kernel functions,
tracepoints (t:) and USDT (u:) are not supported.

ARGs are arg1..arg6 (C; arg1..arg8 on arm64), arg1..arg9 (Go) and retval
(r: only; Go: retval2..retval9 for further results). Beyond BCC, an r:
probe may print and filter on the entry arguments: they are saved at entry
(in an LRU table of 16384 calls) and taken back at the return; a return
whose entry is missing (the call began before tracing, or was evicted) is
not printed, and counted.

FORMAT is printf-like: %d %i %u %x %X %c with h, hh, l, ll or z (%d is a
C int: 32 bits, as in BCC; %ld %lld %llx are 64), %p, %s and %e (a Go
error). An unquoted format (r:c:open ret=%d, retval) ends at the first
comma. %s of a C char* reads up to 128 bytes (a longer string is cut and
ends with ...; NULL prints (null)); of a Go string exactly its length, up
to 128 bytes. A Go error prints as nil, or error(TYPE) "MESSAGE" for
errors.New and fmt.Errorf values, error(TYPE) for other types, and
error(?) when the binary does not tell the type.

Go functions: arguments and results are read by the register ABI (Go
1.17+, amd64 and arm64), in the nine integer registers. With DWARF each
parameter takes the words of its type: 1 for integers, pointers, maps,
chans and funcs, 2 for strings and interfaces (errors), 3 for slices;
floats are in X registers (not supported), and structs and arrays are not
supported (nor parameters after them). A method's receiver is arg1.
Without DWARF (-ldflags=-s or -w) each parameter is taken as one word,
except one formatted with %s or %e, taken as two. More words than nine is
an error. Returns are uprobes on each RET instruction, never uretprobes
(they corrupt Go programs); entries and returns pair by goroutine.

FILTER compares arg1.. and retval.. (one-word values) with integer
constants or each other (== != < <= > >=, signed 64-bit, whole registers:
a C int of -1 is 4294967295) combined with && || ! and parentheses. It
runs in the kernel: filtered calls cost no ring space. A filter that
cannot be compiled is an error (exit 2).

Columns as BCC's trace: PID, TID, COMM, FUNC and the message; -t adds
TIME as seconds since tracing began, -T as the wall clock. -U prints the
user stack under each event (frame pointers needed; up to 2048 distinct
stacks). Python processes show their Python frames (function, file:line; "lang":
"python" in JSON) in place of the interpreter's native frames, named from
the process's memory when the event is read.`,
	Task:      true,
	RingBytes: 4 << 20,
	Pending:   traceMapEntries,
	Load:      loadTrace,
	Caps: func(c Config, o tool.Options) caps.Set {
		return tool.ReadsPID(c, o) | caps.If(c.UStack, caps.SysPtrace)
	},
	Default: func() Config { return Config{} },
	Hooks:   hooks,
	Configure: func(cfg Config, cs *ebpf.CollectionSpec) error {
		if len(cfg.targets) == 0 {
			return ErrNoProbe
		}
		var v traceVariableSpecs
		if err := cs.Assign(&v); err != nil {
			return err
		}
		if err := v.GoidOff.Set(cfg.goidOff); err != nil {
			return err
		}
		var m traceMapSpecs
		if err := cs.Assign(&m); err != nil {
			return err
		}
		// The descriptors go in with the map, before anything attaches.
		m.Funcs.MaxEntries = uint32(len(cfg.targets))
		m.Funcs.Contents = nil
		for id, t := range cfg.targets {
			m.Funcs.Contents = append(m.Funcs.Contents, ebpf.MapKV{Key: uint32(id), Value: t.desc})
		}
		if !cfg.UStack {
			m.Ustacks.MaxEntries = 1
		} else {
			m.Ustacks.MaxEntries = maxUStacks
		}
		if err := pyframes.Configure(cs, cfg.UStack); err != nil {
			return err
		}
		if cfg.each {
			return nil
		}
		var progs []string
		for _, p := range []string{traceProgNativeEntry, traceProgNativeReturn, traceProgGoEntry, traceProgGoReturn} {
			if cs.Programs[p] != nil {
				progs = append(progs, p)
			}
		}
		return probe.PrepareUprobes(cs, progs...)
	},
	Decoder: func(cfg Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		d, err := newDecoder(cfg, s)
		if err != nil {
			return nil, err
		}
		return d.decode, nil
	},
}

// Tool is trace's registry entry.
var Tool = tool.Register(&spec, command)

// Probes parses the probe arguments.
func Probes(args []string) ([]*Probe, error) {
	if len(args) == 0 {
		return nil, ErrNoProbe
	}
	var ps []*Probe
	for _, a := range args {
		p, err := Parse(a)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Source is a running trace.
type Source struct {
	*tool.Source[Event]
	// Unprobed are Go functions of r: probes without a RET instruction
	// (they never return, or only by tail jumps): not attached.
	Unprobed []uprobe.Func
}

// Open parses and resolves the probes, then loads and attaches trace.
// Bad input (syntax, no such file or function, an argument that cannot
// be read) is a *SpecError, before anything is loaded.
func Open(cfg Config, opts tool.Options) (*Source, error) {
	src := &Source{}
	var err error
	if cfg.targets, src.Unprobed, cfg.goidOff, err = resolve(cfg, opts.Task.PID); err != nil {
		return nil, err
	}
	cfg.pid = opts.Task.PID
	if src.Source, err = tool.Open(&spec, cfg, opts); err != nil {
		return nil, err
	}
	return src, nil
}

// resolve makes the targets of every probe.
func resolve(cfg Config, pid int) ([]target, []uprobe.Func, uint32, error) {
	probes, err := Probes(cfg.Probes)
	if err != nil {
		if errors.Is(err, tool.ErrNeedsArgs) {
			return nil, nil, 0, err
		}
		return nil, nil, 0, &SpecError{err}
	}
	var targets []target
	var unprobed []uprobe.Func
	goids := map[uint32]bool{}
	var goidOff uint32
	for i, p := range probes {
		funcs, err := uprobe.Resolve(p.Target, uprobe.Options{PID: pid, Max: cfg.Max, Rets: p.Return})
		if err != nil {
			return nil, nil, 0, &SpecError{fmt.Errorf("probe %q: %w", p.Raw, err)}
		}
		var keep []uprobe.Func
		for _, f := range funcs {
			if f.Go && p.Return && len(f.Rets) == 0 {
				unprobed = append(unprobed, f)
				continue
			}
			keep = append(keep, f)
			if f.Go {
				off, err := uprobe.GoidOffset(f.Path)
				if err != nil {
					return nil, nil, 0, &SpecError{err}
				}
				goids[off], goidOff = true, off
			}
		}
		if len(keep) == 0 {
			return nil, nil, 0, &SpecError{fmt.Errorf("probe %q: the Go functions matched have no RET instruction", p.Raw)}
		}
		sigs, err := goSignatures(keep)
		if err != nil {
			return nil, nil, 0, &SpecError{fmt.Errorf("probe %q: %w", p.Raw, err)}
		}
		ts, err := plan(i, p, keep, sigs, cfg.UStack)
		if err != nil {
			return nil, nil, 0, &SpecError{err}
		}
		targets = append(targets, ts...)
	}
	if len(goids) > 1 {
		return nil, nil, 0, &SpecError{errors.New("Go binaries of different runtime layouts: trace one at a time")}
	}
	return targets, unprobed, goidOff, nil
}

// Misses counts returns of r: probes whose entry was not found (the call
// began before tracing, or its entry was evicted): not printed.
func (s *Source) Misses() (uint64, error) {
	var m traceMaps
	if err := s.Assign(&m); err != nil {
		return 0, err
	}
	var perCPU []uint64
	if err := m.Misses.Lookup(uint32(0), &perCPU); err != nil {
		return 0, fmt.Errorf("read misses: %w", err)
	}
	var n uint64
	for _, v := range perCPU {
		n += v
	}
	return n, nil
}

// decoder turns records into events. It runs on the ring's one reader.
type decoder struct {
	s       *probe.Session
	targets []target
	types   map[string]*goTypes // by path; nil value: no names
	ustacks *ebpf.Map
	procs   *syms.Processes
	py      *pyframes.Walker
	frames  [127]syms.BuildIDFrame
	rec     record
}

// maxProcesses bounds the processes whose mappings -U keeps.
const maxProcesses = 1024

func newDecoder(cfg Config, s *probe.Session) (*decoder, error) {
	d := &decoder{s: s, targets: cfg.targets, types: map[string]*goTypes{}}
	for _, t := range cfg.targets {
		if _, ok := d.types[t.fn.Path]; ok || !t.fn.Go {
			continue
		}
		g, err := openGoTypes(t.fn.Path)
		if err != nil {
			g = nil // error(?) for its errors
		}
		d.types[t.fn.Path] = g
	}
	if cfg.UStack {
		var m traceMaps
		if err := s.Assign(&m); err != nil {
			return nil, err
		}
		d.ustacks = m.Ustacks
		d.procs = syms.NewProcesses(syms.NewCache(), maxProcesses)
		if cfg.pid != 0 {
			d.procs.Learn(uint32(cfg.pid))
		}
		var err error
		if d.py, err = pyframes.New(s.Assign); err != nil {
			return nil, err
		}
		// The probed files are known now: their frames are named even
		// after the process exits (pid 0 has no /proc entry, so the
		// path is read).
		seen := map[string]bool{}
		for _, t := range cfg.targets {
			if !seen[t.fn.Path] {
				seen[t.fn.Path] = true
				d.procs.Exec(0, t.fn.Path)
			}
		}
	}
	return d, nil
}

func (d *decoder) decode(raw []byte, e *Event) bool {
	r, ok := probe.View[traceEvent](raw)
	if !ok || int(r.Fid) >= len(d.targets) {
		return false
	}
	t := &d.targets[r.Fid]
	rec := &d.rec
	rec.words = r.Words
	for i := range rec.strs {
		s := &r.Strs[i]
		n := min(int(s.Len), len(s.Data))
		rec.strs[i].aux, rec.strs[i].flags, rec.strs[i].data = s.Aux, s.Flags, s.Data[:n]
	}
	*e = Event{Task: d.s.Task(raw), Probe: t.probe, Func: t.fn.Name, Return: t.p.Return}
	var msg []byte
	msg, e.Values = t.message(nil, make([]any, 0, len(t.verbs)), rec, d.types[t.fn.Path])
	e.Msg = string(msg)
	if d.procs != nil {
		py := d.py.Python(r.Task.Pid, r.Pystack) // first: read while the process is there
		native := d.procs.ResolveUserStack(r.Task.Pid, d.userStack(r.Ustack), 0, 0)
		e.UStack = pyframes.Merge(native, py)
	}
	return true
}

// userStack returns user stack id as its table keeps it, innermost first
// (syms.ResolveUserStack names it up to the first empty frame); none for
// a failed id (counted in the kernel) or one no longer in the map.
func (d *decoder) userStack(id int32) []syms.BuildIDFrame {
	if id < 0 || d.ustacks == nil {
		return nil
	}
	if err := d.ustacks.Lookup(uint32(id), &d.frames); err != nil {
		return nil
	}
	return d.frames[:]
}
