// Package tcpreset traces TCP resets sent by this host; a burst of them to
// one remote address over many ports is a port scan.
package tcpreset

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// Event is one reset sent. A reset is sent by the kernel (often in
// softirq), not by a task that means anything, so it has no task part.
type Event struct {
	Time   event.Time `json:"time"`
	Laddr  netip.Addr `json:"laddr"`
	Lport  uint16     `json:"lport"`
	Raddr  netip.Addr `json:"raddr"`
	Rport  uint16     `json:"rport"`
	Family uint8      `json:"family"` // 4 or 6
	// State is the TCP state of the socket that sent the reset, "" (null in
	// JSON) when there was none, as for a closed port.
	State State `json:"state"`
	// Reason is the kernel's enum sk_rst_reason without its prefix, e.g.
	// NO_SOCKET; "" (null in JSON) on kernels before 6.10 and on the
	// fentry and kprobe hooks.
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

// Remote is one line of -s: what one remote address received in an
// interval.
type Remote struct {
	Time   event.Time `json:"time"`
	Raddr  netip.Addr `json:"raddr"`
	Resets uint64     `json:"resets"`
	Ports  int        `json:"ports"` // distinct local ports
}

// Config selects how resets are traced. The zero value streams each reset.
type Config struct {
	// Summary counts resets in the kernel per remote address and local
	// port instead of streaming them (-s); read them with Remotes.
	Summary bool
}

func hooks(Config) []probe.Hook {
	return []probe.Hook{
		{
			Kind:        probe.Tracepoint,
			Name:        "tracepoint tcp:tcp_send_reset",
			Attachments: []probe.Attachment{probe.TracepointAt(tcpresetProgTpSendReset, "tcp", "tcp_send_reset")},
			Check:       tracepointSeesClosedPorts,
		},
		{
			Kind: probe.Fentry,
			Name: "fentry tcp_v4_send_reset,tcp_v6_send_reset,tcp_send_active_reset",
			Attachments: []probe.Attachment{
				probe.TracingAt(tcpresetProgFentryV4SendReset, "tcp_v4_send_reset"),
				probe.Optional(probe.TracingAt(tcpresetProgFentryV6SendReset, "tcp_v6_send_reset")),
				probe.Optional(probe.TracingAt(tcpresetProgFentryActiveReset, "tcp_send_active_reset")),
			},
		},
		{
			Kind: probe.Kprobe,
			Name: "kprobe tcp_v4_send_reset,tcp_v6_send_reset,tcp_send_active_reset",
			Attachments: []probe.Attachment{
				probe.KprobeAt(tcpresetProgKpV4SendReset, "tcp_v4_send_reset"),
				probe.Optional(probe.KprobeAt(tcpresetProgKpV6SendReset, "tcp_v6_send_reset")),
				probe.Optional(probe.KprobeAt(tcpresetProgKpActiveReset, "tcp_send_active_reset")),
			},
		},
	}
}

// tracepointSeesClosedPorts rejects tcp:tcp_send_reset before Linux 6.10,
// where it fired only for resets sent by a socket, not for the closed-port
// resets a scan causes. Its 6.10 form is the one with a reason field.
func tracepointSeesClosedPorts() error {
	fields, err := probe.TracepointFormat("tcp", "tcp_send_reset")
	if err != nil {
		return err
	}
	if _, ok := fields["reason"]; !ok {
		return errors.New("before Linux 6.10 this tracepoint misses resets to closed ports")
	}
	return nil
}

var spec = tool.Spec[Config, Event]{
	Name:    "tcpreset",
	Group:   "security",
	Summary: "Trace TCP resets sent (port-scan detector)",
	Long: `Trace TCP resets (RST) sent by this host, IPv4 and IPv6. A closed port
answers a SYN with a reset, so a port scan shows as many resets to one remote
address over many local ports: -s prints that per remote address, counted in
the kernel (nothing is streamed).

The tracepoint is used from Linux 6.10 on (before, it misses resets to
closed ports); it alone gives the kernel's REASON, e.g. NO_SOCKET for a
closed port (- on the other hooks). STATE is the TCP state of the socket
that sent the reset, - when none did; in JSON, state and reason are null
when unknown. Resets are sent by the kernel, not by a task: there are no
task filters or fields; -4, -6 and -P (local ports) filter in the kernel.`,
	RingBytes: 1 << 20,
	Net:       true,
	Load:      loadTcpreset,
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: func(cfg Config, spec *ebpf.CollectionSpec) error {
		var v tcpresetVariableSpecs
		if err := spec.Assign(&v); err != nil {
			return err
		}
		return v.CountOnly.Set(cfg.Summary)
	},
	Stream: func(cfg Config) bool { return !cfg.Summary },
	Decoder: func(_ Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		return newDecoder(s), nil
	},
	Outputs: []tool.Output{{Flag: "-s", Value: Remote{}}},
}

// Tool is tcpreset's registry entry.
var Tool = tool.Register(&spec, command)

// Source is a running tcpreset.
type Source struct {
	*tool.Source[Event]
	resets *ebpf.Map

	mu   sync.Mutex
	prev tally
}

// Open loads and attaches tcpreset through the first hook that works.
func Open(cfg Config, opts tool.Options) (*Source, error) {
	src, err := tool.Open(&spec, cfg, opts)
	if err != nil {
		return nil, err
	}
	var m tcpresetMaps
	if err := src.Assign(&m); err != nil {
		src.Close()
		return nil, err
	}
	return &Source{Source: src, resets: m.Resets, prev: tally{}}, nil
}

// Remotes returns, per remote address, the resets and the distinct local
// ports they came from since the previous call (since Open for the first),
// most ports first (-s). The kernel's counts are cumulative: each call
// diffs them with the ones the previous call saw.
func (s *Source) Remotes(now time.Time) ([]Remote, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := map[netip.Addr]*Remote{}
	err := probe.Each(s.resets, func(k *tcpresetResetKey, n *uint64) { s.prev.add(rows, now, *k, *n) })
	if err != nil {
		return nil, err
	}
	return sorted(rows), nil
}

// tally is the cumulative count of each key as last read.
type tally map[tcpresetResetKey]uint64

// add records the cumulative count n of k and adds its growth since the
// last read, if any, to the line of its remote address: a key that grew is
// a local port of this interval.
func (t tally) add(rows map[netip.Addr]*Remote, now time.Time, k tcpresetResetKey, n uint64) {
	prev := t[k]
	if n <= prev {
		return
	}
	t[k] = n
	_, _, raddr := event.Addrs(k.Family, &k.Raddr, &k.Raddr)
	r := rows[raddr]
	if r == nil {
		r = &Remote{Time: event.Time{Time: now}, Raddr: raddr}
		rows[raddr] = r
	}
	r.Resets += n - prev
	r.Ports++
}

// sorted lists the lines, most ports first, then by address.
func sorted(rows map[netip.Addr]*Remote) []Remote {
	out := make([]Remote, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Ports != out[j].Ports {
			return out[i].Ports > out[j].Ports
		}
		return out[i].Raddr.Less(out[j].Raddr)
	})
	return out
}

// newDecoder returns the decoder of s's records. Reason names are read from
// the kernel's BTF, since the enum's values moved between releases: only
// the tracepoint gives reasons, and parsing the kernel's BTF costs ~50 ms,
// so that happens on the first event with a reason, not at start.
func newDecoder(s *probe.Session) func([]byte, *Event) bool {
	var (
		once    sync.Once
		reasons map[uint32]Reason
	)
	load := func() {
		if s.Hook.Kind == probe.Tracepoint && s.Runtime != nil {
			reasons = reasonNames(s.Runtime.BTF)
		}
	}
	return func(raw []byte, e *Event) bool {
		r, ok := probe.View[tcpresetEvent](raw)
		if !ok {
			return false
		}
		*e = Event{
			Time:  event.Time{Time: s.Time(r.TsNs)},
			Lport: r.Lport,
			Rport: r.Rport,
			State: State(r.State),
		}
		if r.HasReason != 0 {
			once.Do(load)
			e.Reason = reasonName(reasons, r.Reason)
		}
		e.Family, e.Laddr, e.Raddr = event.Addrs(r.Family, &r.Laddr, &r.Raddr)
		return true
	}
}

func reasonName(reasons map[uint32]Reason, v uint32) Reason {
	if name, ok := reasons[v]; ok {
		return name
	}
	return Reason(fmt.Sprintf("REASON_%d", v))
}

// reasonNames reads enum sk_rst_reason from the kernel's BTF, through the
// process's shared cache. Nil when the kernel has no such enum.
func reasonNames(cache *btf.Cache) map[uint32]Reason {
	spec, err := cache.Kernel()
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
