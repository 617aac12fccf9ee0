// Package uthreads traces thread starts and stops of Java processes
// through the JVM's USDT probes: BCC's uthreads.
package uthreads

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/usdt"
)

// Event is one thread start or stop.
type Event struct {
	event.Task
	Type string     `json:"type"` // start or stop
	Name langs.Text `json:"name"` // the thread's name
	// RuntimeID is the runtime's id of the thread (Java's Thread.getId()),
	// NativeID the kernel's (its TID).
	RuntimeID uint64 `json:"runtime_id"`
	NativeID  uint64 `json:"native_id"`
}

const (
	roleStart = 1
	roleStop  = 2
)

// Config is what to trace: the thread probes of one process's runtime.
type Config struct {
	Lang    langs.Lang
	Probes  []usdt.Probe
	Cookies []uint64
	pid     int
	each    bool
}

// Resolve finds the thread probes of lang in process pid.
func Resolve(lang langs.Lang, pid int) (Config, error) {
	if lang != langs.Java {
		return Config{}, fmt.Errorf("uthreads: %s has no thread probes; only java is supported", lang)
	}
	// thread__start(name, name len, java id, native id, is_daemon).
	c := langs.Cookie{Vals: [2]uint8{2, 3}, Strs: [2]langs.Str{{Ptr: 0, Len: 1}, langs.NoStr}}
	start, stop := c, c
	start.Role, stop.Role = roleStart, roleStop
	probes, cookies, err := langs.Probes(lang, pid, []langs.Want{{Name: "thread__start", Cookie: start}, {Name: "thread__stop", Cookie: stop}})
	if err != nil {
		return Config{}, err
	}
	return Config{Lang: lang, Probes: probes, Cookies: cookies, pid: pid}, nil
}

const hookName = "USDT thread start and stop probes of the runtime: uprobes"

func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: hookName}
	as, err := usdt.Attachments(uthreadsProgUthreadsHit, cfg.Probes, cfg.pid, cfg.each)
	if err != nil {
		h.Check = func() error { return err }
	}
	h.Attachments = as
	return []probe.Hook{h}
}

// ErrNoProcess is the error of a Config without probes: uthreads needs -p.
var ErrNoProcess = fmt.Errorf("uthreads: no process given (-p PID) (%w)", tool.ErrNeedsArgs)

var spec = tool.Spec[Config, Event]{
	Name:    "uthreads",
	Group:   "language",
	Summary: "Trace thread starts and stops of a Java process, with their names",
	Long: `Print one line per thread started or stopped in process -p PID, a Java
program, from the JVM's thread__start and thread__stop USDT probes (no flag
needed in the JVM), as BCC's uthreads: TIME is the seconds since tracing
began, ID is R=<Java thread id>/N=<native thread id (TID)>, TYPE start or
stop, DESCRIPTION the thread's name.`,
	Task:      true,
	RingBytes: 1 << 18,
	Load:      loadUthreads,
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: func(cfg Config, cs *ebpf.CollectionSpec) error {
		if len(cfg.Probes) == 0 {
			return ErrNoProcess
		}
		if err := usdt.Configure(cs, cfg.Probes, cfg.Cookies); err != nil {
			return err
		}
		if cfg.each {
			return nil
		}
		return probe.PrepareUprobes(cs, uthreadsProgUthreadsHit)
	},
	Decoder: func(cfg Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		return func(raw []byte, e *Event) bool {
			r, ok := probe.View[uthreadsEvent](raw)
			if !ok {
				return false
			}
			typ := "start"
			if r.Role == roleStop {
				typ = "stop"
			}
			*e = Event{Task: s.Task(raw), Type: typ, Name: langs.Text(langs.Int8String(r.Name[:])),
				RuntimeID: r.Ids[0], NativeID: r.Ids[1]}
			return true
		}, nil
	},
}

// Tool is uthreads' registry entry.
var Tool = tool.Register(&spec, command)

// Open loads uthreads and attaches it to the probes of cfg, in opts' -p
// process.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	if len(cfg.Probes) == 0 {
		return nil, ErrNoProcess
	}
	cfg.pid = opts.Task.PID
	return tool.Open(&spec, cfg, opts)
}
