// Package capable traces security capability checks (the book's capable),
// with the verdict, the kernel and user stacks and the syscall in progress.
package capable

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/caps"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/pyframes"
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
	IA32    bool         `json:"ia32"`
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
	// Unique emits each kind of check once (--unique): each capability,
	// verdict and pair of stacks, or with UniqueByPID each pid, capability
	// and verdict.
	// At most UniqueMax kinds are remembered; once that many were seen,
	// further new kinds are emitted without being remembered, so their
	// repeats are emitted too.
	Unique      bool
	UniqueByPID bool // with Unique: one per pid, capability and verdict (the command sets it with -p)
}

// UniqueMax bounds the kinds of checks --unique remembers.
const UniqueMax = 65536

// maxProcesses bounds the processes whose mappings -U keeps for
// symbolizing user stacks.
const maxProcesses = 1024

// capCapableLayout is struct cap_capable_args of capable.bpf.c.
var capCapableLayout = map[string]int{"cred": 8, "target_ns": 16, "capable_ns": 24, "cap": 32, "ret": 36}

// execLayout is struct exec_args of capable.bpf.c.
var execLayout = map[string]int{"filename": 8}

// Record kinds (enum kind of capable.bpf.c).
const (
	kindCheck = 0
	kindExec  = 1
)

// maxUStacks is how many distinct user stacks -U keeps (the ustacks map),
// as many as BCC's capable: 127 frames of 32 bytes each, 8 MB preallocated
// (4096 took ~30 ms more to start).
const maxUStacks = 2048

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
	var extra []probe.Attachment
	if cfg.Syscall {
		extra = append(extra, probe.TracepointAt(capableProgTpSysEnter, "raw_syscalls", "sys_enter"))
	}
	if cfg.UStack {
		// Execs, so that the user stacks of a process that exits right
		// after its check are named from the file it ran.
		extra = append(extra, probe.TracepointAt(capableProgTpExec, "sched", "sched_process_exec"))
	}
	for _, h := range []*probe.Hook{&tp, &fexit, &kp} {
		h.Attachments = append(h.Attachments, extra...)
		if cfg.UStack {
			h.Check = both(h.Check, probe.CheckLayout("sched", "sched_process_exec", execLayout))
		}
	}
	return []probe.Hook{tp, fexit, kp}
}

// both returns a check that passes when a (if any) and b do.
func both(a, b func() error) func() error {
	if a == nil {
		return b
	}
	return func() error {
		if err := a(); err != nil {
			return err
		}
		return b()
	}
}

var spec = tool.Spec[Config, Event]{
	Name:    "capable",
	Group:   "security",
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
frame pointers in the traced code. The kernel records user frames in files
with a GNU build-id as build-id and file offset, so the stack of a process
that exited right after its check is still named from its files (learned
at its exec, from its mappings, or with -p when owl starts); a file owl
never saw prints as [unknown] (build-id ID+0xOFFSET). Frames without a
build-id (JIT code, Go binaries linked without one) need the process to
still be there. A stack that could not be taken is left out and counted;
-U keeps up to 2048 distinct user stacks, -K 10240 kernel stacks.
Python processes show their Python frames (function, file:line; "lang":
"python" in JSON) in place of the interpreter's native frames, named from
the process's memory when the event is read.

With -S, a 32-bit syscall (a 32-bit program, or int $0x80 from a 64-bit
one) is named from the i386 table and shown as ia32:NAME (ia32 true in
JSON). --unique prints each kind of check once, a deny apart from an allow;
it remembers up to 65536 kinds; past that, repeats may print.`,
	Task: true,
	// Checks come in bursts of tens (a python start makes ~46); the reader
	// is woken at 64 KiB, and RSS counts the ring twice.
	RingBytes: 512 << 10,
	Load:      loadCapable,
	Caps: func(c Config, _ tool.Options) caps.Set {
		return caps.If(c.KStack, caps.Syslog) | caps.If(c.UStack, caps.SysPtrace)
	},
	Default: func() Config { return Config{} },
	Hooks:   hooks,
	Configure: func(cfg Config, spec *ebpf.CollectionSpec) error {
		var v capableVariableSpecs
		if err := spec.Assign(&v); err != nil {
			return err
		}
		// Stack maps (10 and 8 MB) and the LRU of -S (16k entries) are
		// preallocated, a cost at every start: one entry each when
		// not asked for.
		var m capableMapSpecs
		if err := spec.Assign(&m); err != nil {
			return err
		}
		m.Ustacks.MaxEntries = maxUStacks
		if !cfg.KStack {
			m.Kstacks.MaxEntries = 1
		}
		if !cfg.UStack {
			m.Ustacks.MaxEntries = 1
		}
		if !cfg.Syscall {
			m.InSyscall.MaxEntries = 1
		}
		return errors.Join(v.Verbose.Set(cfg.Verbose), v.WantKstack.Set(cfg.KStack),
			v.WantUstack.Set(cfg.UStack), v.WantSyscall.Set(cfg.Syscall), pyframes.Configure(spec, cfg.UStack))
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
// symbolizes stacks. It runs on the ring's one reader.
type decoder struct {
	s        *probe.Session
	cfg      Config
	arch     string
	kstacks  *ebpf.Map
	ustacks  *ebpf.Map
	kallsyms *syms.Kallsyms // nil until a first kernel stack (kernelNames)
	procs    *syms.Processes
	py       *pyframes.Walker
	ips      [127]uint64
	frames   [127]syms.BuildIDFrame
	seen     map[uniqueKey]struct{}
	seenMax  int
	// lazyKallsyms: -K; kallsymsRead: kallsyms was read (or failed to be).
	lazyKallsyms, kallsymsRead bool
}

// uniqueKey is a kind of check for --unique: pid, capability and verdict,
// or capability, verdict and stacks (the kernel gives the same id to the
// same stack). The verdict is part of it: a deny after an allow of the same
// capability is what a security tool must not hide.
type uniqueKey struct {
	pid            uint32
	cap            int32
	denied         bool
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
		d.kstacks, d.ustacks = m.Kstacks, m.Ustacks
	}
	if cfg.KStack {
		// Only checked here; read when a first kernel stack needs names
		// (kernelNames): parsing 120k-200k symbols took ~60 ms and ~25 MB
		// at every start of `capable -K`.
		if err := checkKallsyms(); err != nil {
			return nil, fmt.Errorf("kernel stacks: %w", err)
		}
		d.lazyKallsyms = true
	}
	if cfg.UStack {
		d.procs = syms.NewProcesses(syms.NewCache(), maxProcesses)
		// A process traced by pid (-p) is there now: learn its files, so
		// that its stacks are named even if it exits right after a check.
		var v capableVariables
		var pid uint32
		if err := s.Assign(&v); err != nil {
			return nil, err
		}
		if err := v.OwlTargTgid.Get(&pid); err != nil {
			return nil, fmt.Errorf("read the pid filter: %w", err)
		}
		if pid != 0 {
			d.procs.Learn(pid)
		}
		var err error
		if d.py, err = pyframes.New(s.Assign); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *decoder) decode(raw []byte, e *Event) bool {
	r, ok := probe.View[capableEvent](raw)
	if !ok {
		return false
	}
	if r.Kind == kindExec {
		if x, ok := probe.View[capableExecEvent](raw); ok && d.procs != nil {
			d.procs.Exec(x.Task.Pid, unix.ByteSliceToString(x.Filename[:]))
		}
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
	e.IA32 = r.Ia32 != 0
	if r.Syscall >= 0 {
		arch := d.arch
		if r.SyscallIa32 != 0 {
			arch = "386"
		}
		e.Syscall = event.Name(sysnames.Syscall(arch, int(r.Syscall)))
	}
	// Fresh slices each time: a consumer that copies the event keeps its
	// stacks (symbolizing allocates anyway).
	if d.lazyKallsyms {
		for _, ip := range d.kernelStack(r.Kstack) {
			if k := d.kernelNames(); k != nil {
				e.KStack = append(e.KStack, k.Resolve(ip))
			} else {
				e.KStack = append(e.KStack, syms.Frame{Addr: ip, Symbol: syms.Unknown})
			}
		}
	}
	if d.procs != nil {
		py := d.py.Python(r.Task.Pid, r.Pystack) // first: read while the process is there
		native := d.procs.ResolveUserStack(r.Task.Pid, d.userStack(r.Ustack), 0, 0)
		e.UStack = pyframes.Merge(native, py)
	}
	return true
}

// kernelNames reads /proc/kallsyms the first time a kernel stack needs
// names; nil if that failed (checkKallsyms passed at start, so only a
// kernel that changed its mind since).
func (d *decoder) kernelNames() *syms.Kallsyms {
	if !d.kallsymsRead {
		d.kallsymsRead = true
		d.kallsyms, _ = syms.LoadKallsyms()
	}
	return d.kallsyms
}

// checkKallsyms fails at start as LoadKallsyms would, cheaply: the file
// opens and its first text symbol has an address (kernel.kptr_restrict
// hides them all as zeros).
func checkKallsyms() error {
	f, err := os.Open(syms.KallsymsPath)
	if err != nil {
		return fmt.Errorf("open %s: %w", syms.KallsymsPath, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		addr, rest, _ := strings.Cut(sc.Text(), " ")
		if typ, _, _ := strings.Cut(rest, " "); typ != "T" && typ != "t" {
			continue
		}
		if strings.Trim(addr, "0") == "" {
			return syms.ErrKptrRestrict
		}
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", syms.KallsymsPath, err)
	}
	return fmt.Errorf("%s: no text symbols", syms.KallsymsPath)
}

// first reports whether r is the first check of its kind, and remembers
// it while fewer than seenMax kinds are remembered.
func (d *decoder) first(r *capableEvent) bool {
	k := uniqueKey{cap: r.Cap, denied: r.Ret != 0, kstack: r.Kstack, ustack: r.Ustack}
	if d.cfg.UniqueByPID {
		k = uniqueKey{pid: r.Task.Pid, cap: r.Cap, denied: r.Ret != 0}
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

// kernelStack returns the addresses of kernel stack id, innermost first; a
// failed stack id (negative: the stack could not be taken, counted in the
// kernel) or one no longer in the map gives none.
func (d *decoder) kernelStack(id int32) []uint64 {
	if id < 0 || d.kstacks == nil {
		return nil
	}
	if err := d.kstacks.Lookup(uint32(id), &d.ips); err != nil {
		return nil
	}
	n := 0
	for n < len(d.ips) && d.ips[n] != 0 {
		n++
	}
	return d.ips[:n]
}

// userStack returns user stack id as its table keeps it, innermost first
// (syms.ResolveUserStack names it up to the first empty frame); none where
// kernelStack gives none.
func (d *decoder) userStack(id int32) []syms.BuildIDFrame {
	if id < 0 || d.ustacks == nil {
		return nil
	}
	if err := d.ustacks.Lookup(uint32(id), &d.frames); err != nil {
		return nil
	}
	return d.frames[:]
}
