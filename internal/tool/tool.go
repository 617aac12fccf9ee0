// Package tool turns a tool's declarative Spec into a typed source of
// events. The command line, `owl tools`, tests and (later) the agent all
// start tools through it, the same way, without cobra.
package tool

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/caps"
	"github.com/owlbpf/owl/internal/probe"
)

// Spec declares a tool: what it is, its hooks for a config, how to set up
// its BPF objects and how to decode a record into its event E. C is the
// tool's own config; what every tool shares is in Options.
type Spec[C, E any] struct {
	Name    string
	Summary string
	Long    string // prose for --help; hooks and JSON fields are appended from this Spec
	// Group is what the tool is for, the heading `owl --help` lists it
	// under: "security", "language" or "fleet".
	Group string
	// Task: events start with the task header (struct owl_task), and the
	// task filters (-p, -u, --cgroup, --mntns) apply.
	Task bool
	// Net: the family and port filters of bpf/sock.h apply (-4, -6, -P).
	Net bool
	// RingBytes is the default ring size; Options.RingBytes overrides it.
	RingBytes uint32
	Load      func() (*ebpf.CollectionSpec, error) // bpf2go's loadX
	Default   func() C
	Hooks     func(C) []probe.Hook
	// Configure sets the tool's own variables on a copy of the spec before
	// each load (typed, through bpf2go's VariableSpecs and Assign).
	Configure func(C, *ebpf.CollectionSpec) error
	// Stream reports whether cfg needs the ring buffer; count-only modes
	// read maps only. Nil: always.
	Stream func(C) bool
	// Pending names the tool's table of events waiting for their end
	// (bpf2go's constant): an LRU table's evictions Stats counts, and
	// Options.PendingEntries sizes it.
	Pending string
	// PendingPartial: an eviction from Pending loses a part of an event,
	// not the event, which is delivered without what the entry held;
	// Stats counts it as pending_partial, not as a lost event.
	PendingPartial bool
	// Decoder returns the function that fills an event from one record
	// and reports whether it is one to emit. It must not keep raw.
	Decoder func(C, *probe.Session) (func(raw []byte, e *E) bool, error)
	// Held, when set, takes out of the kernel's tables the events still
	// waiting for their end when a run ends (connects waiting on a SYN)
	// and hands each to record as a ring record (record may keep raw):
	// they are delivered after the ring is drained, not dropped.
	Held func(C, *probe.Session, func(raw []byte)) error
	// Outputs documents typed outputs other than E (counts, summaries):
	// the flag that selects each and a zero value of its type.
	Outputs []Output
	// Caps are the capabilities a run with cfg and opts needs besides
	// caps.Base (CAP_BPF, CAP_PERFMON): caps.SysPtrace where it reads
	// other processes' maps, files or memory (user stacks, probe
	// targets; with -p only that process, and then only when it is not
	// readable without), caps.Syslog where it names kernel stack frames
	// (only when /proc/kallsyms hides addresses). Open refuses, naming
	// the missing capability, before loading anything. Nil: none.
	Caps func(C, Options) caps.Set
}

// Output is a typed output of a tool besides its events.
type Output struct {
	Flag  string // "-c"
	Value any    // a zero value of the row type
}

// Options are what every tool takes besides its own config.
type Options struct {
	Task probe.TaskFilter
	Net  probe.NetFilter
	// Hook restricts the hook chain to these kinds (--hook); the tool
	// fails when it has none.
	Hook string
	// Prefer forces these kinds in tools that have them (OWL_HOOKS).
	Prefer string
	// Runtime is shared by the tools of a process; nil makes a new one.
	Runtime *probe.Runtime
	// RingBytes overrides the tool's ring size (a power of two).
	RingBytes uint32
	// PendingEntries, when not 0, overrides the size of the tool's Pending
	// table (tests overfill it); a tool without one refuses it.
	PendingEntries uint32
	// NoReader attaches without reading anything, for `owl tools`.
	NoReader bool
	// Latency bounds how long an event waits in the ring (probe.Options);
	// 0 is probe.DefaultLatency.
	Latency time.Duration
}

// DefaultOptions trace every task and endpoint.
func DefaultOptions() Options { return Options{Task: probe.AllTasks()} }

// Source is a running tool: its session and decoder.
type Source[E any] struct {
	*probe.Session
	decode func([]byte, *E) bool
	held   func(record func(raw []byte)) error
	events atomic.Uint64
	queued atomic.Uint64
	// Drained, when set, runs whenever the ring has been drained: flush
	// buffered output there.
	Drained func()
}

// Open loads and attaches the tool described by sp with cfg.
func Open[C, E any](sp *Spec[C, E], cfg C, opts Options) (*Source[E], error) {
	// Its line says what is missing; the tool's name would add nothing.
	if err := caps.Require(sp.caps(cfg, opts), opts.Task.PID); err != nil {
		return nil, err
	}
	spec, err := sp.Load()
	if err != nil {
		return nil, fmt.Errorf("load %s spec: %w", sp.Name, err)
	}
	ring := sp.RingBytes
	if opts.RingBytes != 0 {
		ring = opts.RingBytes
	}
	popts := probe.Options{
		Tool:           sp.Name,
		Only:           opts.Hook,
		Prefer:         opts.Prefer,
		Runtime:        opts.Runtime,
		RingBytes:      ring,
		NoReader:       opts.NoReader || (sp.Stream != nil && !sp.Stream(cfg)),
		Pending:        sp.Pending,
		PendingPartial: sp.PendingPartial,
		Latency:        opts.Latency,
		PendingEntries: opts.PendingEntries,
	}
	if popts.NoReader {
		popts.RingBytes = 0 // one page: nothing reads it
	}
	switch {
	case sp.Task:
		popts.Task = &opts.Task
	case opts.Task != probe.AllTasks() && opts.Task != (probe.TaskFilter{}):
		return nil, fmt.Errorf("%s: events have no task to filter on", sp.Name)
	}
	switch {
	case sp.Net:
		popts.Net = &opts.Net
	case opts.Net.Family != 0 || len(opts.Net.Ports) > 0:
		return nil, fmt.Errorf("%s: no address family or port filter", sp.Name)
	}
	if sp.Configure != nil {
		popts.Configure = func(cs *ebpf.CollectionSpec) error { return sp.Configure(cfg, cs) }
	}
	s, err := probe.Open(spec, sp.Hooks(cfg), popts)
	if err != nil {
		return nil, err
	}
	src := &Source[E]{Session: s}
	if src.decode, err = sp.Decoder(cfg, s); err != nil {
		s.Close()
		return nil, err
	}
	if sp.Held != nil {
		src.held = func(record func([]byte)) error { return sp.Held(cfg, s, record) }
	}
	return src, nil
}

// Run hands each event to emit until ctx is done, then the events still in
// the ring. The event passed to emit is reused: copy it to keep it
// (decoders give events fresh slices, so a copy of the struct is enough).
// A source without a ring (count-only) just waits for ctx.
func (s *Source[E]) Run(ctx context.Context, emit func(*E)) error {
	var e E
	deliver := func(raw []byte) {
		if s.decode(raw, &e) {
			s.events.Add(1)
			emit(&e)
		}
	}
	err := s.Read(ctx, deliver, s.Drained)
	if s.held == nil || ctx.Err() == nil {
		return err
	}
	var held [][]byte
	heldErr := s.held(func(raw []byte) { held = append(held, raw) })
	// Events that ended while the tables were read went to the ring, not
	// to record: drain it once more, then deliver the held ones.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	drainErr := s.Read(done, deliver, nil)
	for _, raw := range held {
		deliver(raw)
	}
	if s.Drained != nil && len(held) > 0 {
		s.Drained()
	}
	return errors.Join(err, heldErr, drainErr)
}

// AddQueueFull counts events the consumer could not queue (output full).
func (s *Source[E]) AddQueueFull(n uint64) { s.queued.Add(n) }

// Stats counts delivered events and losses by cause; safe at any time.
func (s *Source[E]) Stats() (probe.Stats, error) {
	st, err := s.Session.Stats()
	st.Events = s.events.Load()
	st.QueueFull = s.queued.Load()
	return st, err
}

// ErrNeedsArgs is wrapped by the error of a tool that cannot start without
// arguments (a function pattern): `owl tools` says so instead of calling
// the tool unavailable.
var ErrNeedsArgs = errors.New("needs arguments")

// Tool is one entry of the registry: a Spec with its command, its types
// erased so that tools of different event types sit in one list.
type Tool interface {
	Info() Info
	// Command builds the tool's cobra command.
	Command() *cobra.Command
	// Start opens the tool with its default config.
	Start(opts Options) (Stream, error)
}

// Stream is a started tool whose events are handed over as `any` (a
// pointer to the tool's Event type, reused between calls).
type Stream interface {
	Run(ctx context.Context, emit func(any)) error
	Stats() (probe.Stats, error)
	Close() error
	Hook() probe.Hook
	Tried() []probe.Failure
}

// Register makes the registry entry of sp; command builds its cobra command.
func Register[C, E any](sp *Spec[C, E], command func() *cobra.Command) Tool {
	return &entry[C, E]{sp: sp, command: command}
}

type entry[C, E any] struct {
	sp      *Spec[C, E]
	command func() *cobra.Command
}

func (t *entry[C, E]) Info() Info              { return t.sp.Info() }
func (t *entry[C, E]) Command() *cobra.Command { return t.command() }

func (t *entry[C, E]) Start(opts Options) (Stream, error) {
	src, err := Open(t.sp, t.sp.Default(), opts)
	if err != nil {
		return nil, err
	}
	return erased[E]{src}, nil
}

type erased[E any] struct{ src *Source[E] }

func (e erased[E]) Run(ctx context.Context, emit func(any)) error {
	return e.src.Run(ctx, func(ev *E) { emit(ev) })
}
func (e erased[E]) Stats() (probe.Stats, error) { return e.src.Stats() }
func (e erased[E]) Close() error                { return e.src.Close() }
func (e erased[E]) Hook() probe.Hook            { return e.src.Session.Hook }
func (e erased[E]) Tried() []probe.Failure      { return e.src.Session.Tried }

// ReadsPID is a Spec.Caps for tools that read the process given with -p
// (its maps, executable or root) and no other: CAP_SYS_PTRACE with -p,
// asked for only when that process is not readable without it.
func ReadsPID[C any](_ C, o Options) caps.Set { return caps.If(o.Task.PID != 0, caps.SysPtrace) }

// caps is what a run needs besides caps.Base.
func (sp *Spec[C, E]) caps(cfg C, opts Options) caps.Set {
	if sp.Caps == nil {
		return 0
	}
	return sp.Caps(cfg, opts)
}

// Info is what documentation and listings say of a tool, all derived from
// its Spec so that README, --help and `owl tools` cannot drift apart.
type Info struct {
	Name    string
	Summary string
	Group   string // "security", "language" or "fleet"
	Task    bool
	Net     bool
	Pending bool     // a table of events waiting for their end (--pending-entries)
	Hooks   []string // hook names with the default config, in order of preference
	Fields  []string // JSON fields of an event
	Outputs []OutputInfo
	// Caps is what the tool needs besides caps.Base with its default
	// config; CapsPID with -p of a process it may not read otherwise.
	Caps, CapsPID caps.Set
	// Event is the event type E (for tests that encode every tool's events).
	Event reflect.Type
}

// OutputInfo documents one other typed output.
type OutputInfo struct {
	Flag   string
	Fields []string
	Type   reflect.Type
}

// Info describes the tool.
func (sp *Spec[C, E]) Info() Info {
	i := Info{Name: sp.Name, Summary: sp.Summary, Group: sp.Group, Task: sp.Task, Net: sp.Net, Pending: sp.Pending != ""}
	for _, h := range sp.Hooks(sp.Default()) {
		i.Hooks = append(i.Hooks, h.Name)
	}
	def := DefaultOptions()
	i.Caps = sp.caps(sp.Default(), def)
	def.Task.PID = 1
	i.CapsPID = sp.caps(sp.Default(), def)
	i.Event = reflect.TypeFor[E]()
	i.Fields = JSONFields(i.Event)
	for _, o := range sp.Outputs {
		t := reflect.TypeOf(o.Value)
		i.Outputs = append(i.Outputs, OutputInfo{Flag: o.Flag, Fields: JSONFields(t), Type: t})
	}
	return i
}

// CapsLine is the capabilities the tool needs with its default config,
// as README's table says them.
func (i Info) CapsLine() string { return (caps.Base | i.Caps).String() }

// HooksLine is the hooks in order of preference, as README and --help say.
func (i Info) HooksLine() string { return strings.Join(i.Hooks, " → ") }

// FieldsLine lists the JSON fields of events and other outputs.
func (i Info) FieldsLine() string {
	s := "JSON fields: " + strings.Join(i.Fields, ", ") + "."
	for _, o := range i.Outputs {
		s += " With " + o.Flag + ": " + strings.Join(o.Fields, ", ") + "."
	}
	return s
}

// Help is the --help text: the tool's prose, then its hooks and fields.
func (sp *Spec[C, E]) Help() string {
	i := sp.Info()
	return strings.TrimSpace(sp.Long) + "\n\nHooks, in order of preference: " + i.HooksLine() + ".\n\n" + i.FieldsLine()
}

// JSONFields lists the JSON keys of a struct type in order, with the
// fields of embedded structs in place, as encoding/json writes them.
func JSONFields(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct {
			names = append(names, JSONFields(f.Type)...)
			continue
		}
		if !f.IsExported() || tag == "-" {
			continue
		}
		if tag == "" {
			tag = f.Name
		}
		names = append(names, tag)
	}
	return names
}
