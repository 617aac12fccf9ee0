// Package tcpaccept traces passive TCP accepts (the book's tcpaccept).
package tcpaccept

import (
	"net/netip"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// Event is one accepted connection, seen in the accepting process.
type Event struct {
	event.Task
	Family uint8      `json:"family"` // 4 or 6
	Raddr  netip.Addr `json:"raddr"`
	Rport  uint16     `json:"rport"`
	Laddr  netip.Addr `json:"laddr"`
	Lport  uint16     `json:"lport"`
}

// Config selects what is traced; the task, family and (local) port filters
// are in tool.Options. tcpaccept has no settings of its own.
type Config struct{}

func hooks(Config) []probe.Hook {
	return []probe.Hook{
		{
			Kind: probe.Tracepoint,
			Name: "tracepoint syscalls:sys_exit_accept4,sys_exit_accept",
			Attachments: []probe.Attachment{
				probe.TracepointAt(tcpacceptProgTpExitAccept4, "syscalls", "sys_exit_accept4"),
				// accept(2) is absent on arm64, which only has accept4.
				probe.Optional(probe.TracepointAt(tcpacceptProgTpExitAccept, "syscalls", "sys_exit_accept")),
			},
		},
		{
			Kind:        probe.Fentry,
			Name:        "fexit inet_csk_accept",
			Attachments: []probe.Attachment{probe.TracingAt(tcpacceptProgFexitAccept, "inet_csk_accept")},
		},
		{
			Kind:        probe.Kprobe,
			Name:        "kretprobe inet_csk_accept",
			Attachments: []probe.Attachment{probe.KretprobeAt(tcpacceptProgKrpAccept, "inet_csk_accept")},
		},
	}
}

var spec = tool.Spec[Config, Event]{
	Name:    "tcpaccept",
	Summary: "Trace passive TCP accepts",
	Long: `Trace passive TCP accepts (accept(2)/accept4(2) returning a TCP socket),
IPv4 and IPv6, in the accepting process. -P selects local ports.

On the syscall-exit tracepoints the new fd is resolved to its socket through
the task's file table, so accepts that were already blocked when owl started
are seen too (return probes attached during a call never see it return).`,
	Task:      true,
	Net:       true,
	RingBytes: 1 << 20,
	Load:      loadTcpaccept,
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Decoder: func(_ Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		return func(raw []byte, e *Event) bool { return decode(s, raw, e) }, nil
	},
}

// Tool is tcpaccept's registry entry.
var Tool = tool.Register(&spec, command)

// Open loads and attaches tcpaccept through the first hook that works.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	return tool.Open(&spec, cfg, opts)
}

func decode(s *probe.Session, raw []byte, e *Event) bool {
	r, ok := probe.View[tcpacceptEvent](raw)
	if !ok {
		return false
	}
	*e = Event{
		Task:  s.Task(raw),
		Rport: r.Rport,
		Lport: r.Lport,
	}
	e.Family, e.Laddr, e.Raddr = event.Addrs(r.Family, &r.Laddr, &r.Raddr)
	return true
}
