// Package execsnoop traces new programs (BCC's execsnoop): each exec with
// its parent, result and whole argument list, read from the new program's
// own image when the exec succeeds.
package execsnoop

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"unsafe"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// Limits of the BPF side (execsnoop.bpf.c).
const (
	// ArgsBytes is how many bytes of argv (NULs included) an event
	// carries; a longer argv is cut there and marked truncated.
	ArgsBytes = 32768
	// FailedArgs is how many arguments of a failed exec are read.
	FailedArgs = 256
	// DefaultMaxArgs is BCC's --max-args.
	DefaultMaxArgs = 20
)

// Str is a string chosen by a process (a file name, an argument): printed
// in text and JSON with control, non-printable and invalid bytes and the
// backslash escaped as \xNN (event.AppendEscaped), reversibly.
type Str string

// Append appends s escaped.
func (s Str) Append(b []byte) []byte { return event.AppendEscaped(b, []byte(s)) }

// MarshalText gives s escaped, so that JSON carries it as text shows it.
func (s Str) MarshalText() ([]byte, error) { return s.Append(nil), nil }

// Event is one exec. Its task part is the new program's (COMM is its
// name); for a failed exec, the caller's.
type Event struct {
	event.Task
	PPID uint32 `json:"ppid"`
	// Ret is 0, or -errno for a failed exec (-x).
	Ret int32 `json:"ret"`
	// Filename is the file exec'd, as the kernel resolved it for a
	// successful exec (not argv[0], which the caller chooses); for a
	// failed one, as the caller gave it.
	Filename Str   `json:"filename"`
	Args     []Str `json:"args"`
	// Truncated: the argument list went on beyond Args (past --max-args,
	// ArgsBytes bytes or, failed, FailedArgs arguments).
	Truncated bool `json:"args_truncated"`
	// Unreadable: part of a failed exec's argv could not be read (Args
	// has what could); successful execs read the new image, which does
	// not fail.
	Unreadable bool `json:"args_unreadable,omitempty"`
	// Stdio: the TCP/UDP sockets behind fds 0, 1 and 2 of the new image, if any.
	Stdio []StdioSocket `json:"stdio_sockets,omitempty"`
}

// StdioSocket is a TCP or UDP socket (IPv4 or IPv6) that a new program
// has as its standard input, output or error, as the kernel holds it
// when the program starts: a shell whose stdio is a TCP connection is
// what a reverse shell looks like. Unix sockets, pipes and files are not
// reported; failed execs (-x) have none.
type StdioSocket struct {
	FD       uint8      `json:"fd"`       // 0, 1 or 2
	Family   uint8      `json:"family"`   // 4 or 6
	Protocol string     `json:"protocol"` // "tcp" or "udp"
	Laddr    netip.Addr `json:"laddr"`
	Lport    uint16     `json:"lport"`
	Raddr    netip.Addr `json:"raddr"`
	Rport    uint16     `json:"rport"`
}

// Config is execsnoop's own configuration; -p, -u, --cgroup and --mntns
// are in tool.Options.
type Config struct {
	Fails   bool // -x: also failed execs
	MaxArgs int  // --max-args: at most this many arguments per event (0: DefaultMaxArgs)
	PPID    int  // -P: only children of this process (0: any)
	// Name (-n) keeps execs whose command name matches; Line (-l) those
	// whose arguments, joined by spaces, match.
	Name, Line *regexp.Regexp
}

// hookName names every part: -x adds the syscall tracepoints.
const hookName = "tracepoint sched:sched_process_exec + syscalls:sys_{enter,exit}_execve{,at} (-x)"

// execLayout is struct exec_args of execsnoop.bpf.c.
var execLayout = map[string]int{"filename": 8, "pid": 12, "old_pid": 16}

func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{
		Kind:        probe.Tracepoint,
		Name:        hookName,
		Attachments: []probe.Attachment{probe.TracepointAt(execsnoopProgTpExec, "sched", "sched_process_exec")},
		Check:       probe.CheckLayout("sched", "sched_process_exec", execLayout),
	}
	if cfg.Fails {
		h.Attachments = append(h.Attachments,
			probe.TracepointAt(execsnoopProgTpEnterExecve, "syscalls", "sys_enter_execve"),
			probe.TracepointAt(execsnoopProgTpExit, "syscalls", "sys_exit_execve"),
			probe.TracepointAt(execsnoopProgTpEnterExecveat, "syscalls", "sys_enter_execveat"),
			probe.TracepointAt(execsnoopProgTpExit, "syscalls", "sys_exit_execveat"))
	}
	return []probe.Hook{h}
}

func configure(cfg Config, spec *ebpf.CollectionSpec) error {
	var m execsnoopMapSpecs
	var v execsnoopVariableSpecs
	if err := spec.Assign(&m); err != nil {
		return err
	}
	if err := spec.Assign(&v); err != nil {
		return err
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("possible CPUs: %w", err)
	}
	m.Bufs.MaxEntries = uint32(cpus)
	return v.TargPpid.Set(uint32(cfg.PPID))
}

var spec = tool.Spec[Config, Event]{
	Name:    "execsnoop",
	Group:   "security",
	Summary: "Trace new processes (exec)",
	Long: `Trace exec: every new program, with its parent (PPID), result (RET) and
arguments. Successful execs are seen in the new program once it is loaded,
with the argument list read from its own memory: nothing is lost to pages
not yet read in, and arguments are never cut short one by one (BCC keeps
128 bytes of each). An event carries up to 32768 bytes of arguments and
--max-args (default 20) of them; a longer list ends with "..." (JSON
"args_truncated": true). With -x failed execs are shown too (RET is
-errno), their arguments read from the caller's memory when the exec
returns (at most 256).

COMM is the new program's name (for a failed exec, the caller's). Arguments
are printed as the process gave them, each control, non-printable or
invalid byte and the backslash as \xNN (a newline in an argument is \x0a);
with -q each argument is quoted and its double quotes escaped (\").

-n and -l take regular expressions (Go's RE2 syntax), as BCC's do: -n
matches the command name, -l the arguments joined by spaces. -P PPID keeps
children of one process (filtered in the kernel).

A successful exec also carries the TCP and UDP sockets (IPv4, IPv6) that
the new program has on fds 0, 1 and 2 once close-on-exec files are closed:
a shell started with its input and output on a network connection is what
a reverse shell looks like. JSON carries them with or without --sockets
("stdio_sockets": fd, family 4 or 6, protocol "tcp" or "udp", laddr, lport,
raddr, rport; absent when there are none); --sockets appends their remote ends to ARGS, the fds
of one socket together: stdio[0,1,2]=tcp:127.0.0.1:4444. An unconnected
UDP socket's remote end is 0.0.0.0:0 (or [::]:0); an IPv6 socket talking to
an IPv4 peer shows its address IPv4-mapped ([::ffff:10.0.0.5]:4444). MPTCP
sockets are reported as tcp; unix sockets, pipes and terminals are not
reported, nor anything for failed execs (-x).`,
	Task: true,
	// A record holds up to ~36 KiB (file name and argv); most are small.
	// The reader is woken at 64 KiB; RSS counts the ring twice.
	RingBytes: 1 << 20,
	Load:      loadExecsnoop,
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: configure,
	// -x's execs in progress: a plain hash, so an exec that finds it full
	// is counted as map_full, nothing is evicted.
	Pending: execsnoopMapStarts,
	Decoder: func(cfg Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		return func(raw []byte, e *Event) bool { return decode(cfg, s, raw, e) }, nil
	},
}

// Tool is execsnoop's registry entry.
var Tool = tool.Register(&spec, command)

// Open loads and attaches execsnoop.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	return tool.Open(&spec, cfg, opts)
}

// headerSize is the fixed part of a record; the stdio sockets, file name
// and arguments follow it.
const (
	headerSize = int(unsafe.Sizeof(execsnoopEvent{}))
	stdioSize  = int(unsafe.Sizeof(execsnoopStdioSock{}))
)

func decode(cfg Config, s *probe.Session, raw []byte, e *Event) bool {
	r, ok := probe.View[execsnoopEvent](raw)
	if !ok {
		return false
	}
	data := raw[headerSize:]
	socks := int(r.StdioCount) * stdioSize
	if r.StdioCount > 3 || socks+int(r.FnameSize)+int(r.ArgsSize) > len(data) {
		return false
	}
	var stdio []StdioSocket
	for i := range int(r.StdioCount) {
		s, _ := probe.View[execsnoopStdioSock](data[i*stdioSize:])
		stdio = append(stdio, stdioSocket(s))
	}
	data = data[socks:]
	fname := data[:r.FnameSize]
	fname, _, _ = bytes.Cut(fname, []byte{0})
	maxArgs := cfg.MaxArgs
	if maxArgs <= 0 {
		maxArgs = DefaultMaxArgs
	}
	args, more := splitArgs(data[r.FnameSize:r.FnameSize+r.ArgsSize], maxArgs)
	*e = Event{
		Task:       s.Task(raw),
		PPID:       r.Ppid,
		Ret:        r.Ret,
		Filename:   Str(fname),
		Args:       args,
		Truncated:  more || r.Truncated != 0,
		Unreadable: r.Unreadable != 0,
		Stdio:      stdio,
	}
	if cfg.Name != nil && !cfg.Name.MatchString(e.Task.Comm.String()) {
		return false
	}
	if cfg.Line != nil && !cfg.Line.MatchString(e.Line()) {
		return false
	}
	return true
}

// Address families and protocols as the kernel numbers them.
const (
	afInet     = 2
	afInet6    = 10
	ipprotoTCP = 6
	ipprotoUDP = 17
)

func stdioSocket(s *execsnoopStdioSock) StdioSocket {
	out := StdioSocket{FD: s.Fd, Lport: s.Lport, Rport: s.Rport, Protocol: "udp"}
	if s.Protocol == ipprotoTCP {
		out.Protocol = "tcp"
	}
	if s.Family == afInet {
		out.Family = 4
		out.Laddr = netip.AddrFrom4([4]byte(s.Laddr[:4]))
		out.Raddr = netip.AddrFrom4([4]byte(s.Raddr[:4]))
	} else {
		out.Family = 6
		out.Laddr = netip.AddrFrom16(s.Laddr)
		out.Raddr = netip.AddrFrom16(s.Raddr)
	}
	return out
}

// Remote is the remote end as --sockets prints it: "tcp:127.0.0.1:4444",
// "udp:[::1]:53" ("udp:0.0.0.0:0" for an unconnected UDP socket).
func (s StdioSocket) Remote() string {
	return s.Protocol + ":" + netip.AddrPortFrom(s.Raddr, s.Rport).String()
}

// AppendStdio appends " stdio[FDS]=PROTO:ADDR:PORT" for each socket on
// fds 0 to 2, the fds that share one socket's endpoints listed together:
// " stdio[0,1,2]=tcp:127.0.0.1:4444".
func (e *Event) AppendStdio(b []byte) []byte {
	var printed [3]bool // by index in e.Stdio (at most 3)
	for i, s := range e.Stdio {
		if i >= len(printed) || printed[i] {
			continue
		}
		b = append(b, " stdio["...)
		for j := i; j < len(e.Stdio) && j < len(printed); j++ {
			o := e.Stdio[j]
			o.FD = s.FD
			if o != s {
				continue
			}
			if j > i {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(e.Stdio[j].FD), 10)
			printed[j] = true
		}
		b = append(b, "]="...)
		b = append(b, s.Remote()...)
	}
	return b
}

// splitArgs splits NUL-terminated arguments, at most max of them, and
// reports whether more were left out. An area cut short ends without its
// NUL: its last argument is kept as far as it goes.
func splitArgs(area []byte, max int) (args []Str, more bool) {
	for len(area) > 0 {
		if len(args) == max {
			return args, true
		}
		arg, rest, _ := bytes.Cut(area, []byte{0})
		args = append(args, Str(arg))
		area = rest
	}
	return args, false
}

// Line is the arguments joined by spaces, as -l matches them.
func (e *Event) Line() string {
	var b []byte
	for i, a := range e.Args {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, a...)
	}
	return string(b)
}

// AppendArgs appends the arguments as the ARGS column shows them:
// escaped, space-separated, quoted with quote (-q), and " ..." when the
// list was cut.
func (e *Event) AppendArgs(b []byte, quote bool) []byte {
	for i, a := range e.Args {
		if i > 0 {
			b = append(b, ' ')
		}
		if !quote {
			b = a.Append(b)
			continue
		}
		// Backslashes are escaped already (\x5c), so \" can only be a
		// quote of the argument.
		b = append(b, '"')
		for _, c := range a.Append(nil) {
			if c == '"' {
				b = append(b, '\\')
			}
			b = append(b, c)
		}
		b = append(b, '"')
	}
	if e.Truncated {
		b = append(b, " ..."...)
	}
	return b
}
