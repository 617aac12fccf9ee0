// Package eperm finds syscalls failing with EPERM or EACCES: permission
// problems and probing for privileges.
package eperm

import (
	"fmt"
	"sort"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/sysnames"
)

// Event is one failed syscall (with -e).
type Event struct {
	Time      time.Time  `json:"time"`
	PID       uint32     `json:"pid"`
	TID       uint32     `json:"tid"`
	Comm      event.Comm `json:"comm"`
	Syscall   string     `json:"syscall"`
	SyscallNr int32      `json:"syscall_nr"`
	Errno     string     `json:"errno"` // EPERM or EACCES
}

// Count is how often one process saw one syscall fail with one errno.
type Count struct {
	Time      time.Time  `json:"time"`
	PID       uint32     `json:"pid"`
	Comm      event.Comm `json:"comm"`
	Syscall   string     `json:"syscall"`
	SyscallNr int32      `json:"syscall_nr"`
	Errno     string     `json:"errno"`
	Count     uint64     `json:"count"`
}

// Config selects what is traced.
type Config struct {
	PID    int    // 0 = all
	Stream bool   // emit each failure instead of counting in the kernel
	Hook   string // restrict the hook chain to these kinds
}

var hooks = []probe.Hook{{
	Kind:        probe.Tracepoint,
	Name:        "tracepoint raw_syscalls:sys_exit",
	Attachments: []probe.Attachment{probe.TracepointAt("tp_sys_exit", "raw_syscalls", "sys_exit")},
}}

// Tracer streams events or, by default, keeps counts in the kernel.
type Tracer struct {
	*probe.Tracer[Event]
	arch string
}

// New loads and attaches eperm.
func New(cfg Config) (*Tracer, error) {
	spec, err := loadEperm()
	if err != nil {
		return nil, fmt.Errorf("load eperm spec: %w", err)
	}
	s, err := probe.Open(spec, hooks, probe.Options{Tool: "eperm", Only: cfg.Hook,
		Configure: func(cs *ebpf.CollectionSpec) error {
			if err := probe.SetTgid(cs, cfg.PID); err != nil {
				return err
			}
			return cs.Variables["stream"].Set(cfg.Stream)
		}})
	if err != nil {
		return nil, err
	}
	t := &Tracer{Tracer: &probe.Tracer[Event]{Session: s}, arch: sysnames.Native()}
	t.Decode = func(raw []byte, e *Event) bool {
		r, ok := probe.View[epermEvent](raw)
		if !ok {
			return false
		}
		*e = Event{Time: s.Time(r.TsNs), PID: r.Pid, TID: r.Tid, Comm: r.Comm, SyscallNr: r.Nr,
			Syscall: sysnames.Syscall(t.arch, int(r.Nr)), Errno: sysnames.Errno(int(r.Err))}
		return true
	}
	return t, nil
}

// Probe attaches with defaults and no reader, for `owl tools`.
func Probe(only string) (*probe.Session, error) {
	spec, err := loadEperm()
	if err != nil {
		return nil, err
	}
	return probe.Open(spec, hooks, probe.Options{Tool: "eperm", Only: only, NoReader: true})
}

// Counts returns the counts since tracing began, largest first. Counts are
// cumulative, never reset, so no increment can fall between a read and a
// reset.
func (t *Tracer) Counts(now time.Time) ([]Count, error) {
	var (
		k      epermFailKey
		v      epermFailCount
		counts []Count
	)
	it := t.Coll.Maps["counts"].Iterate()
	for it.Next(&k, &v) {
		counts = append(counts, Count{Time: now, PID: k.Pid, Comm: v.Comm, SyscallNr: k.Nr, Count: v.N,
			Syscall: sysnames.Syscall(t.arch, int(k.Nr)), Errno: sysnames.Errno(int(k.Err))})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read counts: %w", err)
	}
	sort.Slice(counts, func(i, j int) bool {
		a, b := counts[i], counts[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.PID != b.PID {
			return a.PID < b.PID
		}
		if a.SyscallNr != b.SyscallNr {
			return a.SyscallNr < b.SyscallNr
		}
		return a.Errno < b.Errno
	})
	return counts, nil
}
