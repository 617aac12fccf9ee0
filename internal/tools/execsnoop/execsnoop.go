// Package execsnoop traces new programs (BCC's execsnoop): each exec with
// its parent, result and whole argument list, read from the new program's
// own image when the exec succeeds.
package execsnoop

import (
	"bytes"
	"fmt"
	"regexp"
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
children of one process (filtered in the kernel).`,
	Task: true,
	// A record holds up to ~36 KiB (file name and argv); most are small.
	// The reader is woken at 64 KiB; RSS counts the ring twice.
	RingBytes: 1 << 20,
	Load:      loadExecsnoop,
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: configure,
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

// headerSize is the fixed part of a record; the file name and arguments
// follow it.
const headerSize = int(unsafe.Sizeof(execsnoopEvent{}))

func decode(cfg Config, s *probe.Session, raw []byte, e *Event) bool {
	r, ok := probe.View[execsnoopEvent](raw)
	if !ok {
		return false
	}
	data := raw[headerSize:]
	if int(r.FnameSize)+int(r.ArgsSize) > len(data) {
		return false
	}
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
	}
	if cfg.Name != nil && !cfg.Name.MatchString(e.Task.Comm.String()) {
		return false
	}
	if cfg.Line != nil && !cfg.Line.MatchString(e.Line()) {
		return false
	}
	return true
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
