// Package tcpreset traces TCP resets sent by this host; a burst of them to
// one remote address over many ports is a port scan.
package tcpreset

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf/btf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
)

// Event is one reset sent.
type Event struct {
	Time   time.Time  `json:"time"`
	Laddr  netip.Addr `json:"laddr"`
	Lport  uint16     `json:"lport"`
	Raddr  netip.Addr `json:"raddr"`
	Rport  uint16     `json:"rport"`
	Family uint8      `json:"family"` // 4 or 6
	// State is the TCP state of the socket that sent the reset, "" (null in
	// JSON) when there was none, as for a closed port.
	State State `json:"state"`
	// Reason is the kernel's enum sk_rst_reason without its prefix, e.g.
	// NO_SOCKET; "" (null in JSON) on kernels before 6.10.
	Reason Reason `json:"reason"`
}

// State is a TCP state number (include/net/tcp_states.h).
type State uint8

var stateNames = [...]string{"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV", "BOUND_INACTIVE"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("STATE_%d", uint8(s))
}

// MarshalJSON prints the name, or null when there was no socket.
func (s State) MarshalJSON() ([]byte, error) { return jsonName(s.String()), nil }

// Reason is a reset reason's name; it is a string because the enum's numbers
// change between kernel versions.
type Reason string

// MarshalJSON prints the name, or null when the kernel gives none.
func (r Reason) MarshalJSON() ([]byte, error) { return jsonName(string(r)), nil }

func jsonName(s string) []byte {
	if s == "" {
		return []byte("null")
	}
	return []byte(`"` + s + `"`)
}

// Config selects how resets are traced.
type Config struct {
	Hook string // restrict the hook chain to these kinds
}

var hooks = []probe.Hook{
	{
		Kind:        probe.Tracepoint,
		Name:        "tracepoint tcp:tcp_send_reset",
		Attachments: []probe.Attachment{probe.TracepointAt("tp_send_reset", "tcp", "tcp_send_reset")},
		Check:       tracepointSeesClosedPorts,
	},
	{
		Kind: probe.Fentry,
		Name: "fentry tcp_v4_send_reset,tcp_v6_send_reset,tcp_send_active_reset",
		Attachments: []probe.Attachment{
			probe.TracingAt("fentry_v4_send_reset", "tcp_v4_send_reset"),
			probe.Optional(probe.TracingAt("fentry_v6_send_reset", "tcp_v6_send_reset")),
			probe.Optional(probe.TracingAt("fentry_active_reset", "tcp_send_active_reset")),
		},
	},
	{
		Kind: probe.Kprobe,
		Name: "kprobe tcp_v4_send_reset,tcp_v6_send_reset,tcp_send_active_reset",
		Attachments: []probe.Attachment{
			probe.KprobeAt("kp_v4_send_reset", "tcp_v4_send_reset"),
			probe.Optional(probe.KprobeAt("kp_v6_send_reset", "tcp_v6_send_reset")),
			probe.Optional(probe.KprobeAt("kp_active_reset", "tcp_send_active_reset")),
		},
	},
}

// tracepointSeesClosedPorts rejects tcp:tcp_send_reset before Linux 6.10,
// where it fired only for resets sent by a socket, not for the closed-port
// resets a scan causes. Its 6.10 form is the one with a reason field.
func tracepointSeesClosedPorts() error {
	format, err := os.ReadFile("/sys/kernel/tracing/events/tcp/tcp_send_reset/format")
	if err != nil {
		return fmt.Errorf("read tracepoint format: %w", err)
	}
	if !strings.Contains(string(format), " reason;") {
		return fmt.Errorf("before Linux 6.10 this tracepoint misses resets to closed ports")
	}
	return nil
}

// New loads and attaches tcpreset through the first hook that works.
func New(cfg Config) (*probe.Tracer[Event], error) {
	spec, err := loadTcpreset()
	if err != nil {
		return nil, fmt.Errorf("load tcpreset spec: %w", err)
	}
	s, err := probe.Open(spec, hooks, probe.Options{Tool: "tcpreset", Only: cfg.Hook})
	if err != nil {
		return nil, err
	}
	reasons := reasonNames()
	t := &probe.Tracer[Event]{Session: s}
	t.Decode = func(raw []byte, e *Event) bool { return decode(s, reasons, raw, e) }
	return t, nil
}

// Probe attaches with defaults and no reader, for `owl tools`.
func Probe(only string) (*probe.Session, error) {
	spec, err := loadTcpreset()
	if err != nil {
		return nil, err
	}
	return probe.Open(spec, hooks, probe.Options{Tool: "tcpreset", Only: only, NoReader: true})
}

// reasonNames reads enum sk_rst_reason from the kernel's BTF, since its
// values moved between releases. Nil when the kernel has no such enum.
func reasonNames() map[uint32]Reason {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return nil
	}
	var enum *btf.Enum
	if err := spec.TypeByName("sk_rst_reason", &enum); err != nil {
		return nil
	}
	names := make(map[uint32]Reason, len(enum.Values))
	for _, v := range enum.Values {
		names[uint32(v.Value)] = Reason(strings.TrimPrefix(v.Name, "SK_RST_REASON_"))
	}
	return names
}

func decode(s *probe.Session, reasons map[uint32]Reason, raw []byte, e *Event) bool {
	r, ok := probe.View[tcpresetEvent](raw)
	if !ok {
		return false
	}
	*e = Event{
		Time:  s.Time(r.TsNs),
		Lport: r.Lport,
		Rport: r.Rport,
		State: State(r.State),
	}
	if r.HasReason != 0 {
		if name, ok := reasons[r.Reason]; ok {
			e.Reason = name
		} else {
			e.Reason = Reason(fmt.Sprintf("REASON_%d", r.Reason))
		}
	}
	e.Family, e.Laddr, e.Raddr = event.Addrs(r.Family, &r.Laddr, &r.Raddr)
	return true
}
