// Package setuids traces the eight privilege-changing syscalls: setuid,
// setgid, setreuid, setregid, setresuid, setresgid, setfsuid, setfsgid.
package setuids

import (
	"fmt"
	"strconv"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/sysnames"
)

// call describes one traced syscall: its argument names and, for setfs*,
// the name of what it returns (the previous id, not an error).
type call struct {
	name string
	args []string
	prev string
}

var calls = []call{
	{"setuid", []string{"uid"}, ""},
	{"setgid", []string{"gid"}, ""},
	{"setreuid", []string{"ruid", "euid"}, ""},
	{"setregid", []string{"rgid", "egid"}, ""},
	{"setresuid", []string{"ruid", "euid", "suid"}, ""},
	{"setresgid", []string{"rgid", "egid", "sgid"}, ""},
	{"setfsuid", []string{"uid"}, "prevuid"},
	{"setfsgid", []string{"gid"}, "prevgid"},
}

// Event is one completed call.
type Event struct {
	Time    time.Time  `json:"time"`
	PID     uint32     `json:"pid"`
	TID     uint32     `json:"tid"`
	Comm    event.Comm `json:"comm"`
	UID     uint32     `json:"uid"` // the caller's, before the call
	Syscall string     `json:"syscall"`
	Args    Args       `json:"args"`
	// Ret is the return value: 0 or -errno, or for setfsuid/setfsgid the
	// previous fsuid/fsgid.
	Ret int64 `json:"ret"`
}

// Args are a call's ids by name; -1 means "leave unchanged".
type Args struct {
	call *call
	vals [3]int32
}

// Get returns the value of the named argument.
func (a Args) Get(name string) (int32, bool) {
	if a.call == nil {
		return 0, false
	}
	for i, n := range a.call.args {
		if n == name {
			return a.vals[i], true
		}
	}
	return 0, false
}

// AppendText appends "ruid=-1 euid=0 suid=-1".
func (a Args) AppendText(b []byte) []byte {
	if a.call == nil {
		return b
	}
	for i, n := range a.call.args {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, n...)
		b = append(b, '=')
		b = strconv.AppendInt(b, int64(a.vals[i]), 10)
	}
	return b
}

// MarshalJSON gives {"ruid":-1,"euid":0,"suid":-1}.
func (a Args) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	if a.call != nil {
		for i, n := range a.call.args {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, n)
			b = append(b, ':')
			b = strconv.AppendInt(b, int64(a.vals[i]), 10)
		}
	}
	return append(b, '}'), nil
}

// Config selects what is traced.
type Config struct {
	PID  int    // 0 = all
	Hook string // restrict the hook chain to these kinds
}

func hooks() []probe.Hook {
	h := probe.Hook{Kind: probe.Tracepoint, Name: "tracepoint syscalls:sys_{enter,exit}_set*id"}
	for _, c := range calls {
		h.Attachments = append(h.Attachments,
			probe.TracepointAt("tp_enter", "syscalls", "sys_enter_"+c.name),
			probe.TracepointAt("tp_exit", "syscalls", "sys_exit_"+c.name))
	}
	return []probe.Hook{h}
}

// New loads and attaches setuids.
func New(cfg Config) (*probe.Tracer[Event], error) {
	spec, err := loadSetuids()
	if err != nil {
		return nil, fmt.Errorf("load setuids spec: %w", err)
	}
	s, err := probe.Open(spec, hooks(), probe.Options{Tool: "setuids", Only: cfg.Hook,
		Configure: func(cs *ebpf.CollectionSpec) error { return probe.SetTgid(cs, cfg.PID) }})
	if err != nil {
		return nil, err
	}
	byNr := callsByNr(sysnames.Native())
	t := &probe.Tracer[Event]{Session: s}
	t.Decode = func(raw []byte, e *Event) bool { return decode(s, byNr, raw, e) }
	return t, nil
}

// Probe attaches with defaults and no reader, for `owl tools`.
func Probe(only string) (*probe.Session, error) {
	spec, err := loadSetuids()
	if err != nil {
		return nil, err
	}
	return probe.Open(spec, hooks(), probe.Options{Tool: "setuids", Only: only, NoReader: true})
}

// callsByNr maps this architecture's syscall numbers to the calls.
func callsByNr(arch string) map[int32]*call {
	m := make(map[int32]*call, len(calls))
	for i := range calls {
		if nr, ok := sysnames.SyscallNr(arch, calls[i].name); ok {
			m[int32(nr)] = &calls[i]
		}
	}
	return m
}

func decode(s *probe.Session, byNr map[int32]*call, raw []byte, e *Event) bool {
	r, ok := probe.View[setuidsEvent](raw)
	if !ok {
		return false
	}
	c := byNr[r.Nr]
	if c == nil {
		return false
	}
	*e = Event{
		Time:    s.Time(r.TsNs),
		PID:     r.Pid,
		TID:     r.Tid,
		Comm:    r.Comm,
		UID:     r.Uid,
		Syscall: c.name,
		Args:    Args{call: c, vals: [3]int32{int32(r.Args[0]), int32(r.Args[1]), int32(r.Args[2])}},
		Ret:     r.Ret,
	}
	return true
}

// AppendResult appends "(0)", "(-EPERM)" or, for setfs*, "(prevuid=1000)".
func (e *Event) AppendResult(b []byte) []byte {
	b = append(b, '(')
	switch {
	case e.Args.call != nil && e.Args.call.prev != "":
		b = append(b, e.Args.call.prev...)
		b = append(b, '=')
		b = strconv.AppendInt(b, e.Ret, 10)
	case e.Ret < 0:
		b = append(b, '-')
		b = append(b, sysnames.Errno(int(-e.Ret))...)
	default:
		b = strconv.AppendInt(b, e.Ret, 10)
	}
	return append(b, ')')
}
