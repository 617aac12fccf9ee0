// Package capable traces security capability checks (the book's capable),
// with the verdict, the kernel and user stacks and the syscall in progress.
package capable

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/sysnames"
	"github.com/owlbpf/owl/internal/tool"
)

// Event is one capability check.
type Event struct {
	event.Task
	Cap     int32  `json:"cap"`
	CapName string `json:"cap_name"`
	// Audit and InSetID come from cap_capable's opts, which only the kprobe
	// and fexit hooks see; with the tracepoint they are nil (null in JSON).
	Audit   *bool        `json:"audit"`
	InSetID *bool        `json:"insetid"`
	Verdict string       `json:"verdict"` // allow or deny
	Syscall event.Name   `json:"syscall"` // with -S; null when unknown
	KStack  []syms.Frame `json:"kstack,omitempty"`
	UStack  []syms.Frame `json:"ustack,omitempty"`
}

// Config selects what is gathered; the task filters are in tool.Options.
// The zero value traces every audited check.
type Config struct {
	Verbose bool // include checks that do not audit (fexit and kprobe hooks)
	KStack  bool // -K
	UStack  bool // -U
	Syscall bool // -S
	// Unique emits each kind of check once (--unique): each capability
	// and pair of stacks, or with UniqueByPID each pid and capability.
	// At most UniqueMax kinds are remembered; once that many were seen,
	// further new kinds are emitted without being remembered, so their
	// repeats are emitted too.
	Unique      bool
	UniqueByPID bool // with Unique: one per pid and capability (the command sets it with -p)
}

// UniqueMax bounds the kinds of checks --unique remembers.
const UniqueMax = 65536

// maxProcesses bounds the processes whose mappings -U keeps for
// symbolizing user stacks.
const maxProcesses = 1024

// capCapableLayout is struct cap_capable_args of capable.bpf.c.
var capCapableLayout = map[string]int{"cred": 8, "target_ns": 16, "capable_ns": 24, "cap": 32, "ret": 36}

func hooks(cfg Config) []probe.Hook {
	tp := probe.Hook{
		Kind:        probe.Tracepoint,
		Name:        "tracepoint capability:cap_capable",
		Attachments: []probe.Attachment{probe.TracepointAt(capableProgTpCapCapable, "capability", "cap_capable")},
		Check:       probe.CheckLayout("capability", "cap_capable", capCapableLayout),
	}
	fexit := probe.Hook{
		Kind:        probe.Fentry,
		Name:        "fexit cap_capable",
		Attachments: []probe.Attachment{probe.TracingAt(capableProgFexitCapCapable, "cap_capable")},
	}
	kp := probe.Hook{
		Kind: probe.Kprobe,
		Name: "kprobe cap_capable",
		Attachments: []probe.Attachment{
			probe.KprobeAt(capableProgKpCapCapable, "cap_capable"),
			probe.KretprobeAt(capableProgKrpCapCapable, "cap_capable"),
		},
	}
	if cfg.Syscall {
		sys := probe.TracepointAt(capableProgTpSysEnter, "raw_syscalls", "sys_enter")
		for _, h := range []*probe.Hook{&tp, &fexit, &kp} {
			h.Attachments = append(h.Attachments, sys)
		}
	}
	return []probe.Hook{tp, fexit, kp}
}

var spec = tool.Spec[Config, Event]{
	Name:    "capable",
	Summary: "Trace security capability checks",
	Long: `Trace security capability checks (cap_capable): which process asked for
which capability, and whether it was granted (VERDICT allow/deny).

The tracepoint does not give cap_capable's opts, so with it AUDIT and
INSETID print - (null in JSON) and every check is shown, as if -v were
given: owl does not invent values. With the fexit and kprobe hooks, checks
that do not audit are hidden unless -v.

-K and -U print the kernel and user stacks under each event; user frames are
symbolized from the ELF symbols of the mapping they fall in, the Go pclntab,
or /tmp/perf-PID.map (JIT), else [unknown] with the module. User stacks need
frame pointers in the traced code. A stack that could not be taken is left
out and counted. --unique remembers up to 65536 kinds of checks; past that,
repeats may print.`,
	Task:      true,
	RingBytes: 4 << 20,
	Load:      loadCapable,
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: func(cfg Config, spec *ebpf.CollectionSpec) error {
		var v capableVariableSpecs
		if err := spec.Assign(&v); err != nil {
			return err
		}
		return errors.Join(v.Verbose.Set(cfg.Verbose), v.WantKstack.Set(cfg.KStack),
			v.WantUstack.Set(cfg.UStack), v.WantSyscall.Set(cfg.Syscall))
	},
	Decoder: func(cfg Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		d, err := newDecoder(cfg, s)
		if err != nil {
			return nil, err
		}
		return d.decode, nil
	},
}

// Tool is capable's registry entry.
var Tool = tool.Register(&spec, command)

// Open loads and attaches capable through the first hook that works.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	return tool.Open(&spec, cfg, opts)
}

var yes, no = true, false

// decoder turns records into events, drops repeats with --unique and
// symbolizes stacks while the process is still there to read
// /proc/PID/maps from. It runs on the ring's one reader.
type decoder struct {
	s        *probe.Session
	cfg      Config
	arch     string
	stacks   *ebpf.Map
	kallsyms *syms.Kallsyms
	procs    *syms.Processes
	ips      [127]uint64
	seen     map[uniqueKey]struct{}
	seenMax  int
}

// uniqueKey is a kind of check for --unique: pid and capability, or
// capability and stacks (the kernel gives the same id to the same stack).
type uniqueKey struct {
	pid            uint32
	cap            int32
	kstack, ustack int32
}

func newDecoder(cfg Config, s *probe.Session) (*decoder, error) {
	d := &decoder{s: s, cfg: cfg, arch: sysnames.Native(), seenMax: UniqueMax}
	if cfg.Unique {
		d.seen = map[uniqueKey]struct{}{}
	}
	if cfg.KStack || cfg.UStack {
		var m capableMaps
		if err := s.Assign(&m); err != nil {
			return nil, err
		}
		d.stacks = m.Stacks
	}
	if cfg.KStack {
		var err error
		if d.kallsyms, err = syms.LoadKallsyms(); err != nil {
			return nil, fmt.Errorf("kernel stacks: %w", err)
		}
	}
	if cfg.UStack {
		d.procs = syms.NewProcesses(syms.NewCache(), maxProcesses)
	}
	return d, nil
}

func (d *decoder) decode(raw []byte, e *Event) bool {
	r, ok := probe.View[capableEvent](raw)
	if !ok {
		return false
	}
	if d.seen != nil && !d.first(r) {
		return false
	}
	*e = Event{
		Task:    d.s.Task(raw),
		Cap:     r.Cap,
		CapName: sysnames.Capability(int(r.Cap)),
		Audit:   flag(r.Audit),
		InSetID: flag(r.Insetid),
		Verdict: "allow",
	}
	if r.Ret != 0 {
		e.Verdict = "deny"
	}
	if r.Syscall >= 0 {
		e.Syscall = event.Name(sysnames.Syscall(d.arch, int(r.Syscall)))
	}
	// Fresh slices each time: a consumer that copies the event keeps its
	// stacks (symbolizing allocates anyway).
	if d.kallsyms != nil {
		for _, ip := range d.stack(r.Kstack) {
			e.KStack = append(e.KStack, d.kallsyms.Resolve(ip))
		}
	}
	if d.procs != nil {
		for _, ip := range d.stack(r.Ustack) {
			e.UStack = append(e.UStack, d.procs.Resolve(r.Task.Pid, ip))
		}
	}
	return true
}

// first reports whether r is the first check of its kind, and remembers
// it while fewer than seenMax kinds are remembered.
func (d *decoder) first(r *capableEvent) bool {
	k := uniqueKey{cap: r.Cap, kstack: r.Kstack, ustack: r.Ustack}
	if d.cfg.UniqueByPID {
		k = uniqueKey{pid: r.Task.Pid, cap: r.Cap}
	}
	if _, ok := d.seen[k]; ok {
		return false
	}
	if len(d.seen) < d.seenMax {
		d.seen[k] = struct{}{}
	}
	return true
}

func flag(v uint8) *bool {
	switch v {
	case 0:
		return &no
	case 1:
		return &yes
	}
	return nil
}

// stack returns the addresses of stack id, innermost first; a failed stack
// id (negative: the stack could not be taken, counted in the kernel) or
// one no longer in the map gives none.
func (d *decoder) stack(id int32) []uint64 {
	if id < 0 || d.stacks == nil {
		return nil
	}
	if err := d.stacks.Lookup(uint32(id), &d.ips); err != nil {
		return nil
	}
	n := 0
	for n < len(d.ips) && d.ips[n] != 0 {
		n++
	}
	return d.ips[:n]
}
