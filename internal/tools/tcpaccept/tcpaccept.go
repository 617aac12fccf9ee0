// Package tcpaccept traces passive TCP accepts (the book's tcpaccept).
package tcpaccept

import (
	"errors"
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
	syscalls := []probe.Attachment{
		probe.TracepointAt(tcpacceptProgTpExitAccept4, "syscalls", "sys_exit_accept4"),
		// accept(2) is absent on arm64, which only has accept4.
		probe.Optional(probe.TracepointAt(tcpacceptProgTpExitAccept, "syscalls", "sys_exit_accept")),
	}
	return []probe.Hook{
		{
			Kind: probe.Tracepoint,
			Name: "tracepoint syscalls:sys_exit_accept4,sys_exit_accept + io_uring:io_uring_submit_req,io_uring_task_add,io_uring_complete",
			Attachments: append(syscalls[:len(syscalls):len(syscalls)],
				// One of the two exists (checked): the name changed in 6.3.
				probe.Optional(probe.TracepointAt(tcpacceptProgTpUringSubmit, "io_uring", "io_uring_submit_req")),
				probe.Optional(probe.TracepointAt(tcpacceptProgTpUringSubmit, "io_uring", "io_uring_submit_sqe")),
				probe.TracepointAt(tcpacceptProgTpUringTaskAdd, "io_uring", "io_uring_task_add"),
				probe.TracepointAt(tcpacceptProgTpUringComplete, "io_uring", "io_uring_complete")),
			Check: checkUringTracepoints,
		},
		{
			// For kernels built without io_uring, where the io_uring programs
			// cannot load (their types are missing) and there is nothing to
			// miss. Where io_uring exists, the inet_csk_accept hooks below
			// see its accepts and come first.
			Kind:        probe.Tracepoint,
			Name:        "tracepoint syscalls:sys_exit_accept4,sys_exit_accept (no io_uring)",
			Attachments: syscalls,
			Check: func() error {
				if _, err := probe.TracepointFormat("io_uring", "io_uring_complete"); err == nil {
					return errors.New("this kernel has io_uring, whose accepts this hook would miss")
				}
				return nil
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

// uringReqLayout is struct uring_req_args of tcpaccept.bpf.c.
var uringReqLayout = map[string]int{"ctx": 8, "req": 16, "user_data": 24, "opcode": 32}

// checkUringTracepoints checks the layouts of io_uring_task_add and of the
// submit tracepoint (io_uring_submit_req since 6.3, io_uring_submit_sqe
// before).
func checkUringTracepoints() error {
	if err := probe.CheckLayout("io_uring", "io_uring_task_add", uringReqLayout)(); err != nil {
		return err
	}
	for _, name := range []string{"io_uring_submit_req", "io_uring_submit_sqe"} {
		if _, err := probe.TracepointFormat("io_uring", name); err == nil {
			return probe.CheckLayout("io_uring", name, uringReqLayout)()
		}
	}
	return errors.New("no tracepoint io_uring:io_uring_submit_req or io_uring:io_uring_submit_sqe")
}

var spec = tool.Spec[Config, Event]{
	Name:    "tcpaccept",
	Group:   "security",
	Summary: "Trace passive TCP accepts",
	Long: `Trace passive TCP accepts (accept(2), accept4(2) and io_uring's
IORING_OP_ACCEPT returning a TCP or MPTCP socket), IPv4 and IPv6, in the
accepting process. -P selects local ports.

On the syscall-exit tracepoints the new fd is resolved to its socket through
the task's file table, so accepts that were already blocked when owl started
are seen too (return probes attached during a call never see it return).
io_uring accepts, which make no accept syscall, are seen when they complete,
multishot and direct-descriptor ones included; one that io_uring finishes in a
worker thread shows the process's PID with that thread's name (iou-wrk-TID).
Not seen there: an io_uring accept submitted with IOSQE_CQE_SKIP_SUCCESS,
which posts no completion (the inet_csk_accept hooks see it).

io_uring accepts in flight are kept in a table (2048 entries) for the
completions of multishot accepts, which carry no request. One evicted from
it (more in flight at once) is counted as pending_partial and still reported:
a single-shot accept at its completion, a multishot one learned again when a
connection wakes it. Only an accept evicted between that wakeup and its
completion (2048 others learned in between) would go unseen.`,
	Task:      true,
	Net:       true,
	RingBytes: 1 << 20,
	Load:      loadTcpaccept,
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Decoder: func(_ Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		return func(raw []byte, e *Event) bool { return decode(s, raw, e) }, nil
	},
	// io_uring accepts in flight, for the completions of multishot accepts
	// that carry no request. An evicted accept is still reported: a
	// single-shot one from its completion, which carries the request; a
	// multishot one is learned again when a connection wakes it, before
	// it completes. The entry is a part lost, not the event.
	Pending:        tcpacceptMapUringAccepts,
	PendingPartial: true,
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
