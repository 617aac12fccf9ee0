// Package bashreadline traces the command lines interactive bash shells
// read, by a uretprobe on readline(): BCC's bashreadline.
package bashreadline

import (
	"debug/elf"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/uprobe"
)

// maxLine is the BPF buffer (MAX_LINE of bashreadline.bpf.c): longer
// lines are cut to maxLine-1 bytes.
const maxLine = 512

// Event is one line read by readline.
type Event struct {
	event.Task
	// Command is the line as typed (bytes chosen by the user: printed
	// escaped, see event.AppendEscaped).
	Command Line `json:"command"`
	// Cut marks a line longer than the 511 bytes kept.
	Cut bool `json:"cut"`
}

// Line is a command line, escaped in text and JSON as event.Comm is, so
// that it cannot forge a line of output or reach the terminal.
type Line string

// Append appends the line escaped.
func (l Line) Append(b []byte) []byte { return event.AppendEscaped(b, []byte(l)) }

// MarshalText gives the escaped line (event.Unescape reverses it).
func (l Line) MarshalText() ([]byte, error) { return l.Append(nil), nil }

// Config chooses the file whose readline is probed; the task filters are
// in tool.Options.
type Config struct {
	// Shared is the bash, or the libreadline, to probe (-s); "" is
	// /bin/bash, or the -p process's executable, and the libreadline
	// it loads when readline is not linked into it.
	Shared string

	// Set by Open (empty: /bin/bash, resolved by hooks).
	target Target
	pid    int
}

// Target is the readline probed.
type Target struct {
	Path   string
	Offset uint64
	// Lib: readline is in a shared library other programs use too, so
	// only tasks named bash are traced (as BCC does).
	Lib bool
}

const hookName = "uretprobe bash:readline (or libreadline:readline)"

// hooks attaches the return probe to readline. Without a target (the
// registry's default config) it finds /bin/bash's only when the hook is
// tried, not when hooks are listed (every owl start builds --help from
// them); a failure to is the hook's Check error.
func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: hookName}
	if cfg.target.Path != "" {
		h.Attachments = []probe.Attachment{readlineAt(cfg.target, cfg.pid)}
		return []probe.Hook{h}
	}
	find := sync.OnceValues(func() (Target, error) { return Find(cfg.Shared, 0) })
	h.Check = func() error {
		_, err := find()
		return err
	}
	h.Attachments = []probe.Attachment{
		probe.LazyAt(bashreadlineProgReadlineReturn, "uretprobe bash:readline", func() (probe.Attachment, error) {
			t, err := find()
			if err != nil {
				return probe.Attachment{}, err
			}
			return readlineAt(t, cfg.pid), nil
		}),
	}
	return []probe.Hook{h}
}

func readlineAt(t Target, pid int) probe.Attachment {
	return probe.UprobesAt(bashreadlineProgReadlineReturn, t.Path, []uint64{t.Offset}, nil, true, pid)
}

var spec = tool.Spec[Config, Event]{
	Name:    "bashreadline",
	Group:   "security",
	Summary: "Print the commands typed into interactive bash shells",
	Long: `Print each line interactive bash shells read with readline(): the commands
typed at their prompt, whatever their outcome, builtins and typos included,
as BCC's bashreadline. Scripts and bash -c do not use readline and are not
shown, nor is the line being edited when owl starts (its readline call
began before the probe). Lines are kept up to 511 bytes (JSON "cut" marks
longer ones).

readline is probed in /bin/bash, where Debian and most distributions link
it in, or in the libreadline bash loads otherwise; -s PATH names the bash or
libreadline to probe instead (a bash elsewhere, a container's through
/proc/PID/root/...). With -p PID, the readline that process runs is found
through its own executable and mappings. In a libreadline, which python,
gdb and others use too, only tasks named bash are traced.`,
	Task: true,
	// People type slowly; a paste of many lines is a few hundred.
	RingBytes: 256 << 10,
	Load:      loadBashreadline,
	Caps:      tool.ReadsPID[Config],
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: func(cfg Config, cs *ebpf.CollectionSpec) error {
		t := cfg.target
		if t.Path == "" {
			var err error
			if t, err = Find(cfg.Shared, 0); err != nil {
				return err
			}
		}
		var v bashreadlineVariableSpecs
		if err := cs.Assign(&v); err != nil {
			return err
		}
		var only uint8
		if t.Lib {
			only = 1
		}
		if err := v.BashOnly.Set(only); err != nil {
			return err
		}
		// A uprobe-multi link needs only CAP_BPF and CAP_PERFMON; a
		// perf-event uprobe may need more.
		return probe.PrepareUprobes(cs, bashreadlineProgReadlineReturn)
	},
	Decoder: func(_ Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		return func(raw []byte, e *Event) bool {
			r, ok := probe.View[bashreadlineEvent](raw)
			if !ok {
				return false
			}
			n := int(r.Len)
			if n > 0 {
				n-- // the NUL
			}
			n = min(n, len(r.Line))
			*e = Event{Task: s.Task(raw), Command: Line(r.Line[:n]), Cut: int(r.Len) >= maxLine}
			return true
		}, nil
	},
}

// Tool is bashreadline's registry entry.
var Tool = tool.Register(&spec, command)

// TargetError is Open's error for a file that cannot be probed (no such
// file, no readline in it): the user's to fix.
type TargetError struct{ Err error }

func (e *TargetError) Error() string { return e.Err.Error() }
func (e *TargetError) Unwrap() error { return e.Err }

// Open finds readline (see Config.Shared), loads and attaches
// bashreadline.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	t, err := Find(cfg.Shared, opts.Task.PID)
	if err != nil {
		return nil, &TargetError{Err: err}
	}
	cfg.target, cfg.pid = t, opts.Task.PID
	return tool.Open(&spec, cfg, opts)
}

// Find returns the readline to probe for shared ("" for /bin/bash, or
// with pid not 0 that process's executable), as process pid sees files
// when not 0: in the file itself, else in the libreadline it needs.
func Find(shared string, pid int) (Target, error) {
	file := shared
	if file == "" && pid == 0 {
		file = "/bin/bash"
	}
	funcs, err := uprobe.Resolve(uprobe.Spec{Target: file, Func: "readline"}, uprobe.Options{PID: pid})
	if err == nil {
		return Target{Path: funcs[0].Path, Offset: funcs[0].Offset, Lib: !executable(funcs[0].Path)}, nil
	}
	if !errors.Is(err, uprobe.ErrNoMatch) {
		return Target{}, err
	}
	// Not linked in: the libreadline the program loads.
	path, lib, lerr := neededReadline(file, pid)
	if lerr != nil {
		return Target{}, fmt.Errorf("%w (%v)", err, lerr)
	}
	funcs, err = uprobe.Resolve(uprobe.Spec{Target: lib, Func: "readline"}, uprobe.Options{PID: pid})
	if err != nil {
		return Target{}, fmt.Errorf("%s needs %s: %w", path, lib, err)
	}
	return Target{Path: funcs[0].Path, Offset: funcs[0].Offset, Lib: true}, nil
}

// neededReadline returns the program's path and the name of the readline
// library it loads ("readline", for uprobe.Resolve to find as the loader
// would, or through the process's maps).
func neededReadline(file string, pid int) (string, string, error) {
	path := file
	switch {
	case file == "":
		path = fmt.Sprintf("/proc/%d/exe", pid)
	case !strings.Contains(file, "/"):
		p, err := exec.LookPath(file)
		if err != nil {
			return "", "", err
		}
		path = p
	case pid != 0 && filepath.IsAbs(file):
		// The file as the process sees it, whatever its mount namespace.
		path = fmt.Sprintf("/proc/%d/root%s", pid, file)
	}
	f, err := elf.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	for _, l := range libs {
		if strings.HasPrefix(l, "libreadline.so") {
			return path, "readline", nil
		}
	}
	return "", "", fmt.Errorf("%s does not load libreadline", path)
}

// executable reports whether the ELF file at path is a program (it names
// an interpreter), not a shared library.
func executable(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	return f.Type == elf.ET_EXEC
}
