package pyframes

import (
	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/syms"
)

// MaxUserStacks is how many distinct native user stacks owl_ustacks keeps
// (127 frames of 32 bytes each, preallocated: 8 MB), as capable's -U.
const MaxUserStacks = 2048

// maxProcesses bounds the processes whose mappings UserStacks keeps.
const maxProcesses = 1024

// ConfigureUser sizes owl_ustacks (one entry when user stacks are not
// asked for) and configures the Python walk, for a tool that takes whole
// user stacks with owl_user_stack() of bpf/python.h.
func ConfigureUser(spec *ebpf.CollectionSpec, enabled bool) error {
	var s struct {
		Stacks *ebpf.MapSpec `ebpf:"owl_ustacks"`
	}
	if err := spec.Assign(&s); err != nil {
		return err
	}
	s.Stacks.MaxEntries = 1
	if enabled {
		s.Stacks.MaxEntries = MaxUserStacks
	}
	return Configure(spec, enabled)
}

// UserStacks names the stacks owl_user_stack() takes: native frames from
// build-ids (or the process's mappings) merged with Python frames. For the
// ring's single reader.
type UserStacks struct {
	Walker *Walker
	Procs  *syms.Processes
	native *ebpf.Map
	frames [127]syms.BuildIDFrame
}

// NewUser returns the UserStacks of a session (assign is Session.Assign),
// looking at processes as New does.
func NewUser(assign func(any) error) (*UserStacks, error) {
	var m struct {
		Stacks *ebpf.Map `ebpf:"owl_ustacks"`
	}
	if err := assign(&m); err != nil {
		return nil, err
	}
	w, err := New(assign)
	if err != nil {
		return nil, err
	}
	u := &UserStacks{Walker: w, Procs: syms.NewProcesses(syms.NewCache(), maxProcesses), native: m.Stacks}
	if w.pid != 0 {
		u.Procs.Learn(w.pid)
	}
	return u, nil
}

// Frames returns the user stack of process pid, innermost first, from
// struct owl_ustack's two ids: nil when neither has frames.
func (u *UserStacks) Frames(pid uint32, native int32, python uint64) []syms.Frame {
	py := u.Walker.Python(pid, python)
	var out []syms.Frame
	if native >= 0 && u.native.Lookup(uint32(native), &u.frames) == nil {
		out = u.Procs.ResolveUserStack(pid, u.frames[:], 0, 0)
	}
	return Merge(out, py)
}
