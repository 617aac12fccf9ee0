// Package pyframes puts the Python frames of a CPython process into its
// user stacks: the function, file and line the interpreter ran, in place
// of the interpreter's own native frames.
//
// The walk is in BPF (bpf/python.h): from the thread pointer, glibc's
// thread-specific data gives the thread's PyThreadState (the GIL-state TSS
// key; the current-thread pointer is NULL at a syscall, where the GIL is
// released), whose frame chain gives (code object, instruction) pairs. This
// package finds Python processes and fills in, per process, where the key
// is and the offsets of its Python version (from _Py_DebugOffsets in 3.13+,
// else a table by minor version; code-object fields from PyCode_Type's
// member table; glibc's layout from its pthread_getspecific), then names
// the frames from the code objects in the process's memory, and merges
// them with the native frames.
//
// A tool includes bpf/python.h, calls Configure in its Configure,
// owl_py_stack() where it takes a user stack, New in its decoder, and for
// each record Walker.Python first, then Merge with the native frames.
// Tools that had no user stacks take whole ones with owl_user_stack() and
// UserStacks (ConfigureUser, NewUser, UserStacks.Frames).
package pyframes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/kbtf"
	"github.com/owlbpf/owl/internal/syms"
)

// MaxFrames is how many Python frames a stack keeps (OWL_PY_MAX_FRAMES).
const MaxFrames = 64

// Bounds on what is held: Python processes configured in the kernel
// (owl_py_procs), Python stacks (owl_py_stacks, an LRU), processes known
// not to run Python, and code objects named per process.
const (
	maxProcs       = 4096
	maxStacks      = 8192
	maxOthers      = 1 << 16
	maxCodeObjects = 1 << 14
	sweepEvery     = time.Second
	recheckEvery   = time.Second
)

type specs struct {
	Enabled *ebpf.VariableSpec `ebpf:"owl_py_enabled"`
	OffTP   *ebpf.VariableSpec `ebpf:"owl_py_off_tp"`
	Procs   *ebpf.MapSpec      `ebpf:"owl_py_procs"`
	Stacks  *ebpf.MapSpec      `ebpf:"owl_py_stacks"`
}

type objects struct {
	Procs  *ebpf.Map      `ebpf:"owl_py_procs"`
	Stacks *ebpf.Map      `ebpf:"owl_py_stacks"`
	Tgid   *ebpf.Variable `ebpf:"owl_targ_tgid"`
}

// Configure turns the walk on (or leaves it off, its tables one entry
// each) in a collection that includes bpf/python.h, before it is loaded.
func Configure(spec *ebpf.CollectionSpec, enabled bool) error {
	var s specs
	if err := spec.Assign(&s); err != nil {
		return err
	}
	if !enabled {
		s.Procs.MaxEntries, s.Stacks.MaxEntries = 1, 1
		return nil
	}
	s.Procs.MaxEntries, s.Stacks.MaxEntries = maxProcs, maxStacks
	path := "task_struct.thread.fsbase"
	if runtime.GOARCH == "arm64" {
		path = "task_struct.thread.uw.tp_value"
	}
	off, err := kbtf.KernelOffsets(path)
	if err != nil {
		return fmt.Errorf("python frames: %w", err)
	}
	return errors.Join(s.Enabled.Set(true), s.OffTP.Set(off[0]))
}

// stackBytes is the size of struct owl_py_stack of bpf/python.h: n,
// truncated (u32 each), entry (u64), then MaxFrames (code, ip) pairs. Read
// as bytes: decoding a struct by reflection cost ~10 µs a stack.
const stackBytes = 16 + MaxFrames*16

// Walker names the Python stacks of one loaded collection. It is meant for
// the ring's single reader: not safe for concurrent use.
type Walker struct {
	pid           uint32 // the pid filter, 0 for none
	procs, stacks *ebpf.Map
	pys           map[uint32]*process  // Python processes configured in the kernel
	others        map[uint32]time.Time // processes that ran no Python when last looked at
	warned        map[string]bool
	lastSweep     time.Time
	rec           [stackBytes]byte
	// named holds the stacks named so far by (pid, id): an id is a hash of
	// the frames, so the same id is the same stack, and a busy program
	// sends few distinct ones. Cleared when full.
	named map[stackKey]Stack
	files *files

	// Warn receives, once per kind, why a Python process's frames cannot
	// be shown (an unknown version); os.Stderr unless set.
	Warn io.Writer
}

type stackKey struct {
	pid   uint32
	start uint64 // the process's start time: a pid can be reused
	id    uint64
}

// maxNamed bounds the named stacks the Walker keeps.
const maxNamed = 1 << 14

// process is a Python process: its interpreter and the code objects named
// so far.
type process struct {
	gone  bool // exited
	exe   exeID
	start uint64
	in    *interp
	codes map[uint64]*code
}

// New returns the Walker of a session (assign is Session.Assign). With a
// pid filter (-p, owl_targ_tgid of bpf/owl.h) that process is looked at
// now, else every process running now; processes seen later are looked at
// on their first user stack.
func New(assign func(any) error) (*Walker, error) {
	var o objects
	if err := assign(&o); err != nil {
		return nil, err
	}
	var pid uint32
	if err := o.Tgid.Get(&pid); err != nil {
		return nil, fmt.Errorf("read the pid filter: %w", err)
	}
	w := &Walker{files: newFiles(), named: map[stackKey]Stack{}, pid: pid, procs: o.Procs, stacks: o.Stacks, pys: map[uint32]*process{}, others: map[uint32]time.Time{},
		warned: map[string]bool{}, Warn: os.Stderr, lastSweep: time.Now()}
	if pid != 0 {
		w.Learn(pid)
		return w, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("python frames: %w", err)
	}
	for _, e := range ents {
		var p uint32
		if _, err := fmt.Sscan(e.Name(), &p); err == nil && p != 0 && uint32(os.Getpid()) != p {
			w.Learn(p)
		}
	}
	return w, nil
}

// Learn looks at process pid, unless it is known to run Python or was
// looked at in the last second (it may exec Python later), and when it
// runs a Python owl knows, tells the kernel where its frames are.
func (w *Walker) Learn(pid uint32) {
	if p, ok := w.pys[pid]; ok && !p.gone {
		return
	}
	now := time.Now()
	if t, ok := w.others[pid]; ok && now.Sub(t) < recheckEvery {
		return
	}
	start, err := readStartTime(pid)
	if err != nil {
		return
	}
	in, err := detect(pid, w.files)
	if err != nil {
		var u *UnsupportedError
		if errors.As(err, &u) {
			w.warn(u.Error())
		} else {
			w.warn("python frames: " + err.Error())
		}
	}
	if in == nil || len(w.pys) >= maxProcs {
		if len(w.others) >= maxOthers {
			clear(w.others)
		}
		w.others[pid] = now
		return
	}
	delete(w.others, pid)
	if err := w.procs.Put(pid, &in.rec); err != nil {
		w.warn(fmt.Sprintf("python frames of process %d: %v", pid, err))
		return
	}
	w.pys[pid] = &process{start: start, exe: exeOf(pid), in: in, codes: map[uint64]*code{}}
}

func (w *Walker) warn(msg string) {
	if w.warned[msg] || w.Warn == nil {
		return
	}
	w.warned[msg] = true
	fmt.Fprintf(w.Warn, "owl: %s\n", msg)
}

// sweep forgets, once a second, the Python processes that exited, exec'd
// another program or whose pid names another process now, and takes them
// out of the kernel table.
func (w *Walker) sweep() {
	if time.Since(w.lastSweep) < sweepEvery {
		return
	}
	w.lastSweep = time.Now()
	for pid, p := range w.pys {
		s, err := readStartTime(pid)
		switch {
		case err == nil && s == p.start && exeOf(pid) == p.exe:
		case err != nil && !p.gone:
			// Exited: out of the kernel table, but its code objects
			// still name the stacks it sent before (stackcount reads
			// them at its report), until the pid is reused.
			p.gone = true
			_ = w.procs.Delete(pid)
		case err == nil:
			delete(w.pys, pid)
			_ = w.procs.Delete(pid)
		}
	}
}

// Stack is the Python part of one user stack, named.
type Stack struct {
	// Frames are innermost first; Lang "python", Symbol the qualified
	// name, File and Line where it was; Symbol [unknown] and no file when
	// the code object could not be read (the process exited meanwhile).
	Frames []syms.Frame
	// entry[i]: frame i is the first one its C-level eval call ran, the
	// last of those one native eval frame stands for.
	entry  []bool
	module string // the file the interpreter is in, as native frames name it
}

// Python names the Python frames of stack id (from owl_py_stack) of
// process pid. Call it as soon as the record is read, before naming the
// native frames: the code objects are read from the process's memory,
// which is gone once it exited. A process not looked at yet is looked at
// now, for its next stacks; id 0, or a stack no longer in the table, gives
// none.
func (w *Walker) Python(pid uint32, id uint64) Stack {
	w.sweep()
	p := w.pys[pid]
	if p == nil {
		w.Learn(pid)
		return Stack{}
	}
	if id == 0 {
		return Stack{}
	}
	key := stackKey{pid, p.start, id}
	if st, ok := w.named[key]; ok {
		return st
	}
	if err := w.stacks.Lookup(id, w.rec[:]); err != nil {
		return Stack{}
	}
	le := binary.LittleEndian
	n := min(int(le.Uint32(w.rec[0:])), MaxFrames)
	entryBits := le.Uint64(w.rec[8:])
	st := Stack{Frames: make([]syms.Frame, 0, n), entry: make([]bool, 0, n), module: p.in.module}
	mem := memory(pid)
	complete := true
	for i := range n {
		code, ip := le.Uint64(w.rec[16+16*i:]), le.Uint64(w.rec[24+16*i:])
		c, ok := p.codes[code]
		if !ok && !p.gone {
			var err error
			if c, err = p.in.readCode(mem, code); err != nil {
				c = nil // not a code object (now): the process may have exited
			}
			if len(p.codes) >= maxCodeObjects {
				clear(p.codes)
			}
			p.codes[code] = c
		}
		fr := syms.Frame{Addr: code, Symbol: syms.Unknown, Lang: "python"}
		if c != nil {
			fr.Symbol, fr.File, fr.Line = c.name, c.file, p.in.line(c, code, ip)
		} else {
			complete = false
		}
		st.Frames = append(st.Frames, fr)
		st.entry = append(st.entry, entryBits>>i&1 != 0)
	}
	if len(st.entry) > 0 {
		st.entry[len(st.entry)-1] = true // the outermost ends its group
	}
	if complete {
		if len(w.named) >= maxNamed {
			clear(w.named)
		}
		w.named[key] = st
	}
	return st
}

// Merge returns a user stack with the Python frames py in place of the
// interpreter's native frames: each native _PyEval_EvalFrameDefault stands
// for the Python frames its call ran, the interpreter's other functions
// are left out, native frames of other files (C extensions, libc) stay
// where they are. Without frame pointers in the interpreter the native
// walk stops in it: the Python frames then follow the native frames above
// the interpreter. Past an interpreter frame, a native frame in no file
// (unnamed, no module) is left out: it is what a frame-pointer walk reads
// from a frame without one, not a caller.
func Merge(native []syms.Frame, py Stack) []syms.Frame {
	if len(py.Frames) == 0 {
		return native
	}
	isInterp := func(f syms.Frame) bool { return f.Module == py.module }
	evals := 0
	for _, f := range native {
		if isInterp(f) && isEval(f.Symbol) {
			evals++
		}
	}
	out := make([]syms.Frame, 0, len(native)+len(py.Frames))
	if evals == 0 {
		// The walk broke in the interpreter (no frame pointers) or
		// before it: native frames down to the first interpreter or
		// unnamed frame, the Python frames, then any named native frames
		// past the interpreter's.
		i := 0
		for i < len(native) && !isInterp(native[i]) && native[i].Symbol != syms.Unknown {
			out = append(out, native[i])
			i++
		}
		out = append(out, py.Frames...)
		for _, f := range native[i:] {
			if !isInterp(f) && f.Symbol != syms.Unknown {
				out = append(out, f)
			}
		}
		return out
	}
	j, walked := 0, false // walked: the walk went through the interpreter
	for _, f := range native {
		switch {
		case !isInterp(f):
			if !walked || f.Symbol != syms.Unknown || f.Module != "" {
				out = append(out, f)
			}
		case isEval(f.Symbol):
			for j < len(py.Frames) {
				out = append(out, py.Frames[j])
				j++
				if py.entry[j-1] {
					break
				}
			}
		}
		walked = walked || isInterp(f)
	}
	return append(out, py.Frames[j:]...)
}

// isEval reports the interpreter's eval loop (and its split-off cold part).
func isEval(sym string) bool {
	return strings.HasPrefix(sym, "_PyEval_EvalFrameDefault") || strings.HasPrefix(sym, "PyEval_EvalFrameEx")
}

// exeID is the file a process runs: an exec keeps the pid and the start
// time but changes it.
type exeID struct{ dev, ino uint64 }

func exeOf(pid uint32) exeID {
	var st unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st) != nil {
		return exeID{}
	}
	return exeID{st.Dev, st.Ino}
}

// readStartTime returns field 22 of /proc/PID/stat, which tells a process
// from a later one with the same pid.
func readStartTime(pid uint32) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("no ')' in stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, errors.New("short stat")
	}
	var start uint64
	_, err = fmt.Sscan(f[19], &start)
	return start, err
}
