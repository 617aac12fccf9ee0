// Package bashfunc traces the functions bash scripts call: bashfunc
// prints each call with the function's name, bashfunclat a log2
// histogram of each function's durations. Both read bash's exported
// (dynamic) symbols only, so a stripped bash, as distributions ship it,
// is enough.
package bashfunc

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// DefaultBash is the bash traced unless told otherwise.
const DefaultBash = "/bin/bash"

// Event is one call of a shell function.
type Event struct {
	event.Task
	// Depth is bash's function nesting (funcnest) inside the call: 1 for
	// a function called outside any function.
	Depth uint32 `json:"depth"`
	// Func is the function's name, escaped as event.AppendEscaped does
	// (at most 63 bytes of it: longer names are cut).
	Func string `json:"func"`
}

// Config says which bash to trace; the task filters are in tool.Options.
type Config struct {
	// Bash is the bash executable: DefaultBash when empty, or with -p
	// the process's own executable.
	Bash string
}

// Bash is what the probes need of one bash executable: where the two
// functions probed are in the file, and the symbol values of the
// functions and globals the programs read.
type Bash struct {
	Path string
	// File offsets of find_function_def (called once per function
	// call) and restore_funcarray_state (once per return).
	CallOffset, ReturnOffset uint64
	// Symbol values (st_value), from which the programs find the globals
	// at run time: the load bias is the probed address minus the
	// function's symbol value.
	CallSym, ReturnSym, ThisFunctionSym, FuncnestSym, SourcenestSym uint64
}

// The dynamic symbols used (bash 4.4 to 5.3 export them: they are
// linked with -rdynamic for loadable builtins).
var bashSymbols = []string{"find_function_def", "restore_funcarray_state", "this_shell_function", "funcnest", "sourcenest"}

// BashError is the error for a file that is not a bash these tools can
// trace (missing, not ELF, or without the symbols): the user's to fix.
type BashError struct{ Err error }

func (e *BashError) Error() string { return e.Err.Error() }
func (e *BashError) Unwrap() error { return e.Err }

// FindBash reads the symbols the tools need from the bash at path.
func FindBash(path string) (*Bash, error) {
	f, err := elf.Open(path)
	if err != nil {
		// debug/elf's own errors ("bad magic number", EOF) name no file.
		if _, ok := errors.AsType[*fs.PathError](err); !ok {
			err = fmt.Errorf("%s: not an ELF file (%w)", path, err)
		}
		return nil, &BashError{Err: err}
	}
	defer f.Close()
	dyn, err := f.DynamicSymbols()
	if err != nil {
		return nil, &BashError{Err: fmt.Errorf("%s: no dynamic symbols: %w", path, err)}
	}
	vals := map[string]uint64{}
	for _, s := range dyn {
		if s.Section != elf.SHN_UNDEF && s.Value != 0 {
			vals[s.Name] = s.Value
		}
	}
	for _, name := range bashSymbols {
		if _, ok := vals[name]; !ok {
			return nil, &BashError{Err: fmt.Errorf("%s: no dynamic symbol %s: not a bash these tools know (4.4 or later, built with arrays)", path, name)}
		}
	}
	b := &Bash{Path: path,
		CallSym: vals["find_function_def"], ReturnSym: vals["restore_funcarray_state"],
		ThisFunctionSym: vals["this_shell_function"], FuncnestSym: vals["funcnest"], SourcenestSym: vals["sourcenest"]}
	if b.CallOffset, err = fileOffset(f, b.CallSym); err != nil {
		return nil, &BashError{Err: fmt.Errorf("%s: find_function_def: %w", path, err)}
	}
	if b.ReturnOffset, err = fileOffset(f, b.ReturnSym); err != nil {
		return nil, &BashError{Err: fmt.Errorf("%s: restore_funcarray_state: %w", path, err)}
	}
	return b, nil
}

// fileOffset converts a code address of f to its offset in the file,
// where uprobes are placed.
func fileOffset(f *elf.File, vaddr uint64) (uint64, error) {
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && p.Vaddr <= vaddr && vaddr-p.Vaddr < p.Filesz {
			return vaddr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x in no executable segment", vaddr)
}

// bashPath is the bash a config traces: cfg.Bash, else with a pid the
// process's own executable, else DefaultBash.
func bashPath(cfg Config, pid int) string {
	switch {
	case cfg.Bash != "":
		return cfg.Bash
	case pid != 0:
		return "/proc/" + strconv.Itoa(pid) + "/exe"
	}
	return DefaultBash
}

// target is the bash the hooks and Configure need, read once: by Open,
// or for the registry's default config when the hook is tried, not when
// hooks are listed (every owl start builds --help from them).
type target struct {
	pid  int
	find func() (*Bash, error) // FindBash of the target, memoized
	bash *Bash                 // found already (by Open): attach as is
}

func newTarget(cfg Config, pid int) *target {
	path := bashPath(cfg, pid)
	return &target{pid: pid, find: sync.OnceValues(func() (*Bash, error) { return FindBash(path) })}
}

// check is the hooks' Check: a bash that cannot be traced rejects them.
func (t *target) check() error {
	_, err := t.find()
	return err
}

// uprobeAt attaches prog at the function fn of the bash (its file offset
// given by offset): at once when the bash was found, else lazily.
func (t *target) uprobeAt(prog, fn string, offset func(*Bash) uint64) probe.Attachment {
	at := func(b *Bash) probe.Attachment {
		return probe.UprobesAt(prog, b.Path, []uint64{offset(b)}, nil, false, t.pid)
	}
	if t.bash != nil {
		return at(t.bash)
	}
	return probe.LazyAt(prog, "uprobe bash:"+fn, func() (probe.Attachment, error) {
		b, err := t.find()
		if err != nil {
			return probe.Attachment{}, err
		}
		return at(b), nil
	})
}

const hookName = "uprobe bash:find_function_def (uprobe-multi where the kernel has it)"

// callHook attaches the call probe (and, for bashfunclat, the return
// probe); a bash that cannot be traced fails the hook's Check.
func callHook(t *target, name string, withReturn bool) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: name, Check: t.check}
	h.Attachments = append(h.Attachments, t.uprobeAt(bashfuncProgFuncCall, "find_function_def", func(b *Bash) uint64 { return b.CallOffset }))
	if withReturn {
		h.Attachments = append(h.Attachments, t.uprobeAt(bashfuncProgFuncReturn, "restore_funcarray_state", func(b *Bash) uint64 { return b.ReturnOffset }))
	}
	return []probe.Hook{h}
}

// foundTarget is Open's target: the bash read before anything loads.
func foundTarget(cfg Config, pid int) (*target, error) {
	t := newTarget(cfg, pid)
	b, err := t.find()
	if err != nil {
		return nil, err
	}
	t.bash = b
	return t, nil
}

// configure sets the symbol values and what the programs do.
func configure(t *target, cs *ebpf.CollectionSpec, events, times bool, unitNs uint64, hists int) error {
	b, err := t.find()
	if err != nil {
		return err
	}
	var v bashfuncVariableSpecs
	if err := cs.Assign(&v); err != nil {
		return err
	}
	var m bashfuncMapSpecs
	if err := cs.Assign(&m); err != nil {
		return err
	}
	m.Hists.MaxEntries = uint32(max(hists, 1))
	err = errors.Join(v.CallSym.Set(b.CallSym), v.ReturnSym.Set(b.ReturnSym),
		v.ThisFunctionSym.Set(b.ThisFunctionSym), v.FuncnestSym.Set(b.FuncnestSym),
		v.SourcenestSym.Set(b.SourcenestSym), v.WantEvents.Set(events), v.WantTimes.Set(times),
		v.UnitNs.Set(unitNs))
	if err != nil {
		return err
	}
	// uprobe-multi links where the kernel has them: they need CAP_BPF and
	// CAP_PERFMON only, where a perf_uprobe event is refused without more.
	var progs []string
	for _, p := range []string{bashfuncProgFuncCall, bashfuncProgFuncReturn} {
		if cs.Programs[p] != nil {
			progs = append(progs, p)
		}
	}
	return probe.PrepareUprobes(cs, progs...)
}

// specConfig carries the target through the Spec's functions, which
// only see the config.
type specConfig struct {
	Config
	t *target
}

var spec = tool.Spec[specConfig, Event]{
	Name:    "bashfunc",
	Group:   "language",
	Summary: "Trace the shell functions bash calls, with their names",
	Long: `Print each call of a shell function by bash: the time, the process, bash's
function nesting depth (1 outside any function) and the function's name.

It probes bash's exported functions only, so a stripped bash (Debian's
/bin/bash) is enough: find_function_def, which bash calls once per
function call with the function's name while this_shell_function names
the function being called. Other calls of find_function_def (defining a
function, declare -F) are told apart and ignored. The bash probed is
/bin/bash, or with -p the process's own executable, or --bash PATH (bash
4.4 or later). Names longer than 63 bytes are cut.`,
	Task:      true,
	RingBytes: 1 << 20,
	Load:      loadBashfunc,
	Caps:      tool.ReadsPID[specConfig],
	Default:   func() specConfig { return specConfig{t: newTarget(Config{}, 0)} },
	Hooks:     func(c specConfig) []probe.Hook { return callHook(c.t, hookName, false) },
	Configure: func(c specConfig, cs *ebpf.CollectionSpec) error {
		return configure(c.t, cs, true, false, 1, 1)
	},
	Decoder: func(_ specConfig, s *probe.Session) (func([]byte, *Event) bool, error) {
		return func(raw []byte, e *Event) bool { return decode(s, raw, e) }, nil
	},
}

// Tool is bashfunc's registry entry.
var Tool = tool.Register(&spec, command)

// Open loads bashfunc and attaches it to the bash of cfg; with a pid in
// opts, to that process only.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	t, err := foundTarget(cfg, opts.Task.PID)
	if err != nil {
		return nil, err
	}
	return tool.Open(&spec, specConfig{Config: cfg, t: t}, opts)
}

func decode(s *probe.Session, raw []byte, e *Event) bool {
	r, ok := probe.View[bashfuncEvent](raw)
	if !ok {
		return false
	}
	e.Task = s.Task(raw)
	e.Depth = r.Depth
	e.Func = cName(r.Name[:])
	return true
}

// cName is a NUL-terminated name, escaped.
func cName(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(event.AppendEscaped(nil, b))
}
