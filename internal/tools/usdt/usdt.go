// Package usdt traces USDT probes (user statically-defined tracepoints:
// sys/sdt.h's DTRACE_PROBE/STAP_PROBE in C and C++ programs, and the
// probes of Python, Ruby, Java, PostgreSQL, ...) with their arguments,
// and lists them: BCC's tplist -l and trace 'u:...', bpftrace's usdt:.
package usdt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	sdt "github.com/owlbpf/owl/internal/usdt"
)

// Event is one hit of a probe.
type Event struct {
	event.Task
	Probe Text `json:"probe"` // provider:name
	// Args are the probe's arguments, sign-extended as its note says
	// (signed ones print negative in JSON).
	Args []Arg `json:"args"`
	// Unreadable lists the arguments whose memory could not be read
	// (their value is 0).
	Unreadable []int `json:"unreadable,omitempty"`
	// Message is the format applied to the arguments, or "arg0=... ..."
	// without one.
	Message Text `json:"message"`
}

// Arg is one argument's value.
type Arg struct {
	V      uint64
	Signed bool
}

// MarshalJSON writes the value as a number, negative when signed.
func (a Arg) MarshalJSON() ([]byte, error) {
	if a.Signed {
		return strconv.AppendInt(nil, int64(a.V), 10), nil
	}
	return strconv.AppendUint(nil, a.V, 10), nil
}

// Config is what to trace: probe locations (from usdt.Find) and the
// format; the task filters are in tool.Options.
type Config struct {
	Probes []sdt.Probe
	Format Format
	// each attaches one uprobe per location even where uprobe-multi
	// links exist: the path of kernels before 6.6, for tests.
	each bool
	// pid is the -p process (Open sets it from the options): the uprobes
	// fire in it only.
	pid int
}

// MaxProbes bounds the locations one run attaches to (libjvm's 531 notes
// fit).
const MaxProbes = 4096

const hookName = "uprobe at each probe location (uprobe-multi where the kernel has it), semaphores counted by the kernel"

// hooks attaches usdt_hit at every probe location, semaphores
// registered; a Config whose probes cannot be attached here (another
// architecture's) has a hook whose Check says why.
func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: hookName}
	as, err := sdt.Attachments(usdtProgUsdtHit, cfg.Probes, cfg.pid, cfg.each)
	if err != nil {
		h.Check = func() error { return err }
	}
	h.Attachments = as
	return []probe.Hook{h}
}

// ErrNoProbe is the error for a Config without probes.
var ErrNoProbe = fmt.Errorf("usdt: no probe given (%w)", tool.ErrNeedsArgs)

var spec = tool.Spec[Config, Event]{
	Name:    "usdt",
	Group:   "language",
	Summary: "List USDT probes, or trace one with its arguments",
	Long: `List the USDT probes (sys/sdt.h's static tracepoints, .note.stapsdt) of a file
or of a process and the libraries it maps (-l), as BCC's tplist; or trace
probes and print their arguments, as bpftrace's usdt: and BCC's trace.

A PROBE is [TARGET:]PROVIDER:NAME: TARGET is a file (a path with a '/'), or
a library or program name (ruby-3.1 for libruby-3.1.so, python3.11) found
among the files -p's process maps, in the dynamic loader's cache, then in
$PATH; without TARGET, -p's executable and every file it maps. PROVIDER and
NAME are globs. Each probe location fires; a probe in a shared library fires
in every process that maps it, unless -p.

FORMAT is printf-like: %d %i %u %x %X %p %c, %s for the NUL-terminated string
(up to 127 bytes) an argument points to, %%; each verb takes the next ARG,
arg0 to arg11 (bpftrace's numbering: arg0 is the first). Values are 64-bit,
sign-extended when the note says the argument is signed. Without FORMAT each
argument prints as argN=VALUE (decimal; 8-byte unsigned ones in hex).

Probes guarded by a semaphore (PROBE_ENABLED() in the program) fire while
owl is attached: the kernel counts owl in the semaphore, and takes it back
when owl ends, even on SIGKILL.

-l lists one line per probe location (as readelf -n has one note each): the
file, PROVIDER:NAME, its address and file offset, its semaphore's address
and file offset, and its argument specs; -v adds what each spec means.`,
	Task:      true,
	RingBytes: 4 << 20,
	Load:      loadUsdt,
	Caps:      tool.ReadsPID[Config], // -p: its maps
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: configure,
	Decoder: func(cfg Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		return func(raw []byte, e *Event) bool { return decode(cfg, s, raw, e) }, nil
	},
}

// Tool is usdt's registry entry.
var Tool = tool.Register(&spec, command)

func configure(cfg Config, cs *ebpf.CollectionSpec) error {
	if len(cfg.Probes) == 0 {
		return ErrNoProbe
	}
	if err := sdt.Configure(cs, cfg.Probes, nil); err != nil {
		return err
	}
	var v usdtVariableSpecs
	if err := cs.Assign(&v); err != nil {
		return err
	}
	strs := [maxStrs]uint8{0xff, 0xff, 0xff, 0xff}
	for i, a := range cfg.Format.Strings {
		strs[i] = uint8(a)
	}
	if err := v.StrArg.Set(strs); err != nil {
		return err
	}
	if cfg.each {
		return nil
	}
	return probe.PrepareUprobes(cs, usdtProgUsdtHit)
}

func decode(cfg Config, s *probe.Session, raw []byte, e *Event) bool {
	r, ok := probe.View[usdtEvent](raw)
	if !ok || int(r.Probe) >= len(cfg.Probes) {
		return false
	}
	p := &cfg.Probes[r.Probe]
	*e = Event{Task: s.Task(raw), Probe: Text(p.ID())}
	n := min(int(r.Nargs), len(p.Args), len(r.Args))
	e.Args = make([]Arg, n)
	vals := make([]uint64, n)
	for i := range n {
		e.Args[i] = Arg{V: r.Args[i], Signed: p.Args[i].Signed}
		vals[i] = r.Args[i]
		if r.Bad&(1<<i) != 0 {
			e.Unreadable = append(e.Unreadable, i)
		}
	}
	var msg []byte
	if cfg.Format.Empty() {
		for i, a := range e.Args {
			if i > 0 {
				msg = append(msg, ' ')
			}
			msg = append(strconv.AppendInt(append(msg, "arg"...), int64(i), 10), '=')
			switch {
			case a.Signed:
				msg = strconv.AppendInt(msg, int64(a.V), 10)
			case p.Args[i].Size == 8:
				msg = strconv.AppendUint(append(msg, "0x"...), a.V, 16)
			default:
				msg = strconv.AppendUint(msg, a.V, 10)
			}
		}
	} else {
		strs := make([][]byte, len(cfg.Format.Strings))
		for i := range strs {
			strs[i] = r.Strs[i][:max(0, bytes.IndexByte(r.Strs[i][:], 0))]
		}
		msg = cfg.Format.Append(nil, vals, strs)
	}
	// The message holds strings of the traced process: escaped on output.
	e.Message = Text(msg)
	return true
}

// appendEscaped appends bytes of the traced process as they are; the
// output layer escapes Text fields.
func appendEscaped(b, s []byte) []byte { return append(b, s...) }

// Source is a running usdt.
type Source = tool.Source[Event]

// Open loads usdt and attaches it at every location of cfg.Probes, in
// opts' -p process only when it has one.
func Open(cfg Config, opts tool.Options) (*Source, error) {
	if len(cfg.Probes) == 0 {
		return nil, ErrNoProbe
	}
	if len(cfg.Probes) > MaxProbes {
		return nil, fmt.Errorf("usdt: %d probe locations, at most %d", len(cfg.Probes), MaxProbes)
	}
	if err := Check(cfg.Probes, cfg.Format); err != nil {
		return nil, err
	}
	cfg.pid = opts.Task.PID
	return tool.Open(&spec, cfg, opts)
}

// Check rejects a format that uses arguments some probe lacks or cannot
// read: one line, the user's to fix.
func Check(probes []sdt.Probe, f Format) error {
	need := f.MaxArg()
	for _, p := range probes {
		if p.ArgsErr != nil && (need >= 0 || f.Empty()) {
			return fmt.Errorf("%s in %s: arguments %q: %v", p.ID(), p.Path, p.ArgsText, p.ArgsErr)
		}
		if need >= len(p.Args) {
			return fmt.Errorf("%s in %s has %d arguments (%s): no arg%d", p.ID(), p.Path, len(p.Args), p.ArgsText, need)
		}
	}
	return nil
}

// ParseProbe splits [TARGET:]PROVIDER:NAME at its last two colons.
func ParseProbe(s string) (target, provider, name string, err error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", "", fmt.Errorf("probe %q: want [TARGET:]PROVIDER:NAME", s)
	}
	name = s[i+1:]
	rest := s[:i]
	j := strings.LastIndexByte(rest, ':')
	provider = rest[j+1:]
	if j >= 0 {
		target = rest[:j]
	}
	if provider == "" || name == "" {
		return "", "", "", fmt.Errorf("probe %q: want [TARGET:]PROVIDER:NAME, with a provider and a name", s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", "", "", fmt.Errorf("probe %q holds a NUL byte", s)
	}
	return target, provider, name, nil
}

// Text is a string from a traced program or a file anyone can write
// (names, strings, paths): text and JSON print it escaped
// (event.AppendEscaped), so it cannot forge a line or reach the terminal.
type Text string

// Append appends the escaped text.
func (t Text) Append(b []byte) []byte { return event.AppendEscaped(b, []byte(t)) }

// MarshalJSON writes the escaped text as a JSON string.
func (t Text) MarshalJSON() ([]byte, error) { return json.Marshal(string(t.Append(nil))) }
