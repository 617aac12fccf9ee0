// Package capable traces security capability checks (the book's capable),
// with the verdict, the kernel and user stacks and the syscall in progress.
package capable

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/sysnames"
)

// Event is one capability check.
type Event struct {
	Time    time.Time  `json:"time"`
	UID     uint32     `json:"uid"`
	PID     uint32     `json:"pid"`
	TID     uint32     `json:"tid"`
	Comm    event.Comm `json:"comm"`
	Cap     int32      `json:"cap"`
	CapName string     `json:"cap_name"`
	// Audit and InSetID come from cap_capable's opts, which only the kprobe
	// hook sees; with the tracepoint they are nil (null in JSON).
	Audit   *bool        `json:"audit"`
	InSetID *bool        `json:"insetid"`
	Verdict string       `json:"verdict"` // allow or deny
	Syscall event.Name   `json:"syscall"` // with -S; null when unknown
	KStack  []syms.Frame `json:"kstack,omitempty"`
	UStack  []syms.Frame `json:"ustack,omitempty"`
	kstack  int32
	ustack  int32
}

// Config selects what is traced and gathered.
type Config struct {
	PID     int    // 0 = all
	UID     int    // -1 = all
	Verbose bool   // include checks that do not audit (kprobe hook only)
	KStack  bool   // -K
	UStack  bool   // -U
	Syscall bool   // -S
	Hook    string // restrict the hook chain to these kinds
}

// DefaultConfig traces every audited check.
func DefaultConfig() Config { return Config{UID: -1} }

// capCapableLayout is struct cap_capable_args of capable.bpf.c.
var capCapableLayout = map[string]int{"cred": 8, "target_ns": 16, "capable_ns": 24, "cap": 32, "ret": 36}

func hooks(cfg Config) []probe.Hook {
	tp := probe.Hook{
		Kind:        probe.Tracepoint,
		Name:        "tracepoint capability:cap_capable",
		Attachments: []probe.Attachment{probe.TracepointAt("tp_cap_capable", "capability", "cap_capable")},
		Check:       probe.CheckLayout("capability", "cap_capable", capCapableLayout),
	}
	kp := probe.Hook{
		Kind: probe.Kprobe,
		Name: "kprobe cap_capable",
		Attachments: []probe.Attachment{
			probe.KprobeAt("kp_cap_capable", "cap_capable"),
			probe.KretprobeAt("krp_cap_capable", "cap_capable"),
		},
	}
	fexit := probe.Hook{
		Kind:        probe.Fentry,
		Name:        "fexit cap_capable",
		Attachments: []probe.Attachment{probe.TracingAt("fexit_cap_capable", "cap_capable")},
	}
	if cfg.Syscall {
		sys := probe.TracepointAt("tp_sys_enter", "raw_syscalls", "sys_enter")
		for _, h := range []*probe.Hook{&tp, &fexit, &kp} {
			h.Attachments = append(h.Attachments, sys)
		}
	}
	return []probe.Hook{tp, fexit, kp}
}

func configure(cfg Config) func(*ebpf.CollectionSpec) error {
	return func(spec *ebpf.CollectionSpec) error {
		if err := probe.SetTgid(spec, cfg.PID); err != nil {
			return err
		}
		set := map[string]any{
			"verbose":      cfg.Verbose,
			"want_kstack":  cfg.KStack,
			"want_ustack":  cfg.UStack,
			"want_syscall": cfg.Syscall,
		}
		if cfg.UID >= 0 {
			set["targ_uid"] = uint32(cfg.UID)
		}
		for name, v := range set {
			if err := spec.Variables[name].Set(v); err != nil {
				return fmt.Errorf("set %s: %w", name, err)
			}
		}
		return nil
	}
}

// New loads and attaches capable through the first hook that works.
func New(cfg Config) (*probe.Tracer[Event], error) {
	spec, err := loadCapable()
	if err != nil {
		return nil, fmt.Errorf("load capable spec: %w", err)
	}
	s, err := probe.Open(spec, hooks(cfg), probe.Options{Tool: "capable", Only: cfg.Hook, Configure: configure(cfg)})
	if err != nil {
		return nil, err
	}
	d := &decoder{s: s, arch: sysnames.Native(), stacks: s.Coll.Maps["stacks"]}
	if cfg.KStack {
		if d.kallsyms, err = syms.LoadKallsyms(); err != nil {
			s.Close()
			return nil, fmt.Errorf("kernel stacks: %w", err)
		}
	}
	if cfg.UStack {
		d.users = syms.NewCache()
		d.resolvers = map[uint32]*syms.Resolver{}
	}
	return &probe.Tracer[Event]{Session: s, Decode: d.decode}, nil
}

// Probe attaches with defaults and no reader, for `owl tools`.
func Probe(only string) (*probe.Session, error) {
	spec, err := loadCapable()
	if err != nil {
		return nil, err
	}
	return probe.Open(spec, hooks(DefaultConfig()), probe.Options{Tool: "capable", Only: only, NoReader: true})
}

var yes, no = true, false

// decoder turns records into events and symbolizes their stacks while the
// process is still there to read /proc/PID/maps from.
type decoder struct {
	s         *probe.Session
	arch      string
	stacks    *ebpf.Map
	kallsyms  *syms.Kallsyms
	users     *syms.Cache
	resolvers map[uint32]*syms.Resolver
	ips       [127]uint64
}

func (d *decoder) decode(raw []byte, e *Event) bool {
	r, ok := probe.View[capableEvent](raw)
	if !ok {
		return false
	}
	*e = Event{
		Time:    d.s.Time(r.TsNs),
		UID:     r.Uid,
		PID:     r.Pid,
		TID:     r.Tid,
		Comm:    r.Comm,
		Cap:     r.Cap,
		CapName: sysnames.Capability(int(r.Cap)),
		Audit:   flag(r.Audit),
		InSetID: flag(r.Insetid),
		Verdict: "allow",
		kstack:  r.Kstack,
		ustack:  r.Ustack,
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
		e.KStack = d.stack(nil, r.Kstack, d.kallsyms.Resolve)
	}
	if d.users != nil {
		e.UStack = d.stack(nil, r.Ustack, d.resolver(r.Pid))
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

// stack reads stack id from the map and resolves its frames; a failed
// stack id (negative: the stack could not be taken) gives no frames.
func (d *decoder) stack(frames []syms.Frame, id int32, resolve func(uint64) syms.Frame) []syms.Frame {
	if id < 0 {
		return frames
	}
	if err := d.stacks.Lookup(uint32(id), &d.ips); err != nil {
		return frames
	}
	for _, ip := range d.ips {
		if ip == 0 {
			break
		}
		frames = append(frames, resolve(ip))
	}
	return frames
}

// resolver returns the symbolizer of pid, made on first use; a process
// that is gone gives "[unknown]" frames.
func (d *decoder) resolver(pid uint32) func(uint64) syms.Frame {
	r, ok := d.resolvers[pid]
	if !ok {
		r, _ = syms.NewResolver(int(pid), d.users)
		d.resolvers[pid] = r
	}
	if r == nil {
		return func(addr uint64) syms.Frame { return syms.Frame{Addr: addr, Symbol: syms.Unknown} }
	}
	return func(addr uint64) syms.Frame {
		f := r.Resolve(addr)
		// An address in no mapping: the pid exec'd or mapped more since
		// its mappings were read.
		if f.Symbol == syms.Unknown && f.Module == "" && r.Refresh() == nil {
			f = r.Resolve(addr)
		}
		return f
	}
}
