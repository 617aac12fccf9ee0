// Package seccount counts calls of the kernel's security_* functions, the
// entry points of the LSM hooks, in the kernel, and prints them as BCC's
// funccount does.
package seccount

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tool"
)

// Count is how often one function was called, in one report. seccount
// streams nothing: Count is also its Event type (the registry's; no record
// is ever decoded into one).
type Count struct {
	Time  event.Time `json:"time"`
	Func  string     `json:"func"` // security_file_open
	Count uint64     `json:"count"`
}

// Config is what to count. The task filters are in tool.Options.
type Config struct {
	// Funcs are the security_* functions, one counter each, in this order.
	Funcs []string
	// LSM counts the LSM hook each function calls with BPF LSM programs
	// instead of hooking the function: LSMHooks[i] is Funcs[i]'s
	// (LSMHook).
	LSM      bool
	LSMHooks []string
	// each attaches one kprobe per function even where kprobe-multi links
	// exist: the path kernels without them take, for tests.
	each bool
	// byIP attaches fentry programs that find their function by address
	// even where fentry links take cookies: the path of kernels whose
	// links take none, for tests.
	byIP bool
}

// DefaultPattern is what seccount counts without a PATTERN.
const DefaultPattern = "security_*"

// Prefix is what every function seccount counts starts with.
const Prefix = "security_"

// Hook names, for README and --help.
const (
	fentryName   = "fentry security_* (one program each)"
	fentryIPName = "fentry security_* (one program each, found by address)"
	multiName    = "kprobe-multi security_*"
	eachName     = "kprobe security_* (one each)"
	lsmName      = "lsm (BPF LSM hook of each security_*, with --lsm)"
)

func hooks(cfg Config) []probe.Hook {
	cookies := make([]uint64, len(cfg.Funcs))
	for i := range cookies {
		cookies[i] = uint64(i)
	}
	if cfg.LSM {
		return []probe.Hook{{Kind: probe.LSM, Name: lsmName, Check: bpfLSMActive,
			Attachments: []probe.Attachment{probe.TracingEachAt(seccountProgCountLsm, cfg.LSMHooks, cookies)}}}
	}
	fentry := probe.Hook{Kind: probe.Fentry, Name: fentryName,
		Attachments: []probe.Attachment{probe.TracingEachAt(seccountProgCountFentry, cfg.Funcs, cookies)}}
	// Where fentry links take no cookie (probe.ErrTracingCookie), the
	// address of the function (func_index) tells which one it is.
	fentryIP := probe.Hook{Kind: probe.Fentry, Name: fentryIPName,
		Attachments: []probe.Attachment{probe.TracingEachAt(seccountProgCountFentryIp, cfg.Funcs, nil)}}
	multi := probe.Hook{Kind: probe.Kprobe, Name: multiName,
		Attachments: []probe.Attachment{probe.KprobeMultiAt(seccountProgCountKprobeMulti, cfg.Funcs, cookies)}}
	each := probe.Hook{Kind: probe.Kprobe, Name: eachName,
		Attachments: []probe.Attachment{probe.KprobesEachAt(seccountProgCountKprobe, cfg.Funcs, cookies)}}
	switch {
	case cfg.each:
		return []probe.Hook{each}
	case cfg.byIP:
		return []probe.Hook{fentryIP}
	}
	return []probe.Hook{fentry, fentryIP, multi, each}
}

// lsmFile lists the active LSMs (securityfs).
const lsmFile = "/sys/kernel/security/lsm"

// bpfLSMActive rejects --lsm where the bpf LSM is not active: its programs
// would load and attach there, and never run.
func bpfLSMActive() error {
	b, err := os.ReadFile(lsmFile)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cannot tell whether the bpf LSM is active: no %s (mount securityfs there)", lsmFile)
	}
	if err != nil {
		return err
	}
	if !slices.Contains(strings.Split(strings.TrimSpace(string(b)), ","), "bpf") {
		return fmt.Errorf("the bpf LSM is not active (active: %s; boot with lsm=...,bpf)", strings.TrimSpace(string(b)))
	}
	return nil
}

var spec = tool.Spec[Config, Count]{
	Name:    "seccount",
	Group:   "security",
	Summary: "Count calls of the kernel's security_* functions (LSM hooks)",
	Long: `Count calls of the kernel's security_* functions, the entry points of the
LSM hooks (security_file_open, security_bprm_check, ...), in the kernel, and
print the counts on exit and, with -i, every interval (then the counts of
that interval), as BCC's funccount prints them: a FUNC and COUNT table,
smallest count first, functions never called left out. -p counts one
process's calls only.

PATTERN is a glob (*, ?, [...]) over the names of security_* functions in
the kernel's BTF (default security_*). Functions ftrace cannot hook (those
freed after boot, notrace ones; /sys/kernel/tracing/available_filter_functions)
are left out, and so are, at attach, any the kernel refuses: both are named
on stderr.

Where the kernel has fentry, each function gets its own copy of one small
program (fentry programs are bound to one function when loaded), told its
function by the link's cookie or, where fentry links take none (Debian's
6.1), by the function's address (from /proc/kallsyms); else one
kprobe-multi link takes them all; else one kprobe each. A kernel with none
of these is named with what each lacks, and owl exits with status 2.

--lsm counts with BPF LSM programs instead, on the LSM hook each function
calls (security_file_open: file_open), where the bpf LSM is active (bpf in
/sys/kernel/security/lsm; boot with lsm=...,bpf). A function whose name
has no hook (security_init, or a hook named otherwise) is left out and named
on stderr. An LSM hook runs only where its security_* function calls the
hooks: those that return early (a private inode, say) count less than
with fentry.`,
	Task:    true,
	Load:    loadSeccount,
	Default: func() Config { return Config{Funcs: []string{"security_file_open"}} },
	Hooks:   hooks,
	Configure: func(cfg Config, cs *ebpf.CollectionSpec) error {
		var m seccountMapSpecs
		if err := cs.Assign(&m); err != nil {
			return err
		}
		m.Counts.MaxEntries = uint32(max(1, len(cfg.Funcs)))
		if cs.Programs[seccountProgCountFentryIp] == nil {
			return nil
		}
		index, err := funcIndex(cfg.Funcs)
		if err != nil {
			return err
		}
		m.FuncIndex.MaxEntries = uint32(len(index))
		m.FuncIndex.Contents = index
		return nil
	},
	Stream: func(Config) bool { return false },
	Decoder: func(Config, *probe.Session) (func([]byte, *Count) bool, error) {
		return func([]byte, *Count) bool { return false }, nil
	},
}

// Tool is seccount's registry entry.
var Tool = tool.Register(&spec, command)

// Source is a running seccount.
type Source struct {
	*tool.Source[Count]
	cfg Config
}

// Open loads seccount and attaches it to every function of cfg.
func Open(cfg Config, opts tool.Options) (*Source, error) {
	if len(cfg.Funcs) == 0 {
		return nil, errors.New("seccount: no function to count")
	}
	src, err := tool.Open(&spec, cfg, opts)
	if err != nil {
		return nil, err
	}
	return &Source{Source: src, cfg: cfg}, nil
}

// Skipped names the functions that did not attach (Session.Skipped names
// the LSM hook with --lsm), with the reason.
func (s *Source) Skipped() []probe.Failure {
	out := make([]probe.Failure, len(s.Session.Skipped))
	for i, f := range s.Session.Skipped {
		if s.cfg.LSM {
			f.Hook = Prefix + f.Hook
		}
		out[i] = f
	}
	return out
}

// Counts returns the counts since tracing began, one per function of the
// Config, in its order, zeros included. They are never reset: intervals
// are differences of two reads.
func (s *Source) Counts(now time.Time) ([]Count, error) {
	var m seccountMaps
	if err := s.Assign(&m); err != nil {
		return nil, err
	}
	counts := make([]Count, len(s.cfg.Funcs))
	for i, fn := range s.cfg.Funcs {
		counts[i] = Count{Time: event.Time{Time: now}, Func: fn}
	}
	err := probe.Each(m.Counts, func(k *uint32, perCPU *[]uint64) {
		if int(*k) >= len(counts) {
			return
		}
		var n uint64
		for _, v := range *perCPU {
			n += v
		}
		counts[*k].Count = n
	})
	return counts, err
}

// Functions is what a PATTERN resolved to.
type Functions struct {
	Funcs []string // to count
	// Left lists the matching functions left out: with --lsm those with
	// no LSM hook of their name, else those the kernel's BTF does not
	// list as functions.
	Left []string
	Why  string // why Left were left out
	// LSMHooks are the LSM hooks of Funcs, with --lsm.
	LSMHooks []string
}

// lsmIrregular are security_* functions whose LSM hook is not named after
// them (security_X calling hook X or X_security).
var lsmIrregular = map[string]string{
	"security_prepare_creds":       "cred_prepare",
	"security_transfer_creds":      "cred_transfer",
	"security_create_user_ns":      "userns_create",
	"security_settime64":           "settime",
	"security_vm_enough_memory_mm": "vm_enough_memory",
	"security_sock_rcv_skb":        "socket_sock_rcv_skb",
	"security_sk_classify_flow":    "sk_getsecid",
	"security_skb_classify_flow":   "xfrm_decode_session",
}

// LSMHook returns the LSM hook the function fn calls, one BPF can attach
// to on this kernel (types has bpf_lsm_HOOK), or "": security_X calls X
// (security_file_open: file_open) or X_security (security_bprm_check:
// bprm_check_security), a few are named otherwise (lsmIrregular), and
// functions named security_* that are no LSM entry point (SELinux's
// security_compute_av, security_add_hooks) have none.
func LSMHook(types *btf.Spec, fn string) string {
	rest := strings.TrimPrefix(fn, Prefix)
	for _, hook := range []string{lsmIrregular[fn], rest, rest + "_security"} {
		if hook != "" && isFunc(types, "bpf_lsm_"+hook) {
			return hook
		}
	}
	return ""
}

// errNoMatch is the error of a pattern that matches no security_*
// function.
var errNoMatch = errors.New("matches no security_* function of this kernel")

// Resolve expands pattern (a glob over security_* names) over names, the
// kernel's functions (KernelFunctions), keeping those the kernel's BTF in
// types lists as functions: fentry needs them there. With lsm it keeps
// those whose LSM hook BPF can attach to (a bpf_lsm_HOOK function).
func Resolve(pattern string, lsm bool, types *btf.Spec, names []string) (Functions, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return Functions{}, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	if !strings.HasPrefix(pattern, Prefix) {
		return Functions{}, fmt.Errorf("pattern %q: want a glob over security_* names, as security_file_*", pattern)
	}
	var matched []string
	for _, name := range names {
		if ok, _ := path.Match(pattern, name); ok && strings.HasPrefix(name, Prefix) {
			matched = append(matched, name)
		}
	}
	slices.Sort(matched)
	matched = slices.Compact(matched)
	if len(matched) == 0 {
		return Functions{}, fmt.Errorf("pattern %q %w", pattern, errNoMatch)
	}
	f := Functions{Why: "not in the kernel's BTF"}
	if lsm {
		f.Why = "no LSM hook found for them"
	}
	for _, fn := range matched {
		switch {
		case !lsm && isFunc(types, fn):
			f.Funcs = append(f.Funcs, fn)
		case lsm:
			hook := LSMHook(types, fn)
			if hook == "" {
				f.Left = append(f.Left, fn)
				continue
			}
			f.Funcs = append(f.Funcs, fn)
			f.LSMHooks = append(f.LSMHooks, hook)
		default:
			f.Left = append(f.Left, fn)
		}
	}
	if len(f.Funcs) == 0 {
		return Functions{}, fmt.Errorf("pattern %q: all %d matching functions have %s: %s", pattern, len(f.Left), f.Why, strings.Join(f.Left, ", "))
	}
	return f, nil
}

// isFunc reports whether types has a function called name (the first
// lookup builds cilium/ebpf's name index, ~100 ms for a kernel's BTF,
// which the load then reuses).
func isFunc(types *btf.Spec, name string) bool {
	ts, _ := types.AnyTypesByName(name)
	for _, t := range ts {
		if _, ok := t.(*btf.Func); ok {
			return true
		}
	}
	return false
}

// Where the kernel lists its functions: those ftrace can hook (fentry and
// kprobe-multi attach to no other), else every text symbol.
const (
	ftraceFuncs = "/sys/kernel/tracing/available_filter_functions"
	kallsyms    = "/proc/kallsyms"
)

// KernelFunctions lists the kernel functions seccount may count: those
// ftrace can hook, or where that list cannot be read (no dynamic ftrace,
// lockdown) the text symbols of /proc/kallsyms.
func KernelFunctions() ([]string, error) {
	if f, err := os.Open(ftraceFuncs); err == nil {
		defer f.Close()
		// "name" or "name [module]"
		return readNames(f, func(fields []string) string { return fields[0] })
	}
	f, err := os.Open(kallsyms)
	if err != nil {
		return nil, fmt.Errorf("list the kernel's functions: %w", err)
	}
	defer f.Close()
	// "address type name [module]", text symbols of type t or T.
	return readNames(f, func(fields []string) string {
		if len(fields) < 3 || (fields[1] != "t" && fields[1] != "T") {
			return ""
		}
		return fields[2]
	})
}

// funcIndex maps the kallsyms address of each function of funcs to its
// index, for count_fentry_ip: the address is what bpf_get_func_ip gives
// a fentry program. A name listed at several addresses (static functions
// of different files) gets each: the kernel attaches to one of them.
func funcIndex(funcs []string) ([]ebpf.MapKV, error) {
	want := make(map[string]uint32, len(funcs))
	for i, fn := range funcs {
		want[fn] = uint32(i)
	}
	f, err := os.Open(kallsyms)
	if err != nil {
		return nil, fmt.Errorf("function addresses: %w", err)
	}
	defer f.Close()
	var index []ebpf.MapKV
	hidden := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "address type name [module]"
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || (fields[1] != "t" && fields[1] != "T") {
			continue
		}
		i, ok := want[fields[2]]
		if !ok {
			continue
		}
		addr, err := strconv.ParseUint(fields[0], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("function addresses: %s: %q: %w", kallsyms, sc.Text(), err)
		}
		if addr == 0 {
			hidden = true
			continue
		}
		index = append(index, ebpf.MapKV{Key: addr, Value: i})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("function addresses: %s: %w", kallsyms, err)
	}
	if hidden {
		return nil, fmt.Errorf("function addresses: %w", syms.ErrKptrRestrict)
	}
	// A function kallsyms does not list cannot be attached to either:
	// the kernel finds fentry targets there. So only none is an error.
	if len(index) == 0 {
		return nil, fmt.Errorf("function addresses: none of %d functions is in %s", len(funcs), kallsyms)
	}
	return index, nil
}

// readNames keeps the security_* names that name picks from each line.
func readNames(r io.Reader, name func(fields []string) string) ([]string, error) {
	var names []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		// Names with a dot are compiler clones (.cold, .part.0, .isra.0),
		// not functions of the source.
		if n := name(fields); strings.HasPrefix(n, Prefix) && !strings.Contains(n, ".") {
			names = append(names, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("list the kernel's functions: %w", err)
	}
	return names, nil
}
