// Package profile samples on-CPU stacks at a timed interval and counts
// them in the kernel, as BCC's profile does: a cpu-clock perf event on each
// CPU runs a BPF program that adds one to the count of the sampled
// (process, kernel stack, user stack).
package profile

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/caps"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/pyframes"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
)

// Stack is one distinct stack of one process and how many samples found
// it on a CPU. profile streams nothing: these rows are read from a kernel
// map at the end, so Stack is also its Event type (no record is ever
// decoded into one).
type Stack struct {
	Time  event.Time `json:"time"`
	Count uint64     `json:"count"`
	PID   uint32     `json:"pid"`
	Comm  event.Comm `json:"comm"`
	// KStack and UStack are the frames, innermost first; empty (left out
	// of JSON) when the stack was not asked for or does not exist (a
	// sample in user mode has no kernel stack, a kernel thread no user
	// one).
	KStack []syms.Frame `json:"kstack,omitempty"`
	UStack []syms.Frame `json:"ustack,omitempty"`
	// KStackMissed and UStackMissed: the stack existed but could not be
	// kept (its table was full or a hash collision); counted as
	// stack_unavailable.
	KStackMissed bool `json:"kstack_missed"`
	UStackMissed bool `json:"ustack_missed"`
}

// Config is what to sample. The task filters (-p, -u, --cgroup, --mntns)
// are in tool.Options and apply in the kernel.
type Config struct {
	// KStack, UStack: which stacks to take (both by default).
	KStack, UStack bool
	// Freq is the sampling frequency per CPU in Hz (0: DefaultFreq);
	// Period, when set, samples every Period of CPU time instead (BCC's
	// -c: the cpu-clock event counts nanoseconds).
	Freq   int
	Period time.Duration
	// CPUs to sample on; nil: every online CPU.
	CPUs []int
	// Idle keeps the samples of idle CPUs (the swapper, pid 0).
	Idle bool
	// Stacks is the size of each stack table (0: DefaultStacks).
	Stacks int
	// Keys bounds the distinct (process, stacks) counted (0: DefaultKeys).
	Keys int
}

const (
	// DefaultFreq is BCC's default, 49 Hz: off the 50 and 100 Hz of
	// timers that would be sampled in lockstep.
	DefaultFreq = 49
	// MaxFreq bounds -F; the kernel may lower it further
	// (kernel.perf_event_max_sample_rate).
	MaxFreq = 100000
	// DefaultStacks is the default size of each stack table, BCC's
	// --stack-storage-size: 16384 kernel stacks (127 frames of 8 bytes,
	// 16 MB) and as many user stacks (127 frames of build-id and offset,
	// 32 bytes each: 64 MB), preallocated.
	DefaultStacks = 16384
	// MaxStacks bounds --stack-storage-size.
	MaxStacks = 1 << 20
	// DefaultKeys is BCC's --hash-storage-size.
	DefaultKeys = 40960
	// MaxKeys bounds the counts table.
	MaxKeys = 1 << 22
)

// Stack ids of the counts table that are not stacks (profile.bpf.c).
const (
	noStack   = -1                     // not asked for
	noSuchOne = -int32(syscall.EFAULT) // nothing to walk
)

// maxProcesses bounds the processes whose mappings are kept to name user
// frames.
const maxProcesses = 4096

// perfEvent is the hook's kind: perf events are attached by Open, not by
// the hook chain, which attaches tracepoints and probes only.
const perfEvent probe.Kind = "perf_event"

const hookName = "perf_event cpu-clock (software timer) on each CPU"

// hooks has no attachments: Open opens a perf event on each CPU and links
// the program to it once the collection is loaded; Configure keeps the
// program the chain would otherwise leave out.
func hooks(Config) []probe.Hook {
	return []probe.Hook{{Kind: perfEvent, Name: hookName, Check: checkPerf}}
}

// checkPerf opens (and closes) one cpu-clock event, so that a kernel or a
// sandbox without perf events is told apart before anything is loaded:
// `owl tools` then says why profile is unavailable.
func checkPerf() error {
	fd, err := openPerf(cpuClock(Config{}), 0)
	if err != nil {
		return fmt.Errorf("cpu-clock perf event: %w", err)
	}
	return unix.Close(fd)
}

var spec = tool.Spec[Config, Stack]{
	Name:    "profile",
	Group:   "language",
	Summary: "Sample on-CPU stacks at a timed interval; text, folded, pprof and flame graph SVG",
	Long: `Sample the stacks of what runs on each CPU at a timed interval (-F Hz,
default 49; -c: every NANOSECONDS of CPU time) and count them in the
kernel, as BCC's profile: each sample adds one to the count of its
(process, kernel stack, user stack). The timer is the cpu-clock software
perf event, so it works in VMs without PMU access. Idle CPUs (the swapper,
pid 0) are left out unless -I. At the end (Ctrl-C, -D or the DURATION
argument) sampling stops, what was lost is said (with -o json the
{"lost":...} line comes first), then the stacks are named and printed.

Text output is BCC's profile's: for each stack, smallest count first, the
kernel frames innermost first, "--" between kernel and user frames with -d,
the user frames, "-  comm (pid)", then the count and a blank line; -a adds
_[k] to kernel frames. -f prints folded stacks, one line per stack,
outermost frame first: "comm;main;loop;work 1000" (user frames, "-" with
-d, then kernel frames), which flamegraph.pl, speedscope and inferno read.
With -o json each stack is one object: count, pid, comm, and the kstack
and ustack frames as stackcount's.

--pprof FILE writes a gzipped pprof profile (github.com/google/pprof's
format: go tool pprof, Pyroscope, Grafana read it), sample counts and CPU
time per stack, with labels pid and comm. --svg FILE writes a flame graph:
one self-contained SVG, processes at the bottom, callers below callees,
width for samples; click a frame to zoom, Ctrl-F or the Search button to
highlight matching functions (their share is shown), hover for counts. A
URL fragment #search=REGEXP highlights on load, #zoom=REGEXP zooms into the
first frame that matches (both: #zoom=^main$&search=^hot$). With --pprof or --svg the
text report is left out (-f and -o json still print).

User stacks need frame pointers in the sampled code (gcc
-fno-omit-frame-pointer; Go keeps them on amd64 and arm64). A sample that
lands on a function's first instructions, before its frame is set up,
would miss the function's caller: on x86-64 the caller is put back from
the return address. Kernel frames are named from /proc/kallsyms; user
frames from ELF symbol tables, the Go pclntab, and the perf maps
(/tmp/perf-PID.map) of JIT compilers. User frames are taken as build-id
and file offset, and the files of each process sampled are learned once a
second, so the stacks of processes that exited before the end are named
too; frames in files without a build-id (JIT code, Go programs built
without one) need the process to be alive at the end.

CPython processes (3.8 to 3.13) show their Python functions, "func
(file:line)", in place of the interpreter's frames (as stackcount): each
sample walks the thread's Python frames in the kernel; the code objects are
named from the process's memory once a second and at the end, so a
process that exits leaves only its stacks named by then, the rest as
[unknown] (python). In flame graphs a Python function is one box whatever
its lines; pprof keeps the lines (go tool pprof -lines).

Each stack table (kernel, user) holds --stack-storage-size distinct stacks
(default 16384); a stack that finds no room (or collides with another in
the table's hash) is counted as stack_unavailable and its samples as
[Missed User Stack] or [Missed Kernel Stack]. The counts table holds
--hash-storage-size distinct (process, stacks) (default 40960); a sample
that finds no room is lost and counted (map_full).

-d is BCC's delimiter; the duration, -d in owl's other tools, is -D here
(or DURATION, BCC's positional argument).`,
	Task: true,
	Load: loadProfile,
	Caps: func(c Config, _ tool.Options) caps.Set {
		return caps.If(c.UStack, caps.SysPtrace) | caps.If(c.KStack, caps.Syslog)
	},
	Default: func() Config { return Config{KStack: true, UStack: true} },
	Hooks:   hooks,
	Configure: func(cfg Config, cs *ebpf.CollectionSpec) error {
		// The hook has no attachment naming the program (see hooks):
		// put it back.
		if cs.Programs[profileProgSample] == nil {
			full, err := loadProfile()
			if err != nil {
				return err
			}
			cs.Programs[profileProgSample] = full.Programs[profileProgSample]
		}
		var m profileMapSpecs
		if err := cs.Assign(&m); err != nil {
			return err
		}
		var v profileVariableSpecs
		if err := cs.Assign(&v); err != nil {
			return err
		}
		m.Counts.MaxEntries = uint32(orDefault(cfg.Keys, DefaultKeys))
		m.Kstacks.MaxEntries, m.Ustacks.MaxEntries = 1, 1
		if cfg.KStack {
			m.Kstacks.MaxEntries = uint32(orDefault(cfg.Stacks, DefaultStacks))
		}
		if cfg.UStack {
			m.Ustacks.MaxEntries = uint32(orDefault(cfg.Stacks, DefaultStacks))
		}
		return errors.Join(v.WantKstack.Set(cfg.KStack), v.WantUstack.Set(cfg.UStack), v.IncludeIdle.Set(cfg.Idle),
			pyframes.Configure(cs, cfg.UStack))
	},
	Stream: func(Config) bool { return false },
	Decoder: func(Config, *probe.Session) (func([]byte, *Stack) bool, error) {
		return func([]byte, *Stack) bool { return false }, nil
	},
}

// Tool is profile's registry entry.
var Tool = tool.Register(&spec, command)

func orDefault(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// Source is a running profile.
type Source struct {
	*tool.Source[Stack]
	cfg      Config
	maps     profileMaps
	perf     []int // perf event fds, one per CPU
	links    []link.Link
	kallsyms *syms.Kallsyms
	procs    *syms.Processes
	py       *pyframes.Walker // Python frames; nil without user stacks
	learned  map[uint32]bool  // processes whose files Learn has read
	ips      [127]uint64
	frames   [127]syms.BuildIDFrame
}

// Open loads profile and starts sampling on every CPU of cfg.
func Open(cfg Config, opts tool.Options) (*Source, error) {
	switch {
	case !cfg.KStack && !cfg.UStack:
		return nil, errors.New("profile: neither kernel nor user stacks asked for")
	case cfg.Freq < 0 || cfg.Freq > MaxFreq:
		return nil, fmt.Errorf("profile: %d Hz: want 1 to %d", cfg.Freq, MaxFreq)
	case cfg.Period < 0:
		return nil, fmt.Errorf("profile: sample period %v: want a positive time", cfg.Period)
	case cfg.Stacks < 0 || cfg.Stacks > MaxStacks:
		return nil, fmt.Errorf("profile: %d stacks: want 1 to %d", cfg.Stacks, MaxStacks)
	case cfg.Keys < 0 || cfg.Keys > MaxKeys:
		return nil, fmt.Errorf("profile: %d keys: want 1 to %d", cfg.Keys, MaxKeys)
	}
	cpus := cfg.CPUs
	if cpus == nil {
		var err error
		if cpus, err = onlineCPUs(); err != nil {
			return nil, err
		}
	}
	src, err := tool.Open(&spec, cfg, opts)
	if err != nil {
		return nil, err
	}
	s := &Source{Source: src, cfg: cfg, learned: map[uint32]bool{}}
	if err := s.start(cpus, opts); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Source) start(cpus []int, opts tool.Options) error {
	if err := s.Source.Assign(&s.maps); err != nil {
		return err
	}
	var err error
	if s.cfg.KStack {
		if s.kallsyms, err = syms.LoadKallsyms(); err != nil {
			return fmt.Errorf("kernel stacks: %w", err)
		}
	}
	if s.cfg.UStack {
		s.procs = syms.NewProcesses(syms.NewCache(), maxProcesses)
		if opts.Task.PID != 0 {
			s.learn(uint32(opts.Task.PID))
		}
		// Before sampling: the Python processes running now (-p's, or
		// all) are put in the walk's table, so their first samples
		// have Python frames; later ones are found by Learn.
		if s.py, err = pyframes.New(s.Source.Assign); err != nil {
			return fmt.Errorf("python frames: %w", err)
		}
	}
	prog := s.Coll.Programs[profileProgSample]
	attr := cpuClock(s.cfg)
	for _, cpu := range cpus {
		fd, err := openPerf(attr, cpu)
		if err != nil {
			return fmt.Errorf("cpu-clock perf event on CPU %d: %w", cpu, err)
		}
		s.perf = append(s.perf, fd)
		l, err := link.AttachRawLink(link.RawLinkOptions{Target: fd, Program: prog, Attach: ebpf.AttachPerfEvent})
		if err != nil {
			return fmt.Errorf("attach to the perf event of CPU %d: %w", cpu, err)
		}
		s.links = append(s.links, l)
	}
	return nil
}

// Stop stops sampling: the counts and stacks stay for Stacks, and Stats
// no longer moves.
func (s *Source) Stop() error {
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	for _, fd := range s.perf {
		errs = append(errs, unix.Close(fd))
	}
	s.links, s.perf = nil, nil
	return errors.Join(errs...)
}

// Close stops sampling and closes the session.
func (s *Source) Close() error {
	return errors.Join(s.Stop(), s.Source.Close())
}

// cpuClock is the perf event of cfg: the cpu-clock software event (an
// hrtimer: no PMU needed), at cfg's frequency or period.
func cpuClock(cfg Config) unix.PerfEventAttr {
	attr := unix.PerfEventAttr{
		Type:   unix.PERF_TYPE_SOFTWARE,
		Config: unix.PERF_COUNT_SW_CPU_CLOCK,
		Size:   uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
		Sample: uint64(orDefault(cfg.Freq, DefaultFreq)),
		Bits:   unix.PerfBitFreq,
	}
	if cfg.Period > 0 {
		attr.Sample, attr.Bits = uint64(cfg.Period.Nanoseconds()), 0
	}
	return attr
}

// openPerf opens attr on cpu for every task (the task filters apply in
// the program: a per-task event would miss threads started later).
func openPerf(attr unix.PerfEventAttr, cpu int) (int, error) {
	return unix.PerfEventOpen(&attr, -1, cpu, -1, unix.PERF_FLAG_FD_CLOEXEC)
}

// onlineCPUs reads the online CPUs ("0-3,6").
func onlineCPUs() ([]int, error) {
	const path = "/sys/devices/system/cpu/online"
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("online CPUs: %w", err)
	}
	cpus, err := ParseCPUs(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cpus, nil
}

// ParseCPUs reads a CPU list as the kernel writes them: "0-3,6".
func ParseCPUs(s string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("CPU list %q: %q is no CPU number", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			if !slices.Contains(cpus, c) {
				cpus = append(cpus, c)
			}
		}
	}
	return cpus, nil
}

// Learn reads the files of the processes sampled so far that it has not
// read yet (their build-ids and symbol tables), so that their stacks are
// named after they exit. It also looks for Python in processes first
// sampled since (their later samples get Python frames) and names the
// Python stacks sampled so far while their code objects are still in
// memory. Run it every second or so; not concurrently with Stacks.
func (s *Source) Learn() error {
	if s.procs == nil {
		return nil
	}
	var k, next profileSampleKey
	var key any // nil: start at the first key
	for {
		err := s.maps.Counts.NextKey(key, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read counts: %w", err)
		}
		if next.Ustack >= 0 {
			s.learn(next.Pid)
			// Names (and keeps) the stack, or looks at a
			// process not seen yet, at most once a second.
			s.py.Python(next.Pid, next.Pystack)
		}
		k = next
		key = &k
	}
}

func (s *Source) learn(pid uint32) {
	if !s.learned[pid] {
		s.learned[pid] = true
		s.procs.Learn(pid)
	}
}

// Stacks takes the counts gathered since the last call (since sampling
// began, for the first) out of the kernel, names their frames and returns
// one Stack per distinct (process, frames), stamped with now, smallest
// count first as BCC prints them. Each count is read and removed at once,
// so a sample is in exactly one call's result.
func (s *Source) Stacks(now time.Time) ([]Stack, error) {
	rows := map[string]*Stack{}
	var ids []byte // a row's identity: process and frames as printed
	err := probe.Take(s.maps.Counts, func(k *profileSampleKey, n *uint64) {
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
func (s *Source) stack(k *profileSampleKey) Stack {
	st := Stack{PID: k.Pid, Comm: event.Comm(k.Comm)}
	if s.kallsyms != nil && k.Kstack >= 0 {
		for _, ip := range s.kernelStack(k.Kstack) {
			st.KStack = append(st.KStack, s.kallsyms.Resolve(ip))
		}
	}
	if s.procs != nil && k.Ustack >= 0 {
		// Python first: its code objects are read from the process.
		// Merged with the native frames, the Python frames show in text,
		// folded, JSON, pprof and SVG outputs alike. k.Caller: the caller
		// the walk missed (profile.bpf.c, missing_caller).
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

// appendIdentity appends what tells rows apart: the process, then each
// frame as every output prints it (function and module; file and line of
// a Python frame). Offsets and addresses aside: samples at two places in
// one native function are one row.
func (st *Stack) appendIdentity(b []byte) []byte {
	b = fmt.Appendf(b, "%d/%s", st.PID, st.Comm.Bytes())
	for _, frames := range [][]syms.Frame{st.KStack, st.UStack} {
		b = append(b, '|')
		for _, f := range frames {
			b = fmt.Appendf(b, "%s(%s:%s:%d);", f.Symbol, f.Module, f.File, f.Line)
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
