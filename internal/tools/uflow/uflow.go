// Package uflow prints the method entries and returns of a Java, Python
// or Ruby process, indented by call depth per thread: BCC's uflow.
package uflow

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/usdt"
)

// Event is one method entry or return.
type Event struct {
	event.Task
	Return bool       `json:"return"`
	Depth  uint32     `json:"depth"` // the call's depth on its thread, 1 for the first seen
	Class  langs.Text `json:"class"` // class (Python: file name)
	Method langs.Text `json:"method"`
	// ElapsedNs is the call's time, at a return whose entry was seen.
	ElapsedNs uint64 `json:"elapsed_ns,omitempty"`
	// Unpaired marks a return whose entry was not seen.
	Unpaired bool `json:"unpaired,omitempty"`
}

const (
	roleEntry  = 1
	roleReturn = 2
)

// Config is what to trace: the method probes of one process's runtime,
// and the class and method prefixes to print (-C, -M).
type Config struct {
	Lang         langs.Lang
	Probes       []usdt.Probe
	Cookies      []uint64
	ClassPrefix  string
	MethodPrefix string
	pid          int
	each         bool
}

// Resolve finds the method entry and return probes of lang in pid. A JVM
// started without the flag that makes them fire is an error wrapping
// langs.ErrJavaFlag.
func Resolve(lang langs.Lang, pid int) (Config, error) {
	m, ok := langs.Methods(lang)
	if !ok {
		return Config{}, fmt.Errorf("uflow: no method probes for %s", lang)
	}
	if lang == langs.Java && !langs.JavaMethodProbes(pid) {
		return Config{}, fmt.Errorf("process %d: %w", pid, langs.ErrJavaFlag)
	}
	var want []langs.Want
	for i := range m.Entry {
		for _, p := range []struct {
			name string
			role uint8
		}{{m.Entry[i], roleEntry}, {m.Return[i], roleReturn}} {
			want = append(want, langs.Want{Name: p.name, Optional: i > 0,
				Cookie: langs.Cookie{Role: p.role, Strs: [2]langs.Str{m.Class, m.Method}}})
		}
	}
	probes, cookies, err := langs.Probes(lang, pid, want)
	if err != nil {
		return Config{}, err
	}
	return Config{Lang: lang, Probes: probes, Cookies: cookies, pid: pid}, nil
}

const hookName = "USDT method entry and return probes of the runtime: uprobes, semaphores counted by the kernel"

func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: hookName}
	as, err := usdt.Attachments(uflowProgUflowHit, cfg.Probes, cfg.pid, cfg.each)
	if err != nil {
		h.Check = func() error { return err }
	}
	h.Attachments = as
	return []probe.Hook{h}
}

// ErrNoProcess is the error of a Config without probes: uflow needs -p.
var ErrNoProcess = fmt.Errorf("uflow: no process given (-p PID) (%w)", tool.ErrNeedsArgs)

var spec = tool.Spec[Config, Event]{
	Name:    "uflow",
	Group:   "language",
	Summary: "Print method entries and returns of a Java, Python or Ruby process, by depth",
	Long: `Print each method entry (->) and return (<-) of process -p PID, a Java, Python
or Ruby program, indented by its depth on its thread, from its runtime's
USDT probes, as BCC's uflow: CPU is left out, TIME(us) is the microseconds
since tracing began; a return whose entry was seen adds the call's time
in brackets. -C and -M print only the methods whose class (Python: file;
Java: as the JVM names it, java/lang/String) or name starts with a prefix,
of at most 79 bytes. They are matched in the kernel, so filtered calls
take no ring space, but every call still fires its probe (the runtime has
one probe for all methods) and counts in the depth.

Every call makes an event: tracing a busy program loses events when the
ring fills (counted and reported), and slows it down.

Java needs -XX:+ExtendedDTraceProbes, as for ucalls (owl says so and exits
with status 2 otherwise). Debian's python3.11 fires function__entry only
for generators and coroutines (cpython#98894) unless the program has a
profile hook (sys.setprofile(lambda *a: None)): without one, returns print
at the depth the entries seen give, marked unpaired in JSON. Ruby fires
method__entry/return for Ruby-defined methods only while a TracePoint for
:call and :return is enabled; C methods always.`,
	Task:      true,
	RingBytes: 8 << 20,
	Load:      loadUflow,
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
		if err := setPrefixes(cs, cfg.ClassPrefix, cfg.MethodPrefix); err != nil {
			return err
		}
		if cfg.each {
			return nil
		}
		return probe.PrepareUprobes(cs, uflowProgUflowHit)
	},
	Decoder: func(cfg Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		return func(raw []byte, e *Event) bool {
			r, ok := probe.View[uflowEvent](raw)
			if !ok {
				return false
			}
			cls, method := langs.Int8String(r.Cls[:]), langs.Int8String(r.Method[:])
			*e = Event{Task: s.Task(raw), Return: r.Role == roleReturn, Depth: r.Depth,
				Class: langs.Text(cls), Method: langs.Text(method), ElapsedNs: r.ElapsedNs,
				Unpaired: r.Role == roleReturn && r.Paired == 0}
			return true
		}, nil
	},
}

// MaxPrefix is the longest -C or -M prefix: names are kept in 80 bytes,
// NUL included.
const MaxPrefix = 79

// ErrPrefix is wrapped by Open for a prefix longer than MaxPrefix.
var ErrPrefix = fmt.Errorf("prefix longer than %d bytes (names are cut there)", MaxPrefix)

// setPrefixes sets the kernel's -C and -M filters.
func setPrefixes(cs *ebpf.CollectionSpec, class, method string) error {
	var v uflowVariableSpecs
	if err := cs.Assign(&v); err != nil {
		return err
	}
	for _, p := range []struct {
		s        string
		buf, len *ebpf.VariableSpec
	}{{class, v.ClassPrefix, v.ClassPrefixLen}, {method, v.MethodPrefix, v.MethodPrefixLen}} {
		if len(p.s) > MaxPrefix {
			return fmt.Errorf("%q: %w", p.s, ErrPrefix)
		}
		var b [MaxPrefix + 1]byte
		copy(b[:], p.s)
		if err := p.buf.Set(b); err != nil {
			return err
		}
		if err := p.len.Set(uint32(len(p.s))); err != nil {
			return err
		}
	}
	return nil
}

// Tool is uflow's registry entry.
var Tool = tool.Register(&spec, command)

// Open loads uflow and attaches it to the probes of cfg, in opts' -p
// process.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	if len(cfg.Probes) == 0 {
		return nil, ErrNoProcess
	}
	if len(cfg.ClassPrefix) > MaxPrefix || len(cfg.MethodPrefix) > MaxPrefix {
		return nil, fmt.Errorf("uflow: -C %q -M %q: %w", cfg.ClassPrefix, cfg.MethodPrefix, ErrPrefix)
	}
	cfg.pid = opts.Task.PID
	return tool.Open(&spec, cfg, opts)
}
