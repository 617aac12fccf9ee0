// Package opensnoop traces file opens (BCC's opensnoop): open(2),
// openat(2) and openat2(2) with path, flags, mode and result.
package opensnoop

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/caps"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/pyframes"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/sysnames"
	"github.com/owlbpf/owl/internal/tool"
)

// Str is a string chosen by a process (a path): printed in text and JSON
// with control, non-printable and invalid bytes and the backslash escaped
// as \xNN (event.AppendEscaped), reversibly.
type Str string

// Append appends s escaped.
func (s Str) Append(b []byte) []byte { return event.AppendEscaped(b, []byte(s)) }

// MarshalText gives s escaped, so that JSON carries it as text shows it.
func (s Str) MarshalText() ([]byte, error) { return s.Append(nil), nil }

// Event is one open, with the task part taken when the call started.
type Event struct {
	event.Task
	Syscall string `json:"syscall"` // open, openat or openat2
	// FD is the new descriptor, -1 when the open failed; Errno is then
	// its error (0 on success), ErrnoName its name (null on success).
	FD        int64      `json:"fd"`
	Errno     int        `json:"errno"`
	ErrnoName event.Name `json:"errno_name"`
	// Flags and Mode are the open flags (O_*) and creation mode as given;
	// Dfd the directory fd of a relative path (-100 is AT_FDCWD, the
	// current directory, and open(2)'s).
	Flags int32  `json:"flags"`
	Mode  uint32 `json:"mode"`
	Dfd   int32  `json:"dfd"`
	Path  Str    `json:"path"`
	// PathAtExit: the path could not be read when the call started (its
	// page was not in memory yet) and was read when it returned.
	PathAtExit bool `json:"path_at_exit"`
	// FullPath (-F) is Path made absolute: a relative one joined to the
	// directory it is relative to (the cwd, or dfd's), as seen from the
	// mount namespace's root; "" without -F or when that directory is
	// unknown (a bad dfd). FullPathTruncated: the directory was deeper than
	// DirDepth names or DirBytes bytes; FullPath then starts with ".../"
	// and the innermost names.
	FullPath          Str  `json:"full_path"`
	FullPathTruncated bool `json:"full_path_truncated"`
	// UStack is the user stack at the call (--ustack), innermost first,
	// with Python frames ("lang": "python") in place of the interpreter's.
	UStack []syms.Frame `json:"ustack,omitempty"`
}

// Config is opensnoop's own configuration; -p, -u, --cgroup and --mntns
// are in tool.Options.
type Config struct {
	TID    int      // -t: this thread only (0: any)
	Failed bool     // -x: failed opens only
	Flags  []string // -f: opens with any of these flags (O_RDONLY, O_CREAT...)
	Name   string   // -n: command names containing this
	// FullPath (-F): make relative paths absolute in the kernel
	// (Event.FullPath).
	FullPath bool
	UStack   bool // --ustack: the user stack of each open
}

// The bounds of the directory walk of -F (opensnoop.bpf.c).
const (
	DirDepth = 32   // names
	DirBytes = 4096 // bytes, a NUL after each name
)

// openFlags are the names -f takes, with this architecture's values.
// O_RDONLY, O_WRONLY and O_RDWR are access modes (flags & O_ACCMODE), not
// bits: O_RDONLY is 0.
var openFlags = map[string]int{
	"O_RDONLY": unix.O_RDONLY, "O_WRONLY": unix.O_WRONLY, "O_RDWR": unix.O_RDWR,
	"O_CREAT": unix.O_CREAT, "O_EXCL": unix.O_EXCL, "O_NOCTTY": unix.O_NOCTTY,
	"O_TRUNC": unix.O_TRUNC, "O_APPEND": unix.O_APPEND, "O_NONBLOCK": unix.O_NONBLOCK,
	"O_DSYNC": unix.O_DSYNC, "O_SYNC": unix.O_SYNC, "O_ASYNC": unix.O_ASYNC,
	"O_DIRECT": unix.O_DIRECT, "O_LARGEFILE": unix.O_LARGEFILE, "O_DIRECTORY": unix.O_DIRECTORY,
	"O_NOFOLLOW": unix.O_NOFOLLOW, "O_NOATIME": unix.O_NOATIME, "O_CLOEXEC": unix.O_CLOEXEC,
	"O_PATH": unix.O_PATH, "O_TMPFILE": unix.O_TMPFILE,
}

// FlagNames lists the names -f takes.
func FlagNames() []string {
	names := make([]string, 0, len(openFlags))
	for n := range openFlags {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// flagMasks turns -f names into the BPF filter: a bit per access mode
// (1 << mode) and the other flags' bits.
func flagMasks(names []string) (accmodes, flags uint32, err error) {
	for _, n := range names {
		v, ok := openFlags[n]
		switch {
		case !ok:
			return 0, 0, fmt.Errorf("unknown flag %q: want one of %s", n, strings.Join(FlagNames(), ", "))
		case n == "O_RDONLY" || n == "O_WRONLY" || n == "O_RDWR":
			accmodes |= 1 << v
		default:
			flags |= uint32(v)
		}
	}
	return accmodes, flags, nil
}

const hookName = "tracepoint syscalls:sys_{enter,exit}_{open,openat,openat2}"

func hooks(Config) []probe.Hook {
	return []probe.Hook{{
		Kind: probe.Tracepoint,
		Name: hookName,
		Attachments: []probe.Attachment{
			probe.TracepointAt(opensnoopProgTpEnterOpenat, "syscalls", "sys_enter_openat"),
			probe.TracepointAt(opensnoopProgTpExit, "syscalls", "sys_exit_openat"),
			// openat2 came in 5.6; open(2) is not on arm64.
			probe.Optional(probe.TracepointAt(opensnoopProgTpEnterOpenat2, "syscalls", "sys_enter_openat2")),
			probe.Optional(probe.TracepointAt(opensnoopProgTpExit, "syscalls", "sys_exit_openat2")),
			probe.Optional(probe.TracepointAt(opensnoopProgTpEnterOpen, "syscalls", "sys_enter_open")),
			probe.Optional(probe.TracepointAt(opensnoopProgTpExit, "syscalls", "sys_exit_open")),
		},
	}}
}

func configure(cfg Config, spec *ebpf.CollectionSpec) error {
	var m opensnoopMapSpecs
	var v opensnoopVariableSpecs
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
	if cfg.FullPath {
		m.Fulls.MaxEntries = uint32(cpus)
	}
	accmodes, flags, err := flagMasks(cfg.Flags)
	if err != nil {
		return err
	}
	var failed, fullPath uint8
	if cfg.Failed {
		failed = 1
	}
	if cfg.FullPath {
		fullPath = 1
	}
	for _, set := range []struct {
		v   *ebpf.VariableSpec
		val any
	}{{v.TargTid, uint32(cfg.TID)}, {v.TargFailed, failed}, {v.TargAccmodes, accmodes}, {v.TargFlags, flags}, {v.TargFullPath, fullPath}, {v.WantUstack, cfg.UStack}} {
		if err := set.v.Set(set.val); err != nil {
			return err
		}
	}
	return pyframes.ConfigureUser(spec, cfg.UStack)
}

var spec = tool.Spec[Config, Event]{
	Name:    "opensnoop",
	Group:   "security",
	Summary: "Trace file opens (open, openat, openat2)",
	Long: `Trace open(2), openat(2) and openat2(2): who opened what, with the result
(FD, or -1 and ERR, the errno) and, with -e, the flags (octal) and the
creation mode ("n/a" when neither O_CREAT nor O_TMPFILE asks for one).

The path is read when the call starts; when its page is not in memory yet
(a string the program never touched), it is read again when the call
returns, after the kernel has copied it (JSON "path_at_exit": true). Paths
are printed as the process gave them (relative ones too, but for -F), each control,
non-printable or invalid byte and the backslash as \xNN.

-F (--full-path) prints a relative path joined to the directory it is
relative to: the process's current directory, or for openat(dfd, ...) the
directory open as dfd (BCC's -F always takes the current directory). That
directory's path is found in the kernel when the call returns, walking up
its dentries and mount points to the root of the process's mount namespace
(a chroot is not applied), at most 32 names and 4096 bytes: a deeper one
keeps its innermost names after ".../" (JSON "full_path_truncated": true;
how many is said on exit). Names are joined as they are ("./a" in /tmp is
/tmp/./a). When dfd is not an open file, the path is printed as given and
JSON "full_path" is "".

-t TID keeps one thread (the column is then TID), -x failed opens, -n
command names containing NAME (a plain substring, as BCC's), -f FLAG opens
with any of the given flags (repeat it: -f O_WRONLY -f O_RDWR; O_RDONLY,
O_WRONLY and O_RDWR match the access mode, the others any set bit). All
but -n are applied in the kernel.

--ustack (BCC's -U is the UID column) prints the user stack of each open
under it, taken when the call started. Python processes show their Python frames (function, file:line; "lang":
"python" in JSON) in place of the interpreter's native frames, named from
the process's memory when the event is read. Up to 2048
distinct native stacks are kept; a stack that finds no room is left out
and counted (stack_unavailable).`,
	Task: true,
	// Opens come fast (a build makes tens of thousands a second); most
	// records are ~100 bytes. The reader is woken at 64 KiB; the rest
	// holds the backlog of a burst: 512 KiB and 1 MiB lost a few hundred
	// of 900k opens in bench storms on a 2-CPU VM at load 20, 8 MiB none.
	// RSS counts the ring twice.
	RingBytes: 8 << 20,
	Load:      loadOpensnoop,
	Caps:      func(c Config, _ tool.Options) caps.Set { return caps.If(c.UStack, caps.SysPtrace) }, // --ustack: every process's maps
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: configure,
	// A plain hash (its entries are ~4 KiB, allocated per call): a call
	// that finds it full is counted as map_full, nothing is evicted.
	Pending: opensnoopMapStarts,
	Decoder: func(cfg Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		var us *pyframes.UserStacks
		if cfg.UStack {
			var err error
			if us, err = pyframes.NewUser(s.Assign); err != nil {
				return nil, err
			}
		}
		return func(raw []byte, e *Event) bool { return decode(cfg, s, us, raw, e) }, nil
	},
}

// Tool is opensnoop's registry entry.
var Tool = tool.Register(&spec, command)

// Open loads and attaches opensnoop.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	return tool.Open(&spec, cfg, opts)
}

const headerSize = int(unsafe.Sizeof(opensnoopEvent{}))

var syscalls = [...]string{"open", "openat", "openat2"}

func decode(cfg Config, s *probe.Session, us *pyframes.UserStacks, raw []byte, e *Event) bool {
	r, ok := probe.View[opensnoopEvent](raw)
	if !ok || int(r.PathSize)+int(r.DirSize) > len(raw)-headerSize || int(r.Syscall) >= len(syscalls) {
		return false
	}
	text := raw[headerSize:]
	path, _, _ := bytes.Cut(text[:r.PathSize], []byte{0})
	*e = Event{
		Task:       s.Task(raw),
		Syscall:    syscalls[r.Syscall],
		FD:         r.Ret,
		Flags:      r.Flags,
		Mode:       r.Mode,
		Dfd:        r.Dfd,
		Path:       Str(path),
		PathAtExit: r.PathAtExit != 0,
	}
	if cfg.FullPath {
		e.FullPath, e.FullPathTruncated = fullPath(path, r.Dir, text[r.PathSize:r.PathSize+r.DirSize])
	}
	if r.Ret < 0 {
		e.FD, e.Errno = -1, int(-r.Ret)
		e.ErrnoName = event.Name(sysnames.Errno(e.Errno))
	}
	if cfg.Name != "" && !strings.Contains(e.Task.Comm.String(), cfg.Name) {
		return false
	}
	if us != nil {
		e.UStack = us.Frames(r.Task.Pid, r.Ustack.Native, r.Ustack.Python)
	}
	return true
}

// What the kernel says of the names after the path (DIR_* in
// opensnoop.bpf.c).
const (
	dirNone = iota
	dirComplete
	dirCut
	dirUnknown
)

// fullPath is path made absolute with the directory's names (each ended
// by a NUL, innermost first); truncated when they do not reach the root.
// Components are joined as they are: "./a" in /tmp is "/tmp/./a" (".." and
// symbolic links make a lexical cleaning wrong).
func fullPath(path []byte, dir uint8, names []byte) (Str, bool) {
	switch {
	case dir == dirNone:
		return Str(path), false // absolute or empty: as given
	case dir == dirUnknown:
		return "", false
	}
	var parts [][]byte
	for len(names) > 0 {
		name, rest, _ := bytes.Cut(names, []byte{0})
		parts, names = append(parts, name), rest
	}
	cut := dir != dirComplete
	var b []byte
	if cut {
		b = append(b, "..."...)
	}
	for i := len(parts) - 1; i >= 0; i-- {
		b = append(append(b, '/'), parts[i]...)
	}
	b = append(append(b, '/'), path...)
	return Str(b), cut
}

// HasMode reports whether the call asked for a creation mode (O_CREAT or
// O_TMPFILE): otherwise the kernel ignores it, and -e prints n/a.
func (e *Event) HasMode() bool {
	return e.Mode != 0 || e.Flags&unix.O_CREAT != 0 || e.Flags&unix.O_TMPFILE == unix.O_TMPFILE
}
