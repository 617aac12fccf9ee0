// Package eperm finds syscalls failing with EPERM or EACCES: permission
// problems and probing for privileges.
package eperm

import (
	"sort"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/sysnames"
	"github.com/owlbpf/owl/internal/tool"
)

// Event is one failed syscall (with -e).
type Event struct {
	event.Task
	// Syscall and SyscallNr are from the table of the call's ABI: the
	// i386 table when IA32.
	Syscall   string `json:"syscall"`
	SyscallNr int32  `json:"syscall_nr"`
	// IA32 marks a 32-bit syscall of x86-64: int $0x80 in a 64-bit
	// process, or any syscall of a 32-bit one.
	IA32  bool   `json:"ia32"`
	Errno string `json:"errno"` // EPERM or EACCES
}

// Count is how often one process saw one syscall fail with one errno,
// counted in the kernel (the default). A syscall's ia32 form is counted
// apart from its native one.
type Count struct {
	Time      event.Time `json:"time"`
	PID       uint32     `json:"pid"`
	Comm      event.Comm `json:"comm"`
	Syscall   string     `json:"syscall"`
	SyscallNr int32      `json:"syscall_nr"`
	IA32      bool       `json:"ia32"`
	Errno     string     `json:"errno"`
	Count     uint64     `json:"count"`
}

// Config selects what is traced; the task filters are in tool.Options. The
// zero value counts in the kernel.
type Config struct {
	Stream bool // emit each failure instead of counting in the kernel (-e)
}

// hooks: the program runs at every syscall's exit, so it is attached as a
// raw tracepoint (the registers, no record copied per syscall); its users
// know it as the tracepoint raw_syscalls:sys_exit.
func hooks(Config) []probe.Hook {
	return []probe.Hook{{
		Kind:        probe.Tracepoint,
		Name:        "tracepoint raw_syscalls:sys_exit",
		Attachments: []probe.Attachment{probe.RawTracepointAt(epermProgTpSysExit, "sys_exit")},
	}}
}

var spec = tool.Spec[Config, Event]{
	Name:    "eperm",
	Group:   "security",
	Summary: "Count or trace syscalls failing with EPERM or EACCES",
	Long: `Find syscalls that fail with EPERM (operation not permitted, errno 1) or
EACCES (permission denied, errno 13), kept apart and labelled. By default the
kernel counts failures per process, syscall and errno, and owl prints the
counts on exit and, with -i, every interval (counts are since the start);
nothing is streamed. With -e each failure is printed as it happens.

Syscall names come from tables generated from the kernel's numbering for
x86_64 and arm64. On x86-64, 32-bit syscalls (int $0x80, or a 32-bit
process) are named from the i386 table and counted apart from native ones:
SYSCALL shows them as ia32:NAME; in JSON "ia32" is true.`,
	Task: true,
	// Syscall rate: a loop can make 300k events a second (-e); sized as
	// setuids'. Counting (the default) maps a one-page ring instead.
	RingBytes: 4 << 20,
	Load:      loadEperm,
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: func(cfg Config, spec *ebpf.CollectionSpec) error {
		var v epermVariableSpecs
		if err := spec.Assign(&v); err != nil {
			return err
		}
		return v.Stream.Set(cfg.Stream)
	},
	Stream: func(cfg Config) bool { return cfg.Stream },
	Decoder: func(_ Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		arch := sysnames.Native()
		return func(raw []byte, e *Event) bool { return decode(s, arch, raw, e) }, nil
	},
	Outputs: []tool.Output{{Flag: "counts (default, without -e)", Value: Count{}}},
}

// Tool is eperm's registry entry.
var Tool = tool.Register(&spec, command)

// Source is a running eperm: it streams events (-e) or, by default, keeps
// counts in the kernel.
type Source struct {
	*tool.Source[Event]
	arch string
}

// Open loads and attaches eperm.
func Open(cfg Config, opts tool.Options) (*Source, error) {
	src, err := tool.Open(&spec, cfg, opts)
	if err != nil {
		return nil, err
	}
	return &Source{Source: src, arch: sysnames.Native()}, nil
}

func decode(s *probe.Session, arch string, raw []byte, e *Event) bool {
	r, ok := probe.View[epermEvent](raw)
	if !ok {
		return false
	}
	*e = Event{
		Task:      s.Task(raw),
		SyscallNr: r.Nr,
		Syscall:   syscallName(arch, r.Nr, r.Ia32 != 0),
		IA32:      r.Ia32 != 0,
		Errno:     sysnames.Errno(int(r.Err)),
	}
	return true
}

// syscallName names nr from arch's table, or the i386 one for an ia32
// syscall.
func syscallName(arch string, nr int32, ia32 bool) string {
	if ia32 {
		arch = sysnames.IA32
	}
	return sysnames.Syscall(arch, int(nr))
}

// Counts returns the counts since tracing began, largest first, stamped
// with now. Counts are cumulative, never reset, so no increment can fall
// between a read and a reset.
func (s *Source) Counts(now time.Time) ([]Count, error) {
	var m epermMaps
	if err := s.Assign(&m); err != nil {
		return nil, err
	}
	var counts []Count
	err := probe.Each(m.Counts, func(k *epermFailKey, v *epermFailCount) {
		counts = append(counts, Count{Time: event.Time{Time: now}, PID: k.Pid, Comm: v.Comm, SyscallNr: k.Nr, Count: v.N,
			Syscall: syscallName(s.arch, k.Nr, k.Ia32 != 0), IA32: k.Ia32 != 0, Errno: sysnames.Errno(int(k.Err))})
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(counts, func(i, j int) bool {
		a, b := counts[i], counts[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.PID != b.PID {
			return a.PID < b.PID
		}
		if a.IA32 != b.IA32 {
			return !a.IA32
		}
		if a.SyscallNr != b.SyscallNr {
			return a.SyscallNr < b.SyscallNr
		}
		return a.Errno < b.Errno
	})
	return counts, nil
}
