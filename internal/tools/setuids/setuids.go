// Package setuids traces the eight privilege-changing syscalls: setuid,
// setgid, setreuid, setregid, setresuid, setresgid, setfsuid, setfsgid.
package setuids

import (
	"strconv"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/sysnames"
	"github.com/owlbpf/owl/internal/tool"
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

// Event is one completed call. Its task part was taken at entry: UID is
// the caller's uid before the call.
type Event struct {
	event.Task
	Syscall string `json:"syscall"`
	Args    Args   `json:"args"`
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

// Config is setuids' own configuration: it has none; the task filters are
// in tool.Options.
type Config struct{}

func hooks(Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Tracepoint, Name: "tracepoint syscalls:sys_{enter,exit}_set*id"}
	for _, c := range calls {
		h.Attachments = append(h.Attachments,
			probe.TracepointAt(setuidsProgTpEnter, "syscalls", "sys_enter_"+c.name),
			probe.TracepointAt(setuidsProgTpExit, "syscalls", "sys_exit_"+c.name))
	}
	return []probe.Hook{h}
}

var spec = tool.Spec[Config, Event]{
	Name:    "setuids",
	Summary: "Trace privilege-changing syscalls (set*uid, set*gid, setfs*)",
	Long: `Trace the privilege-changing syscalls setuid, setgid, setreuid, setregid,
setresuid, setresgid, setfsuid and setfsgid, with their arguments and result.
UID is the caller's uid when it made the call. An argument of -1 means
"unchanged". The result is 0 or -ERRNO, except for setfsuid and setfsgid,
which return the previous fsuid/fsgid: shown as (prevuid=N) / (prevgid=N).`,
	Task: true,
	// Syscall rate: a loop can make 300k events a second.
	RingBytes: 4 << 20,
	Load:      loadSetuids,
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Decoder: func(_ Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		byNr := callsByNr(sysnames.Native())
		return func(raw []byte, e *Event) bool { return decode(s, byNr, raw, e) }, nil
	},
}

// Tool is setuids' registry entry.
var Tool = tool.Register(&spec, command)

// Open loads and attaches setuids.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	return tool.Open(&spec, cfg, opts)
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
		Task:    s.Task(raw),
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
