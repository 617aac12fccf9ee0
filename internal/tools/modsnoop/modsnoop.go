// Package modsnoop traces kernel module loads: the module's name, its
// taints and the file finit_module read it from.
package modsnoop

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// Event is one module load.
type Event struct {
	event.Task
	// Module is the module's name; with the syscalls hook it is made from
	// the file's name (nls_iso8859-1.ko: nls_iso8859_1), null for
	// init_module.
	Module event.Name `json:"module"`
	// Taints are the module's taint flags; null with the syscalls hook,
	// which does not see them.
	Taints *Taints `json:"taints"`
	// File is the path finit_module loaded, null for init_module (an
	// image in memory).
	File event.Name `json:"file"`
}

// Taints are a module's TAINT_* bits, shown as the kernel shows them: one
// letter per flag (O out-of-tree, E unsigned, P proprietary, ...).
type Taints uint64

// taintLetters are the kernel's letters by bit (kernel/panic.c).
const taintLetters = "PFSRMBUDAWCIOELKXTNJ"

// Append appends the letters of the set bits, "-" for none, and for a bit
// the table does not know its number in brackets.
func (t Taints) Append(b []byte) []byte {
	if t == 0 {
		return append(b, '-')
	}
	for i := range 64 {
		if t&(1<<i) == 0 {
			continue
		}
		if i < len(taintLetters) {
			b = append(b, taintLetters[i])
		} else {
			b = fmt.Appendf(b, "[%d]", i)
		}
	}
	return b
}

// MarshalText gives the letters ("OE"; "-" for none).
func (t Taints) MarshalText() ([]byte, error) { return t.Append(nil), nil }

// Config is modsnoop's own configuration; the task filters are in
// tool.Options.
type Config struct {
	// syscalls forces the syscalls hook, the one kernels without the
	// module tracepoint take: for tests.
	syscalls bool
}

// ErrNoModules is the error on a kernel built without CONFIG_MODULES:
// there is nothing to trace. It is a no-hook error (exit status 2).
var ErrNoModules error = noModules{}

type noModules struct{}

func (noModules) Error() string        { return "kernel built without module support" }
func (noModules) Is(target error) bool { return target == probe.ErrNoHook }

// haveModules rejects kernels without modules: they have no /proc/modules.
func haveModules() error {
	if _, err := os.Stat("/proc/modules"); errors.Is(err, os.ErrNotExist) {
		return ErrNoModules
	}
	return nil
}

// moduleLoadLayout is struct module_load_args of modsnoop.bpf.c.
var moduleLoadLayout = map[string]int{"taints": 8, "name": 12}

// syscall tracepoints, struct sys_enter_args and sys_exit_args.
var (
	enterLayout = map[string]int{"fd": 16}
	exitLayout  = map[string]int{"ret": 16}
)

// Hook names, for README and --help.
const (
	tpName      = "tracepoint module:module_load (+ syscalls for the file)"
	syscallName = "tracepoint syscalls:sys_{enter,exit}_{finit,init}_module"
	fentryName  = "fentry do_init_module (+ syscalls for the file)"
	kprobeName  = "kprobe do_init_module (+ syscalls for the file)"
)

func hooks(cfg Config) []probe.Hook {
	// The file: each thread's finit_module fd, noted at entry and
	// dropped at exit. Optional beside a hook that names the module.
	files := func(exit string) []probe.Attachment {
		return []probe.Attachment{
			probe.TracepointAt(modsnoopProgTpEnterFinit, "syscalls", "sys_enter_finit_module"),
			probe.TracepointAt(modsnoopProgTpEnterInit, "syscalls", "sys_enter_init_module"),
			probe.TracepointAt(exit, "syscalls", "sys_exit_finit_module"),
			probe.TracepointAt(exit, "syscalls", "sys_exit_init_module"),
		}
	}
	optional := func(as []probe.Attachment) []probe.Attachment {
		for i := range as {
			as[i] = probe.Optional(as[i])
		}
		return as
	}
	sys := probe.Hook{Kind: probe.Tracepoint, Name: syscallName,
		Attachments: files(modsnoopProgTpExitEmit),
		Check: all(haveModules,
			probe.CheckLayout("syscalls", "sys_enter_finit_module", enterLayout),
			probe.CheckLayout("syscalls", "sys_exit_finit_module", exitLayout)),
	}
	if cfg.syscalls {
		return []probe.Hook{sys}
	}
	tp := probe.Hook{Kind: probe.Tracepoint, Name: tpName,
		Attachments: append([]probe.Attachment{probe.TracepointAt(modsnoopProgTpModuleLoad, "module", "module_load")},
			optional(files(modsnoopProgTpExit))...),
		Check: all(haveModules, probe.CheckLayout("module", "module_load", moduleLoadLayout)),
	}
	fentry := probe.Hook{Kind: probe.Fentry, Name: fentryName, Check: haveModules,
		Attachments: append([]probe.Attachment{probe.TracingAt(modsnoopProgFentryDoInitModule, "do_init_module")},
			optional(files(modsnoopProgTpExit))...),
	}
	kp := probe.Hook{Kind: probe.Kprobe, Name: kprobeName, Check: haveModules,
		Attachments: append([]probe.Attachment{probe.KprobeAt(modsnoopProgKprobeDoInitModule, "do_init_module")},
			optional(files(modsnoopProgTpExit))...),
	}
	return []probe.Hook{tp, sys, fentry, kp}
}

// all returns a check that passes when every check does.
func all(checks ...func() error) func() error {
	return func() error {
		for _, c := range checks {
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	}
}

var spec = tool.Spec[Config, Event]{
	Name:    "modsnoop",
	Group:   "security",
	Summary: "Trace kernel module loads",
	Long: `Trace kernel module loads: who loaded which module, its taint flags and,
for finit_module (what modprobe and insmod use), the file it came from.
TAINTS are the kernel's letters (O out-of-tree, E unsigned, P proprietary,
C staging, ...; - for none). FILE is the path of the file as seen from the
mount namespace's root (.../ in front when deeper than 16 directories),
- for init_module, which loads an image from memory.

The module tracepoint is used where there is one; kernels without it get
the finit_module and init_module syscalls, where the module's name is made
from the file's (nls_iso8859-1.ko.xz: nls_iso8859_1; - for init_module) and
the taints are unknown (-, null in JSON); then do_init_module (fentry,
kprobe). On a kernel built without module support owl says so and exits
with status 2.`,
	Task:    true,
	Load:    loadModsnoop,
	Default: func() Config { return Config{} },
	Hooks:   hooks,
	Pending: modsnoopMapLoading,
	Decoder: func(_ Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		return func(raw []byte, e *Event) bool { return decode(s, raw, e) }, nil
	},
}

// Tool is modsnoop's registry entry.
var Tool = tool.Register(&spec, command)

// Open loads and attaches modsnoop; on a kernel without modules the error
// is ErrNoModules.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	if err := haveModules(); err != nil {
		return nil, fmt.Errorf("modsnoop: %w", err)
	}
	return tool.Open(&spec, cfg, opts)
}

func decode(s *probe.Session, raw []byte, e *Event) bool {
	r, ok := probe.View[modsnoopEvent](raw)
	if !ok {
		return false
	}
	*e = Event{Task: s.Task(raw), Module: event.Name(cString(r.Name[:]))}
	if r.HasTaints != 0 {
		t := Taints(r.Taints)
		e.Taints = &t
	}
	if r.HasFile != 0 {
		names := make([]string, 0, len(r.File.Names))
		for i := range min(int(r.File.Depth), len(r.File.Names)) {
			names = append(names, cString(r.File.Names[i][:]))
		}
		e.File = event.Name(joinPath(names, r.File.Complete != 0))
	}
	if e.Module == "" && e.File != "" {
		e.Module = event.Name(ModuleName(string(e.File)))
	}
	return true
}

// cString is b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// joinPath makes a path of names listed from the file up to the root;
// an incomplete walk (too deep) starts with ".../".
func joinPath(names []string, complete bool) string {
	var b strings.Builder
	if !complete {
		b.WriteString("...")
	}
	for i := len(names) - 1; i >= 0; i-- {
		b.WriteByte('/')
		b.WriteString(names[i])
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// ModuleName is the name the kernel gives the module in file: its base
// name without .ko and a compression suffix, dashes made underscores (as
// modprobe and the kernel's build do).
func ModuleName(file string) string {
	base := file[strings.LastIndexByte(file, '/')+1:]
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}
