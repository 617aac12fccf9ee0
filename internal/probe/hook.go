// Package probe loads a tool's BPF objects and attaches them through a chain
// of hooks: each tool lists its hooks in order of preference and the chain
// keeps the first one that loads and attaches on this kernel, along with the
// reason each earlier one failed.
package probe

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Kind is the mechanism a hook uses. It is what --hook and OWL_HOOKS select.
type Kind string

const (
	Tracepoint    Kind = "tracepoint"
	RawTracepoint Kind = "raw_tracepoint"
	Fentry        Kind = "fentry"
	Kprobe        Kind = "kprobe"
	Uprobe        Kind = "uprobe"
	LSM           Kind = "lsm" // BPF LSM programs (lsm/HOOK)
)

// Attachment attaches one BPF program of the collection.
type Attachment struct {
	Program  string // name of the program in the collection spec
	Target   string // what it attaches to, for messages: "sock:inet_sock_set_state"
	Optional bool   // a failure is tolerated (e.g. tcp_v6_connect without IPv6)
	attach   func(*ebpf.Program) (link.Link, error)
	// pid is the one process a uprobe attachment traps in (0: all); for
	// LazyAt, lazyPID holds the resolved attachment's once attached.
	pid     int
	lazyPID *int
	// each, when set, replaces attach: the program is loaded again for
	// each of many targets (see TracingEachAt).
	each *perTarget
}

// Hook is one way of getting a tool's events: a set of programs attached
// together. Either all required attachments work or the hook is skipped.
type Hook struct {
	Kind        Kind
	Name        string // shown to users, e.g. "tracepoint sock:inet_sock_set_state"
	Attachments []Attachment
	// Check, when set, rejects the hook before loading anything, for kernels
	// where it would attach but not see the events (say so in the error).
	Check func() error
}

// Programs lists the program names the hook needs loaded.
func (h Hook) Programs() []string {
	names := make([]string, 0, len(h.Attachments))
	for _, a := range h.Attachments {
		names = append(names, a.Program)
	}
	return names
}

// TracepointAt attaches prog to the tracepoint group:name.
func TracepointAt(prog, group, name string) Attachment {
	return Attachment{Program: prog, Target: group + ":" + name,
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.Tracepoint(group, name, p, nil)
		}}
}

// KprobeAt attaches prog to the entry of the kernel function symbol.
func KprobeAt(prog, symbol string) Attachment {
	return Attachment{Program: prog, Target: symbol,
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.Kprobe(symbol, p, nil)
		}}
}

// KretprobeAt attaches prog to the return of the kernel function symbol.
func KretprobeAt(prog, symbol string) Attachment {
	return Attachment{Program: prog, Target: symbol + " (return)",
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.Kretprobe(symbol, p, nil)
		}}
}

// TracingAt attaches a fentry or fexit program; its target function is
// named in its ELF section and resolved in the kernel's BTF at load.
func TracingAt(prog, target string) Attachment {
	return Attachment{Program: prog, Target: target,
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.AttachTracing(link.TracingOptions{Program: p})
		}}
}

// RawTracepointAt attaches prog to the raw tracepoint name.
func RawTracepointAt(prog, name string) Attachment {
	return Attachment{Program: prog, Target: name,
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.AttachRawTracepoint(link.RawTracepointOptions{Name: name, Program: p})
		}}
}

// LazyAt is an attachment of prog whose real attachment is found only
// when the hook is tried: resolve (which reads a file's symbols, say) runs
// at attach, not when the hooks are listed for --help or `owl tools`, so
// that listing them reads nothing. target names it in messages until then.
// When the hook's Check calls resolve too, so that a target that cannot be
// found rejects the hook before anything loads, memoize it (sync.OnceValues)
// so that it runs once. The lazy attachment's Optional counts, not the
// resolved one's; a per-target attachment (TracingEachAt, KprobesEachAt)
// cannot be resolved this way: its attach needs the loaded collection.
func LazyAt(prog, target string, resolve func() (Attachment, error)) Attachment {
	pid := new(int)
	return Attachment{Program: prog, Target: target, lazyPID: pid,
		attach: func(p *ebpf.Program) (link.Link, error) {
			a, err := resolve()
			switch {
			case err != nil:
				return nil, err
			case a.Program != prog:
				return nil, fmt.Errorf("resolved to program %s, not %s", a.Program, prog)
			case a.each != nil || a.attach == nil:
				return nil, fmt.Errorf("resolved to %s: not an attachment LazyAt can make", a.Target)
			}
			l, err := a.attach(p)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", a.Target, err)
			}
			*pid = a.pid
			return l, nil
		}}
}

// forPID is the process the kernel filters a uprobe attachment on (the
// kernel, not only the program), 0 when it traps in every process.
func (a Attachment) forPID() int {
	if a.lazyPID != nil {
		return *a.lazyPID
	}
	return a.pid
}

// Optional marks an attachment whose failure does not reject the hook.
func Optional(a Attachment) Attachment {
	a.Optional = true
	return a
}

// Failure records why a hook was not used.
type Failure struct {
	Hook string
	Err  error
}

// ErrNoHook is returned when no hook of a tool works on this kernel.
var ErrNoHook = errors.New("no usable hook on this kernel")

// ErrKind is returned when a tool has no hook of the kinds asked for.
var ErrKind = errors.New("no hook of that kind")

// NoHookError lists every hook tried and why it failed.
type NoHookError struct {
	Tool  string
	Tried []Failure
}

func (e *NoHookError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %v", e.Tool, ErrNoHook)
	for i, f := range e.Tried {
		sep := ": "
		if i > 0 {
			sep = "; "
		}
		fmt.Fprintf(&b, "%s%s: %v", sep, f.Hook, f.Err)
	}
	return b.String()
}

// Unwrap gives ErrNoHook and the reason each hook failed, so that callers
// can tell causes apart (errors.Is).
func (e *NoHookError) Unwrap() []error {
	errs := []error{ErrNoHook}
	for _, f := range e.Tried {
		errs = append(errs, f.Err)
	}
	return errs
}

// Select filters hooks to those of the kinds named in only (comma-separated,
// as given to --hook or OWL_HOOKS); an empty only keeps all.
func Select(hooks []Hook, only string) ([]Hook, error) {
	if only == "" {
		return hooks, nil
	}
	want := map[Kind]bool{}
	for _, k := range strings.Split(only, ",") {
		want[Kind(strings.TrimSpace(k))] = true
	}
	var out []Hook
	var kinds []string
	for _, h := range hooks {
		kinds = append(kinds, string(h.Kind))
		if want[h.Kind] {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return nil, &kindError{only: only, kinds: strings.Join(kinds, ", ")}
	}
	return out, nil
}

// explain turns the errors of a failed attach into a line a user can act on.
func explain(kind Kind, err error) error {
	switch {
	case kind == Kprobe && errors.Is(err, os.ErrNotExist):
		if _, serr := os.Stat("/sys/bus/event_source/devices/kprobe"); serr != nil {
			return fmt.Errorf("this kernel has no kprobes (%w)", err)
		}
	case kind == Fentry && (errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, os.ErrPermission)):
		return fmt.Errorf("this kernel cannot load fentry/fexit programs (%w)", err)
	case kind == LSM && (errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, os.ErrPermission)):
		return fmt.Errorf("this kernel cannot load BPF LSM programs (%w)", err)
	}
	return err
}

type kindError struct{ only, kinds string }

func (e *kindError) Error() string {
	return fmt.Sprintf("hook %q: this tool has only %s", e.only, e.kinds)
}

func (e *kindError) Unwrap() error { return ErrKind }
