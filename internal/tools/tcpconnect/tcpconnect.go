// Package tcpconnect traces active TCP connects (the book's tcpconnect).
package tcpconnect

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
)

// Outcome is how a connect's handshake ended (with --outcome).
type Outcome uint8

const (
	OutcomeNone Outcome = iota
	Established
	Refused
	Timeout
	Failed
)

var outcomeNames = [...]string{"", "established", "refused", "timeout", "error"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// MarshalText makes JSON print the outcome's name.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Event is one connect.
type Event struct {
	Time   time.Time  `json:"time"`
	PID    uint32     `json:"pid"`
	Comm   event.Comm `json:"comm"`
	UID    uint32     `json:"uid"`
	Family uint8      `json:"family"` // 4 or 6
	Saddr  netip.Addr `json:"saddr"`
	// Sport is the local port; 0 when not yet chosen (the tracepoint hook
	// sees the connect before the port is bound; -L waits for it).
	Sport     uint16     `json:"sport"`
	Daddr     netip.Addr `json:"daddr"`
	Dport     uint16     `json:"dport"`
	Outcome   Outcome    `json:"outcome,omitempty"`
	LatencyUS float64    `json:"latency_us,omitempty"` // SYN sent to handshake end
	Errno     int32      `json:"errno,omitempty"`      // sk_err of a failed handshake
	KtimeNs   uint64     `json:"-"`                    // kernel monotonic time of the connect
}

// Config selects what is traced. The zero value traces every connect.
type Config struct {
	PID       int      // 0 = all
	UID       int      // -1 = all
	Family    int      // 0 = both, 4 or 6
	Ports     []uint16 // destination ports; empty = all
	LocalPort bool     // wait for the local port (-L)
	Outcome   bool     // wait for the handshake's result (--outcome)
	Hook      string   // restrict the hook chain to these kinds
}

// DefaultConfig traces every connect.
func DefaultConfig() Config { return Config{UID: -1} }

// setStateLayout is struct set_state_args of tcpconnect.bpf.c, which reads
// the tracepoint without CO-RE.
var setStateLayout = map[string]int{
	"skaddr": 8, "oldstate": 16, "newstate": 20, "sport": 24, "dport": 26,
	"family": 28, "protocol": 30, "saddr": 32, "daddr": 36, "saddr_v6": 40, "daddr_v6": 56,
}

func hooks(cfg Config) []probe.Hook {
	kp := probe.Hook{
		Kind: probe.Kprobe,
		Name: "kprobe tcp_v4_connect,tcp_v6_connect",
		Attachments: []probe.Attachment{
			probe.KprobeAt("kp_connect", "tcp_v4_connect"),
			probe.KretprobeAt("krp_connect", "tcp_v4_connect"),
			// IPv6 may be a module that is not loaded.
			probe.Optional(probe.KprobeAt("kp_connect", "tcp_v6_connect")),
			probe.Optional(probe.KretprobeAt("krp_connect", "tcp_v6_connect")),
		},
	}
	fexit := probe.Hook{
		Kind: probe.Fentry,
		Name: "fexit tcp_v4_connect,tcp_v6_connect",
		Attachments: []probe.Attachment{
			probe.TracingAt("fexit_v4_connect", "tcp_v4_connect"),
			probe.Optional(probe.TracingAt("fexit_v6_connect", "tcp_v6_connect")),
		},
	}
	if cfg.Outcome {
		done := probe.TracepointAt("tp_state_done", "sock", "inet_sock_set_state")
		for _, h := range []*probe.Hook{&fexit, &kp} {
			h.Name += " + tracepoint sock:inet_sock_set_state"
			h.Attachments = append(h.Attachments, done)
		}
	}
	tp := "tp_state"
	if cfg.Outcome {
		tp = "tp_state_outcome"
	}
	return []probe.Hook{
		{
			Kind:        probe.Tracepoint,
			Name:        "tracepoint sock:inet_sock_set_state",
			Attachments: []probe.Attachment{probe.TracepointAt(tp, "sock", "inet_sock_set_state")},
			Check:       probe.CheckLayout("sock", "inet_sock_set_state", setStateLayout),
		},
		fexit,
		kp,
	}
}

func configure(cfg Config) func(*ebpf.CollectionSpec) error {
	return func(spec *ebpf.CollectionSpec) error {
		if err := probe.SetTgid(spec, cfg.PID); err != nil {
			return err
		}
		set := map[string]any{
			"want_lport":   cfg.LocalPort,
			"want_outcome": cfg.Outcome,
			"filter_ports": len(cfg.Ports) > 0,
		}
		if cfg.UID >= 0 {
			set["targ_uid"] = uint32(cfg.UID)
		}
		switch cfg.Family {
		case 4:
			set["targ_family"] = uint16(2) // AF_INET
		case 6:
			set["targ_family"] = uint16(10) // AF_INET6
		}
		for name, v := range set {
			if err := spec.Variables[name].Set(v); err != nil {
				return fmt.Errorf("set %s: %w", name, err)
			}
		}
		return nil
	}
}

// New loads and attaches tcpconnect through the first hook that works.
func New(cfg Config) (*probe.Tracer[Event], error) {
	spec, err := loadTcpconnect()
	if err != nil {
		return nil, fmt.Errorf("load tcpconnect spec: %w", err)
	}
	s, err := probe.Open(spec, hooks(cfg), probe.Options{Tool: "tcpconnect", Only: cfg.Hook, Configure: configure(cfg)})
	if err != nil {
		return nil, err
	}
	if len(cfg.Ports) > 0 {
		m := s.Coll.Maps["ports"]
		for _, p := range cfg.Ports {
			if err := m.Put(p, uint8(1)); err != nil {
				s.Close()
				return nil, fmt.Errorf("set port filter: %w", err)
			}
		}
	}
	t := &probe.Tracer[Event]{Session: s}
	t.Decode = func(raw []byte, e *Event) bool {
		if !decode(s, raw, e) {
			return false
		}
		if !cfg.Outcome {
			// -L alone also waits for the handshake; report only what was asked.
			e.Outcome, e.LatencyUS, e.Errno = OutcomeNone, 0, 0
		}
		return true
	}
	return t, nil
}

// Probe attaches with defaults and no reader, for `owl tools`.
func Probe(only string) (*probe.Session, error) {
	spec, err := loadTcpconnect()
	if err != nil {
		return nil, err
	}
	return probe.Open(spec, hooks(DefaultConfig()), probe.Options{Tool: "tcpconnect", Only: only, NoReader: true})
}

func decode(s *probe.Session, raw []byte, e *Event) bool {
	r, ok := probe.View[tcpconnectEvent](raw)
	if !ok {
		return false
	}
	*e = Event{
		Time:    s.Time(r.TsNs),
		KtimeNs: r.TsNs,
		PID:     r.Pid,
		Comm:    r.Comm,
		UID:     r.Uid,
		Sport:   r.Sport,
		Dport:   r.Dport,
		Outcome: Outcome(r.Outcome),
		Errno:   r.Err,
	}
	e.Family, e.Saddr, e.Daddr = event.Addrs(r.Family, &r.Saddr, &r.Daddr)
	if e.Outcome != OutcomeNone {
		e.LatencyUS = float64(r.LatencyNs) / 1e3
	}
	return true
}
