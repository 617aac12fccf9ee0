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
// A tool includes bpf/python.h, calls pyframes.Configure in its Configure,
// owl_py_stack() where it takes a user stack, New in its decoder and
// Walker.Merge on each user stack.
package pyframes

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/cilium/ebpf"

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
)

type specs struct {
	Enabled *ebpf.VariableSpec `ebpf:"owl_py_enabled"`
	OffTP   *ebpf.VariableSpec `ebpf:"owl_py_off_tp"`
	Procs   *ebpf.MapSpec      `ebpf:"owl_py_procs"`
	Stacks  *ebpf.MapSpec      `ebpf:"owl_py_stacks"`
}

type objects struct {
	Procs  *ebpf.Map `ebpf:"owl_py_procs"`
	Stacks *ebpf.Map `ebpf:"owl_py_stacks"`
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

// stackRecord is struct owl_py_stack of bpf/python.h.
type stackRecord struct {
	N         uint32
	Truncated uint32
	Entry     uint64
	F         [MaxFrames]struct{ Code, IP uint64 }
}

// Walker names the Python stacks of one loaded collection. It is meant for
// the ring's single reader: not safe for concurrent use.
type Walker struct {
	procs, stacks *ebpf.Map
	pys           map[uint32]*process // Python processes configured in the kernel
	others        map[uint32]uint64   // pid → start time of processes that run no Python
	warned        map[string]bool
	lastSweep     time.Time
	rec           stackRecord

	// Warn receives, once per kind, why a Python process's frames cannot
	// be shown (an unknown version); os.Stderr unless set.
	Warn io.Writer
}

// process is a Python process: its interpreter and the code objects named
// so far.
type process struct {
	gone  bool // exited
	start uint64
	in    *interp
	codes map[uint64]*code
}

// New returns the Walker of a session (assign is Session.Assign). pid is
// the tool's pid filter: that process is looked at now, or, with 0, every
// process running now; processes seen later are looked at on their first
// user stack.
func New(assign func(any) error, pid uint32) (*Walker, error) {
	var o objects
	if err := assign(&o); err != nil {
		return nil, err
	}
	w := &Walker{procs: o.Procs, stacks: o.Stacks, pys: map[uint32]*process{}, others: map[uint32]uint64{},
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

// Learn looks at process pid, if not done yet, and when it runs a Python
// owl knows, tells the kernel where its frames are.
func (w *Walker) Learn(pid uint32) {
	if p, ok := w.pys[pid]; ok && !p.gone {
		return
	}
	start, err := readStartTime(pid)
	if err != nil {
		return
	}
	if s, ok := w.others[pid]; ok && s == start {
		return
	}
	in, err := detect(pid)
	if err != nil {
		var u *UnsupportedError
		if errors.As(err, &u) {
			w.warn(u.Error())
		} else if !os.IsNotExist(err) && !errors.Is(err, os.ErrNotExist) {
			w.warn(fmt.Sprintf("python frames of process %d: %v", pid, err))
		}
	}
	if in == nil || len(w.pys) >= maxProcs {
		if len(w.others) >= maxOthers {
			clear(w.others)
		}
		w.others[pid] = start
		return
	}
	if err := w.procs.Put(pid, &in.rec); err != nil {
		w.warn(fmt.Sprintf("python frames of process %d: %v", pid, err))
		return
	}
	w.pys[pid] = &process{start: start, in: in, codes: map[uint64]*code{}}
}

func (w *Walker) warn(msg string) {
	if w.warned[msg] || w.Warn == nil {
		return
	}
	w.warned[msg] = true
	fmt.Fprintf(w.Warn, "owl: %s\n", msg)
}

// sweep forgets, once a second, the Python processes that exited or whose
// pid names another process now, and takes them out of the kernel table.
func (w *Walker) sweep() {
	if time.Since(w.lastSweep) < sweepEvery {
		return
	}
	w.lastSweep = time.Now()
	for pid, p := range w.pys {
		s, err := readStartTime(pid)
		switch {
		case err == nil && s == p.start:
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

// Frames returns the Python frames of stack id (from owl_py_stack) of
// process pid, innermost first, and for each whether it is the first its
// C-level eval call ran (the last a native eval frame stands for). None
// when id is 0 or the stack is gone.
func (w *Walker) Frames(pid uint32, id uint64) ([]syms.Frame, []bool) {
	p := w.pys[pid]
	if id == 0 || p == nil {
		return nil, nil
	}
	if err := w.stacks.Lookup(id, &w.rec); err != nil {
		return nil, nil
	}
	n := min(int(w.rec.N), MaxFrames)
	frames, entry := make([]syms.Frame, 0, n), make([]bool, 0, n)
	mem := memory(pid)
	for i := range n {
		f := w.rec.F[i]
		c, ok := p.codes[f.Code]
		if !ok && !p.gone {
			var err error
			if c, err = p.in.readCode(mem, f.Code); err != nil {
				c = nil // not a code object, or the process is gone
			}
			if len(p.codes) >= maxCodeObjects {
				clear(p.codes)
			}
			p.codes[f.Code] = c
		}
		fr := syms.Frame{Addr: f.Code, Symbol: syms.Unknown, Lang: "python"}
		if c != nil {
			fr.Symbol, fr.File, fr.Line = c.name, c.file, p.in.line(c, f.Code, f.IP)
		}
		frames = append(frames, fr)
		entry = append(entry, w.rec.Entry>>i&1 != 0)
	}
	if n > 0 && len(entry) > 0 {
		entry[len(entry)-1] = true // the outermost ends its group
	}
	return frames, entry
}

// Merge returns the user stack of process pid with its Python frames (stack
// id) in place of the interpreter's native frames: each native
// _PyEval_EvalFrameDefault stands for the Python frames its call ran, the
// interpreter's other functions are left out, native frames of other files
// (C extensions, libc) stay where they are. Without frame pointers in the
// interpreter the native walk stops in it: the Python frames then follow
// the native frames above the interpreter. A process not looked at yet is
// looked at now, for its next stacks.
func (w *Walker) Merge(pid uint32, native []syms.Frame, id uint64) []syms.Frame {
	w.sweep()
	p, ok := w.pys[pid]
	if !ok {
		w.Learn(pid)
		return native
	}
	py, entry := w.Frames(pid, id)
	if len(py) == 0 {
		return native
	}
	isInterp := func(f syms.Frame) bool { return f.Module == p.in.module }
	evals := 0
	for _, f := range native {
		if isInterp(f) && isEval(f.Symbol) {
			evals++
		}
	}
	out := make([]syms.Frame, 0, len(native)+len(py))
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
		out = append(out, py...)
		for _, f := range native[i:] {
			if !isInterp(f) && f.Symbol != syms.Unknown {
				out = append(out, f)
			}
		}
		return out
	}
	j := 0
	for _, f := range native {
		switch {
		case !isInterp(f):
			out = append(out, f)
		case isEval(f.Symbol):
			for j < len(py) {
				out = append(out, py[j])
				j++
				if entry[j-1] {
					break
				}
			}
		}
	}
	return append(out, py[j:]...)
}

// isEval reports the interpreter's eval loop (and its split-off cold part).
func isEval(sym string) bool {
	return strings.HasPrefix(sym, "_PyEval_EvalFrameDefault") || strings.HasPrefix(sym, "PyEval_EvalFrameEx")
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
