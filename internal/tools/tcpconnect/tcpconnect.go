// Package tcpconnect traces active TCP connects (the book's tcpconnect).
package tcpconnect

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/caps"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/pyframes"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
)

// Outcome is how a connect's handshake ended (with --outcome), or why its
// end is not known. The values are OUTCOME_* of tcpconnect.bpf.c.
type Outcome uint8

const (
	OutcomeNone Outcome = iota
	Established
	Refused // ECONNREFUSED: the peer reset the SYN
	Timeout // ETIMEDOUT: no answer to the SYN and its retries
	Failed  // another error, in Errno (EHOSTUNREACH, ENETUNREACH from ICMP...)
	// Aborted: given up on this host with no error: the socket was closed
	// (close(2), the application's own connect timeout) or disconnected
	// before the handshake ended, or connect(2) failed locally after the
	// SYN_SENT state was entered (e.g. EADDRNOTAVAIL: no free local port).
	Aborted
	// Pending: still waiting for its handshake when the run ended.
	Pending
	// Untracked: delivered when it started, without its local port (on
	// the tracepoint hook) or end, because the table of connects waiting
	// for their handshake was full (more than 65536 at once).
	Untracked
)

// pendingSize is max_entries of the table of connects waiting for their
// handshake (tcpconnect.bpf.c): past it, connects are delivered Untracked.
const pendingSize = 65536

var outcomeNames = [...]string{"", "established", "refused", "timeout", "error", "aborted", "pending", "untracked"}

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
	event.Task
	Family uint8      `json:"family"` // 4 or 6
	Saddr  netip.Addr `json:"saddr"`
	// Sport is the local port; 0 when not yet chosen (the tracepoint hook
	// sees the connect before the port is bound; -L waits for it).
	Sport     uint16     `json:"sport"`
	Daddr     netip.Addr `json:"daddr"`
	Dport     uint16     `json:"dport"`
	Outcome   Outcome    `json:"outcome,omitempty"`    // with --outcome; pending and untracked always
	LatencyUS float64    `json:"latency_us,omitempty"` // SYN sent to handshake end
	Errno     int32      `json:"errno,omitempty"`      // sk_err of a failed handshake (outcome error)
	// UStack is the connecting thread's user stack (--ustack), innermost
	// first, with Python frames ("lang": "python") in place of the
	// interpreter's.
	UStack []syms.Frame `json:"ustack,omitempty"`
}

// Count is how many connects went from one address to one address and
// port (-c), counted in the kernel.
type Count struct {
	Saddr netip.Addr `json:"saddr"`
	Daddr netip.Addr `json:"daddr"`
	Dport uint16     `json:"dport"`
	Count uint64     `json:"count"`
}

// Config selects what is traced; the task, family and port filters are in
// tool.Options. The zero value traces every connect.
type Config struct {
	LocalPort bool // wait for the local port (-L)
	Outcome   bool // wait for the handshake's result (--outcome)
	Count     bool // count in the kernel instead of streaming (-c)
	UStack    bool // the user stack of each connect (--ustack; not with Count)
}

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
			probe.KprobeAt(tcpconnectProgKpConnect, "tcp_v4_connect"),
			probe.KretprobeAt(tcpconnectProgKrpConnect, "tcp_v4_connect"),
			// IPv6 may be a module that is not loaded.
			probe.Optional(probe.KprobeAt(tcpconnectProgKpConnect, "tcp_v6_connect")),
			probe.Optional(probe.KretprobeAt(tcpconnectProgKrpConnect, "tcp_v6_connect")),
		},
	}
	fexit := probe.Hook{
		Kind: probe.Fentry,
		Name: "fexit tcp_v4_connect,tcp_v6_connect",
		Attachments: []probe.Attachment{
			probe.TracingAt(tcpconnectProgFexitV4Connect, "tcp_v4_connect"),
			probe.Optional(probe.TracingAt(tcpconnectProgFexitV6Connect, "tcp_v6_connect")),
		},
	}
	if cfg.Outcome {
		done := probe.TracepointAt(tcpconnectProgTpStateDone, "sock", "inet_sock_set_state")
		for _, h := range []*probe.Hook{&fexit, &kp} {
			h.Name += " + tracepoint sock:inet_sock_set_state"
			h.Attachments = append(h.Attachments, done)
		}
	}
	tp := tcpconnectProgTpState
	if cfg.Outcome {
		tp = tcpconnectProgTpStateOutcome
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

var spec = tool.Spec[Config, Event]{
	Name:    "tcpconnect",
	Group:   "security",
	Summary: "Trace active TCP connects",
	Long: `Trace active TCP connects (connect(2) to a TCP socket), IPv4 and IPv6.

On the tracepoint (CLOSE->SYN_SENT, in the connecting task) the local port
is not chosen yet: -L and --outcome hold each event until its handshake
ends, so the port is real (sport is 0 in JSON without -L). With -c the
kernel counts connects per source, destination and port; nothing is
streamed.

Outcomes (--outcome): established; refused (ECONNREFUSED: reset by the
peer); timeout (ETIMEDOUT: the SYN was never answered); error, with its
errno (an ICMP error such as EHOSTUNREACH); aborted: given up on this host
with no error (the socket was closed, e.g. at the application's own connect
timeout, or disconnected, or connect(2) failed locally: EADDRNOTAVAIL);
pending: still waiting for its handshake when tracing ended (Ctrl-C, -d);
untracked: printed when it started, without its end, because over 65536
connects were waiting at once (stderr says how many). With -L alone, pending
and untracked connects are printed too, with LPORT 0 on the tracepoint hook
("outcome" in JSON says why): a connect is never dropped for want of its end.

--ustack (BCC's -U is the UID column) prints the connecting thread's user
stack under each event (not with -c). Python processes show their Python frames (function, file:line; "lang":
"python" in JSON) in place of the interpreter's native frames, named from
the process's memory when the event is read. Up to 2048 distinct
native stacks are kept; a stack that finds no room is left out and
counted (stack_unavailable).`,
	Task:      true,
	Net:       true,
	RingBytes: 1 << 20,
	Load:      loadTcpconnect,
	Caps:      func(c Config, _ tool.Options) caps.Set { return caps.If(c.UStack, caps.SysPtrace) }, // --ustack: every process's maps
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: func(cfg Config, spec *ebpf.CollectionSpec) error {
		var (
			v tcpconnectVariableSpecs
			m tcpconnectMapSpecs
		)
		if err := errors.Join(spec.Assign(&v), spec.Assign(&m)); err != nil {
			return err
		}
		// Tables this config never uses get one entry: a table that
		// allocates no entry up front still allocates its buckets (64k
		// for pending: ~2 ms of start-up).
		if !cfg.Count {
			m.Counts.MaxEntries = 1
		}
		if !cfg.LocalPort && !cfg.Outcome {
			m.Pending.MaxEntries = 1
		}
		if _, kprobe := spec.Programs[tcpconnectProgKpConnect]; !kprobe {
			m.Connecting.MaxEntries = 1
		}
		return errors.Join(v.WantLport.Set(cfg.LocalPort), v.WantOutcome.Set(cfg.Outcome), v.CountOnly.Set(cfg.Count),
			v.WantUstack.Set(cfg.UStack && !cfg.Count), pyframes.ConfigureUser(spec, cfg.UStack && !cfg.Count))
	},
	Stream: func(cfg Config) bool { return !cfg.Count },
	// A plain hash that evicts nothing (see tcpconnect.bpf.c): a connect
	// that finds it full is delivered at once, untracked; what it still
	// holds at the end is delivered by Source.Run.
	Pending: tcpconnectMapPending,
	Held:    func(_ Config, s *probe.Session, record func([]byte)) error { return takeHeld(s, record) },
	Decoder: func(cfg Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		var us *pyframes.UserStacks
		if cfg.UStack && !cfg.Count {
			var err error
			if us, err = pyframes.NewUser(s.Assign); err != nil {
				return nil, err
			}
		}
		return func(raw []byte, e *Event) bool {
			if !decode(s, us, raw, e) {
				return false
			}
			if !cfg.Outcome && e.Outcome != Untracked && e.Outcome != Pending {
				// -L alone also waits for the handshake; report only
				// what was asked, and why a port is missing.
				e.Outcome, e.LatencyUS, e.Errno = OutcomeNone, 0, 0
			}
			return true
		}, nil
	},
	Outputs: []tool.Output{{Flag: "-c", Value: Count{}}},
}

// Tool is tcpconnect's registry entry.
var Tool = tool.Register(&spec, command)

// Source is a running tcpconnect.
type Source struct {
	*tool.Source[Event]
}

// Open loads and attaches tcpconnect through the first hook that works.
func Open(cfg Config, opts tool.Options) (*Source, error) {
	src, err := tool.Open(&spec, cfg, opts)
	if err != nil {
		return nil, err
	}
	return &Source{Source: src}, nil
}

// takeHeld takes every connect still waiting for its handshake out of the
// kernel's table and hands it to record as a ring record with outcome
// pending (record may keep raw). The BPF side delivers an entry only when
// its own delete succeeds, so each connect comes out once: from the ring
// or from here. A batch lookup-and-delete walks the buckets in order,
// whatever the BPF side adds or removes meanwhile.
func takeHeld(s *probe.Session, record func(raw []byte)) error {
	var m tcpconnectMaps
	if err := s.Assign(&m); err != nil {
		return err
	}
	var (
		cursor ebpf.MapBatchCursor
		keys   = make([]uint64, 256)
		vals   = make([]tcpconnectEvent, 256)
	)
	for {
		n, err := m.Pending.BatchLookupAndDelete(&cursor, keys, vals, nil)
		for i := range vals[:n] {
			r := vals[i]
			r.Outcome = uint8(Pending)
			record(unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r)))
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("take the connects still waiting from %s: %w", m.Pending, err)
		}
	}
}

// Counts returns the connects counted so far (-c), most first.
func (s *Source) Counts() ([]Count, error) {
	var m tcpconnectMaps
	if err := s.Assign(&m); err != nil {
		return nil, err
	}
	var counts []Count
	err := probe.Each(m.Counts, func(k *tcpconnectCountKey, n *uint64) {
		c := Count{Dport: k.Dport, Count: *n}
		_, c.Saddr, c.Daddr = event.Addrs(k.Family, &k.Saddr, &k.Daddr)
		counts = append(counts, c)
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(counts, func(i, j int) bool {
		a, b := counts[i], counts[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Dport != b.Dport {
			return a.Dport < b.Dport
		}
		return a.Daddr.Less(b.Daddr)
	})
	return counts, nil
}

func decode(s *probe.Session, us *pyframes.UserStacks, raw []byte, e *Event) bool {
	r, ok := probe.View[tcpconnectEvent](raw)
	if !ok {
		return false
	}
	*e = Event{
		Task:    s.Task(raw),
		Sport:   r.Sport,
		Dport:   r.Dport,
		Outcome: Outcome(r.Outcome),
		Errno:   r.Err,
	}
	e.Family, e.Saddr, e.Daddr = event.Addrs(r.Family, &r.Saddr, &r.Daddr)
	if e.Outcome != OutcomeNone && e.Outcome != Pending && e.Outcome != Untracked {
		e.LatencyUS = float64(r.LatencyNs) / 1e3
	}
	if us != nil {
		e.UStack = us.Frames(r.Task.Pid, r.Ustack.Native, r.Ustack.Python)
	}
	return true
}
