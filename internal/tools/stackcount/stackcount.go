// Package stackcount counts the distinct stacks that lead to user functions
// (uprobes) and kernel tracepoints, in the kernel, as BCC's stackcount does.
package stackcount

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/caps"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/pyframes"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/sysnames"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/funccount"
	"github.com/owlbpf/owl/internal/uprobe"
)

// Stack is one distinct stack and how often it led to a probe, in one
// report. stackcount streams nothing: these rows are read from kernel
// maps, so Stack is also its Event type (no record is ever decoded into
// one).
type Stack struct {
	Time  event.Time `json:"time"`
	Count uint64     `json:"count"`
	// PID and Comm are set with -P (per process), else nil and left out.
	PID  *uint32     `json:"pid,omitempty"`
	Comm *event.Comm `json:"comm,omitempty"`
	// KStack and UStack are the frames, innermost first; empty (left out
	// of JSON) when the stack was not asked for or does not exist (a
	// kernel thread has no user stack; a uprobe no kernel one).
	KStack []syms.Frame `json:"kstack,omitempty"`
	UStack []syms.Frame `json:"ustack,omitempty"`
	// KStackMissed and UStackMissed: the stack existed but could not be
	// kept (its table was full or a hash collision); counted as
	// stack_unavailable.
	KStackMissed bool `json:"kstack_missed"`
	UStackMissed bool `json:"ustack_missed"`
}

// Config is where to count stacks and which. The task filters are in
// tool.Options.
type Config struct {
	// Probes are the functions and tracepoints (funccount.Resolve).
	Probes funccount.Config
	// KStack: kernel stacks (tracepoints only: a uprobe fires in user
	// mode, where there is no kernel stack). UStack: user stacks.
	KStack, UStack bool
	// PerPID counts each process (and comm) apart (-P).
	PerPID bool
	// Stacks is the size of each stack table (0: DefaultStacks).
	Stacks int
	// Keys bounds the distinct (process, stacks) counted in one report
	// (0: DefaultKeys).
	Keys int
	// each attaches one uprobe per function even where uprobe-multi
	// links exist, for tests.
	each bool
}

const (
	// DefaultStacks is the default size of each stack table: 4096 kernel
	// stacks (127 frames of 8 bytes, 4 MB) and 4096 user stacks (127
	// frames of build-id and offset, 32 bytes each: 16 MB), preallocated.
	DefaultStacks = 4096
	// MaxStacks bounds --stacks (a user stack table of 4 GB).
	MaxStacks = 1 << 20
	// DefaultKeys is the default size of the counts table, as BCC's.
	DefaultKeys = 10240
	// MaxKeys bounds the counts table.
	MaxKeys = 1 << 22
)

// Stack ids of the counts table that are not stacks (stackcount.bpf.c).
const (
	noStack   = -1                     // not asked for
	noSuchOne = -int32(syscall.EFAULT) // nothing to walk
)

// maxProcesses bounds the processes whose mappings are kept to name user
// frames.
const maxProcesses = 1024

// hookName says what the default hook does, for README and --help.
const hookName = "uprobe (uprobe-multi where the kernel has it) + tracepoint for t:GROUP:NAME"

func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: hookName, Check: haveUprobes}
	p := cfg.Probes
	if len(p.Funcs) == 0 && len(p.Tracepoints) > 0 {
		h = probe.Hook{Kind: probe.Tracepoint, Name: "tracepoint"}
	}
	// One attachment per file. The stacks tell the functions apart: no
	// cookies.
	var order []string
	offsets := map[string][]uint64{}
	for _, fn := range p.Funcs {
		if offsets[fn.Path] == nil {
			order = append(order, fn.Path)
		}
		offsets[fn.Path] = append(offsets[fn.Path], fn.Entry)
	}
	attach := probe.UprobesAt
	if cfg.each {
		attach = probe.UprobeEachAt
	}
	for _, path := range order {
		h.Attachments = append(h.Attachments, attach(stackcountProgCountUprobe, path, offsets[path], nil, false, p.PID))
	}
	enter, exit := false, false
	for _, tp := range p.Tracepoints {
		if _, bit, ok := cfg.rawSyscall(tp); ok {
			enter, exit = enter || bit == sysEnter, exit || bit == sysExit
			continue
		}
		h.Attachments = append(h.Attachments, probe.TracepointAt(stackcountProgCountTracepoint, tp.Group, tp.Name))
	}
	if enter {
		h.Attachments = append(h.Attachments, probe.RawTracepointAt(stackcountProgCountSysEnter, "sys_enter"))
	}
	if exit {
		h.Attachments = append(h.Attachments, probe.RawTracepointAt(stackcountProgCountSysExit, "sys_exit"))
	}
	return []probe.Hook{h}
}

// Bits of the syscalls table (stackcount.bpf.c).
const (
	sysEnter    = 1
	sysExit     = 2
	maxSyscalls = 1024
)

// rawSyscall tells whether tp, a syscall tracepoint, is counted at the raw
// sys_enter or sys_exit tracepoint (and which: bit), filtered on its
// syscall's number nr. Kernels before 6.12 hand a program at a syscall
// tracepoint the user registers, so the kernel stack it takes there is
// empty; a raw tracepoint's is walked from the program. Only with -K; a
// name that is not a syscall of this architecture (a few tracepoints are
// named after the kernel's function, as sys_enter_newuname) stays a
// tracepoint.
func (c Config) rawSyscall(tp funccount.Tracepoint) (nr int, bit uint8, ok bool) {
	if !c.KStack || tp.Group != "syscalls" {
		return 0, 0, false
	}
	name, found := strings.CutPrefix(tp.Name, "sys_enter_")
	bit = sysEnter
	if !found {
		name, found = strings.CutPrefix(tp.Name, "sys_exit_")
		bit = sysExit
	}
	if !found {
		return 0, 0, false
	}
	nr, ok = sysnames.SyscallNr(sysnames.Native(), name)
	if !ok || nr >= maxSyscalls {
		return 0, 0, false
	}
	return nr, bit, true
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

var spec = tool.Spec[Config, Stack]{
	Name:    "stackcount",
	Group:   "language",
	Summary: "Count the distinct stacks leading to user functions or kernel tracepoints",
	Long: `Count the distinct stacks that lead to the functions or tracepoints of each
PATTERN, in the kernel, and print each stack with its count on exit and,
with -i, every interval (then the counts of that interval). Nothing is
streamed: each hit adds one to the count of its (process, kernel stack,
user stack) in a kernel table.

PATTERNs are funccount's: [PATH_OR_LIB:]FUNCTION (a glob, Go functions
included) and t:GROUP:NAME for kernel tracepoints. The stacks taken are
both, where they exist, as BCC's stackcount: a user function has only a
user stack, a tracepoint in a kernel thread only a kernel one. -K keeps
kernel stacks only (tracepoints), -U user stacks only. User stacks of
Python processes show their Python frames (function, file:line) in place
of the interpreter's, named at the report from the process's memory: one
that exited before shows [unknown] (python).

Text output is BCC's: for each stack, smallest count first, the kernel
frames innermost first, "--" between kernel and user frames with -d, the
user frames, with -P "comm [pid]", then the count and a blank line. -s adds
the offsets (func+0x1a), -v the addresses. -f prints folded stacks for
flame graphs, one line per stack, outermost frame first:
"comm;main;loop;work 1000" — the comm (first) with -P only, user frames
then kernel frames, "-" between them with -d. With -o json each report is
one object per stack: its count (of the interval with -i), pid and comm
with -P, and the kstack and ustack frames as capable's.

User stacks need frame pointers in the traced code (gcc
-fno-omit-frame-pointer; Go keeps them on amd64 and arm64); a function's
caller, which a frame-pointer walk misses at the function's first
instruction, is put back from the return address. Kernel stacks are named
from /proc/kallsyms. With kernel stacks, t:syscalls:sys_enter_NAME and
sys_exit_NAME are counted at the raw sys_enter and sys_exit tracepoints,
filtered on the syscall's number: kernels before 6.12 give no kernel stack
at a syscall tracepoint. 32-bit (i386) syscalls are left out there, as the
syscall tracepoints do. User frames are taken as build-id and file offset, so
the stacks of processes that exited before the report are named from files
owl knows: the files of the patterns and the libraries they need, and with
-p the process's own; other files print as [unknown] (build-id
ID+0xOFF), and frames in files without a build-id (JIT code, programs
linked without one) need the process to still be running. -v prints 0 for
the address of a frame whose process is gone. Without -P, stacks of
different processes that name the same frames are one row.

Each stack table holds --stacks distinct stacks (default 4096), kept for
the whole run; a stack that finds no room (or collides with another in the
table's hash) is counted as stack_unavailable and its calls as [Missed
User Stack] or [Missed Kernel Stack]. Once every entry of the user stack
table is taken, the kernel fails every user stack (it needs a free entry to
compare one). The counts table holds 10240 distinct (process, stacks) per
report; a call that finds no room is lost and counted (map_full).

-d is BCC's delimiter; the duration, -d in owl's other tools, is -D here.`,
	Task: true,
	Load: loadStackcount,
	Caps: func(c Config, o tool.Options) caps.Set {
		return tool.ReadsPID(c, o) | caps.If(c.UStack, caps.SysPtrace) | caps.If(c.kernelStacks(), caps.Syslog)
	},
	Default: func() Config { return Config{} },
	Hooks:   hooks,
	Configure: func(cfg Config, cs *ebpf.CollectionSpec) error {
		var m stackcountMapSpecs
		if err := cs.Assign(&m); err != nil {
			return err
		}
		var v stackcountVariableSpecs
		if err := cs.Assign(&v); err != nil {
			return err
		}
		// Stack tables are preallocated: one entry when not asked for.
		m.Counts.MaxEntries = uint32(orDefault(cfg.Keys, DefaultKeys))
		m.Kstacks.MaxEntries, m.Ustacks.MaxEntries = 1, 1
		if cfg.kernelStacks() {
			m.Kstacks.MaxEntries = uint32(orDefault(cfg.Stacks, DefaultStacks))
		}
		if cfg.UStack {
			m.Ustacks.MaxEntries = uint32(orDefault(cfg.Stacks, DefaultStacks))
		}
		// The syscalls counted at raw tracepoints (rawSyscall).
		want := map[int]uint8{}
		for _, tp := range cfg.Probes.Tracepoints {
			if nr, bit, ok := cfg.rawSyscall(tp); ok {
				want[nr] |= bit
			}
		}
		for nr, bits := range want {
			m.Syscalls.Contents = append(m.Syscalls.Contents, ebpf.MapKV{Key: uint32(nr), Value: bits})
		}
		err := errors.Join(v.WantKstack.Set(cfg.kernelStacks()), v.WantUstack.Set(cfg.UStack),
			v.KeyPid.Set(cfg.keyPID()), v.KeyComm.Set(cfg.PerPID), pyframes.Configure(cs, cfg.UStack))
		if err != nil || cfg.each || cs.Programs[stackcountProgCountUprobe] == nil {
			return err
		}
		return probe.PrepareUprobes(cs, stackcountProgCountUprobe)
	},
	Stream: func(Config) bool { return false },
	Decoder: func(Config, *probe.Session) (func([]byte, *Stack) bool, error) {
		return func([]byte, *Stack) bool { return false }, nil
	},
}

// Tool is stackcount's registry entry.
var Tool = tool.Register(&spec, command)

func orDefault(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// kernelStacks: only tracepoints have kernel stacks to take.
func (c Config) kernelStacks() bool { return c.KStack && len(c.Probes.Tracepoints) > 0 }

// keyPID: the kernel counts each process apart with -P, and for user
// stacks, whose frames without a build-id are named from the process's
// mappings; without -P, rows that name the same frames are merged here.
func (c Config) keyPID() bool { return c.PerPID || c.UStack }

// Source is a running stackcount.
type Source struct {
	*tool.Source[Stack]
	cfg      Config
	maps     stackcountMaps
	kallsyms *syms.Kallsyms
	procs    *syms.Processes
	py       *pyframes.Walker
	ips      [127]uint64
	frames   [127]syms.BuildIDFrame
}

// Open loads stackcount and attaches it to every function and tracepoint
// of cfg.Probes; uprobes are limited to the -p process when opts has one.
func Open(cfg Config, opts tool.Options) (*Source, error) {
	switch n := cfg.Probes.Len(); {
	case n == 0:
		return nil, errors.New("stackcount: nothing to count")
	case n > funccount.MaxCounters:
		return nil, fmt.Errorf("stackcount: %d functions and tracepoints, at most %d", n, funccount.MaxCounters)
	case !cfg.KStack && !cfg.UStack:
		return nil, errors.New("stackcount: neither kernel nor user stacks asked for")
	case cfg.Stacks < 0 || cfg.Stacks > MaxStacks:
		return nil, fmt.Errorf("stackcount: %d stacks: want 1 to %d", cfg.Stacks, MaxStacks)
	case cfg.Keys < 0 || cfg.Keys > MaxKeys:
		return nil, fmt.Errorf("stackcount: %d keys: want 1 to %d", cfg.Keys, MaxKeys)
	}
	cfg.Probes.PID = opts.Task.PID
	src, err := tool.Open(&spec, cfg, opts)
	if err != nil {
		return nil, err
	}
	s := &Source{Source: src, cfg: cfg}
	if err := src.Assign(&s.maps); err != nil {
		src.Close()
		return nil, err
	}
	if cfg.kernelStacks() {
		if s.kallsyms, err = syms.LoadKallsyms(); err != nil {
			src.Close()
			return nil, fmt.Errorf("kernel stacks: %w", err)
		}
	}
	if cfg.UStack {
		s.procs = syms.NewProcesses(syms.NewCache(), maxProcesses)
		if opts.Task.PID != 0 {
			s.procs.Learn(uint32(opts.Task.PID))
		}
		learnFiles(s.procs, cfg.Probes.Funcs)
		if s.py, err = pyframes.New(src.Assign); err != nil {
			src.Close()
			return nil, err
		}
	}
	return s, nil
}

// learnFiles reads the build-ids of the files probed and of the
// libraries they need (as the dynamic loader finds them), so that the
// frames in them are named even when the process is gone by the report.
// Pid 0 is no process: Exec reads the file at its path.
func learnFiles(procs *syms.Processes, funcs []uprobe.Func) {
	var cache []uprobe.LdEntry
	if b, err := os.ReadFile("/etc/ld.so.cache"); err == nil {
		cache, _ = uprobe.ParseLdCache(b)
	}
	seen := map[string]bool{}
	learn := func(path string) {
		if !seen[path] && len(seen) < maxLearned {
			seen[path] = true
			procs.Exec(0, path)
		}
	}
	for _, fn := range funcs {
		if seen[fn.Path] {
			continue
		}
		learn(fn.Path)
		ef, err := elf.Open(fn.Path)
		if err != nil {
			continue
		}
		libs, _ := ef.ImportedLibraries()
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP {
				if b, err := io.ReadAll(p.Open()); err == nil {
					learn(strings.TrimRight(string(b), "\x00"))
				}
			}
		}
		ef.Close()
		for _, lib := range libs {
			if path, ok := uprobe.LookupLib(cache, lib); ok {
				learn(path)
			}
		}
	}
}

// maxLearned bounds the files learnFiles reads.
const maxLearned = 256

// Stacks takes the counts gathered since the last call (since tracing
// began, for the first) out of the kernel, names their frames and returns
// one Stack per distinct (process with -P, frames), stamped with now,
// smallest count first as BCC prints them. Each count is read and removed
// at once, so a call is in exactly one report.
func (s *Source) Stacks(now time.Time) ([]Stack, error) {
	rows := map[string]*Stack{}
	var ids []byte // a row's identity: process and frames as printed
	err := probe.Take(s.maps.Counts, func(k *stackcountStackKey, n *uint64) {
		st := s.stack(k)
		ids = st.appendIdentity(ids[:0])
		if r, ok := rows[string(ids)]; ok {
			r.Count += *n
			return
		}
		st.Count, st.Time = *n, event.Time{Time: now}
		rows[string(ids)] = &st
	})
	if err != nil {
		return nil, err
	}
	out := make([]Stack, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	sortStacks(out)
	return out, nil
}

// stack names the frames of one key of the counts table.
func (s *Source) stack(k *stackcountStackKey) Stack {
	var st Stack
	if s.cfg.PerPID {
		pid, comm := k.Pid, event.Comm(k.Comm)
		st.PID, st.Comm = &pid, &comm
	}
	if s.kallsyms != nil && k.Kstack >= 0 {
		for _, ip := range s.kernelStack(k.Kstack) {
			f := s.kallsyms.Resolve(ip)
			if len(st.KStack) == 0 && isTracingFrame(f.Symbol) {
				continue
			}
			st.KStack = append(st.KStack, f)
		}
	}
	if s.procs != nil && k.Ustack >= 0 {
		// k.Caller: the caller of a probed function that the kernel's
		// walk missed (stackcount.bpf.c, missing_caller).
		py := s.py.Python(k.Pid, k.Pystack)
		native := s.procs.ResolveUserStack(k.Pid, s.userStack(k.Ustack), k.Ip, k.Caller)
		st.UStack = pyframes.Merge(native, py)
	}
	// A stack id that is no stack, or one gone from its table, is a
	// missed stack (counted in the kernel when it could not be taken).
	st.KStackMissed = missed(k.Kstack, len(st.KStack))
	st.UStackMissed = missed(k.Ustack, len(st.UStack))
	return st
}

// isTracingFrame: a stack taken at a raw tracepoint starts in the BPF
// program and the kernel's code that runs it, before the traced code;
// those frames are left out (how many there are depends on the kernel).
func isTracingFrame(symbol string) bool {
	for _, p := range []string{"bpf_prog_", "bpf_trace_run", "__bpf_trace_", "__traceiter_"} {
		if strings.HasPrefix(symbol, p) {
			return true
		}
	}
	return false
}

func missed(id int32, frames int) bool {
	return id != noStack && id != noSuchOne && frames == 0
}

// kernelStack returns the addresses of kernel stack id, innermost first;
// none when it is not in the table.
func (s *Source) kernelStack(id int32) []uint64 {
	if err := s.maps.Kstacks.Lookup(uint32(id), &s.ips); err != nil {
		return nil
	}
	n := 0
	for n < len(s.ips) && s.ips[n] != 0 {
		n++
	}
	return s.ips[:n]
}

// userStack returns the frames of user stack id, innermost first, as the
// table keeps them (syms.ResolveUserStack reads up to the first empty
// one); none when it is not in the table.
func (s *Source) userStack(id int32) []syms.BuildIDFrame {
	if err := s.maps.Ustacks.Lookup(uint32(id), &s.frames); err != nil {
		return nil
	}
	return s.frames[:]
}

// appendIdentity appends what tells rows apart: the process with -P, then
// each frame as any output prints it (symbol, offset, module), addresses
// aside: one function is at different addresses in two processes.
func (st *Stack) appendIdentity(b []byte) []byte {
	if st.PID != nil {
		b = fmt.Appendf(b, "%d/%s", *st.PID, st.Comm.Bytes())
	}
	for _, frames := range [][]syms.Frame{st.KStack, st.UStack} {
		b = append(b, '|')
		for _, f := range frames {
			b = fmt.Appendf(b, "%s+%x(%s)%s:%d;", f.Symbol, f.Offset, f.Module, f.File, f.Line)
		}
	}
	return fmt.Appendf(b, "|%v%v", st.KStackMissed, st.UStackMissed)
}

// sortStacks orders stacks by count, smallest first as BCC prints them
// (the busiest end up nearest the prompt), then by process and frames so
// that reports are stable.
func sortStacks(stacks []Stack) {
	slices.SortStableFunc(stacks, func(a, b Stack) int {
		if a.Count != b.Count {
			if a.Count < b.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(string(a.appendIdentity(nil)), string(b.appendIdentity(nil)))
	})
}
