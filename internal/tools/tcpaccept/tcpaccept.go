// Package tcpaccept traces passive TCP accepts (the book's tcpaccept).
package tcpaccept

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
)

// Event is one accepted connection, seen in the accepting process.
type Event struct {
	Time    time.Time  `json:"time"`
	PID     uint32     `json:"pid"`
	Comm    event.Comm `json:"comm"`
	UID     uint32     `json:"uid"`
	Family  uint8      `json:"family"` // 4 or 6
	Raddr   netip.Addr `json:"raddr"`
	Rport   uint16     `json:"rport"`
	Laddr   netip.Addr `json:"laddr"`
	Lport   uint16     `json:"lport"`
	KtimeNs uint64     `json:"-"`
}

// Config selects what is traced. The zero value traces every accept.
type Config struct {
	PID    int      // 0 = all
	Family int      // 0 = both, 4 or 6
	Ports  []uint16 // local ports; empty = all
	Hook   string   // restrict the hook chain to these kinds
}

var hooks = []probe.Hook{
	{
		Kind: probe.Tracepoint,
		Name: "tracepoint syscalls:sys_exit_accept4,sys_exit_accept",
		Attachments: []probe.Attachment{
			probe.TracepointAt("tp_exit_accept4", "syscalls", "sys_exit_accept4"),
			// accept(2) is absent on arm64, which only has accept4.
			probe.Optional(probe.TracepointAt("tp_exit_accept", "syscalls", "sys_exit_accept")),
		},
	},
	{
		Kind:        probe.Fentry,
		Name:        "fexit inet_csk_accept",
		Attachments: []probe.Attachment{probe.TracingAt("fexit_accept", "inet_csk_accept")},
	},
	{
		Kind:        probe.Kprobe,
		Name:        "kretprobe inet_csk_accept",
		Attachments: []probe.Attachment{probe.KretprobeAt("krp_accept", "inet_csk_accept")},
	},
}

func configure(cfg Config) func(*ebpf.CollectionSpec) error {
	return func(spec *ebpf.CollectionSpec) error {
		if err := probe.SetTgid(spec, cfg.PID); err != nil {
			return err
		}
		var family uint16
		switch cfg.Family {
		case 4:
			family = 2 // AF_INET
		case 6:
			family = 10 // AF_INET6
		}
		if err := spec.Variables["targ_family"].Set(family); err != nil {
			return fmt.Errorf("set targ_family: %w", err)
		}
		return spec.Variables["filter_ports"].Set(len(cfg.Ports) > 0)
	}
}

// New loads and attaches tcpaccept through the first hook that works.
func New(cfg Config) (*probe.Tracer[Event], error) {
	spec, err := loadTcpaccept()
	if err != nil {
		return nil, fmt.Errorf("load tcpaccept spec: %w", err)
	}
	s, err := probe.Open(spec, hooks, probe.Options{Tool: "tcpaccept", Only: cfg.Hook, Configure: configure(cfg)})
	if err != nil {
		return nil, err
	}
	for _, p := range cfg.Ports {
		if err := s.Coll.Maps["ports"].Put(p, uint8(1)); err != nil {
			s.Close()
			return nil, fmt.Errorf("set port filter: %w", err)
		}
	}
	t := &probe.Tracer[Event]{Session: s}
	t.Decode = func(raw []byte, e *Event) bool { return decode(s, raw, e) }
	return t, nil
}

// Probe attaches with defaults and no reader, for `owl tools`.
func Probe(only string) (*probe.Session, error) {
	spec, err := loadTcpaccept()
	if err != nil {
		return nil, err
	}
	return probe.Open(spec, hooks, probe.Options{Tool: "tcpaccept", Only: only, NoReader: true})
}

func decode(s *probe.Session, raw []byte, e *Event) bool {
	r, ok := probe.View[tcpacceptEvent](raw)
	if !ok {
		return false
	}
	*e = Event{
		Time:    s.Time(r.TsNs),
		KtimeNs: r.TsNs,
		PID:     r.Pid,
		Comm:    r.Comm,
		UID:     r.Uid,
		Rport:   r.Rport,
		Lport:   r.Lport,
	}
	e.Family, e.Laddr, e.Raddr = event.Addrs(r.Family, &r.Laddr, &r.Raddr)
	return true
}
