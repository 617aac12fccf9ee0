// Package uthreads traces thread starts and stops of Java processes
// through the JVM's USDT probes, and of C programs (any process) through
// pthread_create and the kernel's task tracepoints: BCC's uthreads.
package uthreads

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/uprobe"
	"github.com/owlbpf/owl/internal/usdt"
)

// Event is one thread start or stop.
type Event struct {
	event.Task
	Type string `json:"type"` // start or stop
	// Name is the thread's name (C: at stop only, its comm then; at
	// start a new thread still has its creator's).
	Name langs.Text `json:"name"`
	// RuntimeID is the runtime's id of the thread (Java's Thread.getId();
	// 0 for C), NativeID the kernel's (its TID).
	RuntimeID uint64 `json:"runtime_id"`
	NativeID  uint64 `json:"native_id"`
	// Routine is a C thread's start routine, the function given to
	// pthread_create (at stop: when its start was seen).
	Routine *syms.Frame `json:"routine,omitempty"`
}

const (
	roleStart = 1
	roleStop  = 2
)

// Config is what to trace: the thread probes of one process's runtime,
// or for C its pthread_create.
type Config struct {
	Lang    langs.Lang
	Probes  []usdt.Probe
	Cookies []uint64
	// Pthread is pthread_create in the library the process maps (C).
	Pthread *uprobe.Func
	pid     int
	each    bool
}

// Resolve finds the thread probes of lang in process pid: Java's USDT
// probes, or for C the pthread_create the process would call (glibc
// 2.34 and later: libc.so.6; before: libpthread.so.0).
func Resolve(lang langs.Lang, pid int) (Config, error) {
	if lang == langs.C {
		f, err := pthreadCreate(pid)
		if err != nil {
			return Config{}, err
		}
		return Config{Lang: lang, Pthread: &f, pid: pid}, nil
	}
	if lang != langs.Java {
		return Config{}, fmt.Errorf("uthreads: %s has no thread probes; java and c are supported", lang)
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

// pthreadCreate finds pthread_create among the libraries pid maps:
// libpthread's when it has one (older glibc, or a libpthread of its own),
// else libc's.
func pthreadCreate(pid int) (uprobe.Func, error) {
	var errs []error
	for _, lib := range []string{"pthread", "c"} {
		fs, err := uprobe.Resolve(uprobe.Spec{Target: lib, Func: "pthread_create"}, uprobe.Options{PID: pid})
		if err == nil {
			return fs[0], nil
		}
		errs = append(errs, err)
	}
	return uprobe.Func{}, fmt.Errorf("process %d: no pthread_create in its libraries: %w", pid, errors.Join(errs...))
}

const (
	hookName  = "USDT thread start and stop probes of the runtime: uprobes"
	hookNameC = "C: uprobe pthread_create, tracepoints task:task_newtask and sched:sched_process_exit"
)

// newtaskLayout is struct newtask_ctx of uthreads.bpf.c.
var newtaskLayout = map[string]int{"pid": 8, "clone_flags": 32}

func hooks(cfg Config) []probe.Hook {
	if cfg.Lang == langs.C {
		h := probe.Hook{Kind: probe.Uprobe, Name: hookNameC, Check: probe.CheckLayout("task", "task_newtask", newtaskLayout)}
		if cfg.Pthread != nil {
			h.Attachments = []probe.Attachment{
				// A uprobe-multi link where the kernel has them: bound
				// to the process, a perf-event uprobe was refused
				// without CAP_SYS_ADMIN (6.18, test/privs).
				probe.UprobesAt(uthreadsProgUthreadsPthread, cfg.Pthread.Path, []uint64{cfg.Pthread.Offset}, nil, false, cfg.pid),
				probe.TracepointAt(uthreadsProgUthreadsNewtask, "task", "task_newtask"),
				probe.TracepointAt(uthreadsProgUthreadsExit, "sched", "sched_process_exit"),
			}
		}
		return []probe.Hook{h}
	}
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
	Summary: "Trace thread starts and stops of a Java or C process, with their names",
	Long: `Print one line per thread started or stopped in process -p PID, as BCC's
uthreads: TIME is the seconds since tracing began, ID is R=<runtime thread
id>/N=<native thread id (TID)>, TYPE start or stop.

Java (detected, or -l java): from the JVM's thread__start and thread__stop
USDT probes (no flag needed in the JVM); DESCRIPTION is the thread's name.

C (-l c, or -l none as in BCC; detected for a process that is not Java,
Python or Ruby): a uprobe on pthread_create (libc.so.6 from glibc 2.34,
else libpthread) keeps the start routine, the new thread's clone
(tracepoint task:task_newtask) prints the start line with the new TID, and
its exit (sched:sched_process_exit) the stop line. DESCRIPTION is the
start routine, symbolized as "function [file]", and at stop the thread's
name in parentheses: a new thread has its creator's name until it sets its
own (pthread_setname_np), so the start line has none. Threads started
before tracing stop without a routine, as do threads whose routine was
evicted from its table (more than 16384 threads alive at once; counted as
pending_partial in the lost line); the main thread's exit is the
process's and is not printed. Threads made without pthread_create (a bare
clone, Go's runtime) are not seen.`,
	Task:      true,
	RingBytes: 1 << 18,
	Load:      loadUthreads,
	Caps:      tool.ReadsPID[Config], // the -p process: its executable, maps, root
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: func(cfg Config, cs *ebpf.CollectionSpec) error {
		if cfg.Lang == langs.C {
			if cfg.Pthread == nil {
				return ErrNoProcess
			}
			if err := usdt.Configure(cs, nil, nil); err != nil {
				return err
			}
			return probe.PrepareUprobes(cs, uthreadsProgUthreadsPthread)
		}
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
	// Start routines of the threads alive: an evicted one is a stop
	// without its routine.
	Pending:        uthreadsMapRoutines,
	PendingPartial: true,
	Decoder: func(cfg Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		var routine func(uint64) *syms.Frame
		if cfg.Lang == langs.C {
			routine = routines(cfg.pid)
		}
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
			if routine != nil {
				e.RuntimeID = 0
				if r.Ids[0] != 0 {
					e.Routine = routine(r.Ids[0])
				}
			}
			return true
		}, nil
	},
}

// Tool is uthreads' registry entry.
var Tool = tool.Register(&spec, command)

// Open loads uthreads and attaches it to the probes of cfg, in opts' -p
// process.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	if len(cfg.Probes) == 0 && cfg.Pthread == nil {
		return nil, ErrNoProcess
	}
	cfg.pid = opts.Task.PID
	return tool.Open(&spec, cfg, opts)
}

// routines symbolizes start routines in process pid, reading its mappings
// again when an address is in none of them (a library loaded since).
func routines(pid int) func(uint64) *syms.Frame {
	cache := syms.NewCacheSize(8)
	var r *syms.Resolver
	return func(addr uint64) *syms.Frame {
		if r == nil {
			var err error
			if r, err = syms.NewResolver(pid, cache); err != nil {
				return &syms.Frame{Addr: addr, Symbol: syms.Unknown}
			}
		}
		f := r.Resolve(addr)
		if f.Module == "" {
			r.Refresh()
			f = r.Resolve(addr)
		}
		return &f
	}
}
