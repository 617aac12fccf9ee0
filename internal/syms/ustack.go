package syms

// BuildIDFrame is struct bpf_stack_build_id: one frame of a user stack in a
// BPF stack map made with BPF_F_STACK_BUILD_ID (127 of them an entry, the
// unused ones FrameEmpty).
type BuildIDFrame struct {
	Status  int32
	BuildID [BuildIDSize]byte
	Off     uint64 // file offset, or the address with FrameIP
}

// Status of a BuildIDFrame (enum bpf_stack_build_id_status).
const (
	FrameEmpty   = 0 // past the end of the stack
	FrameBuildID = 1 // build-id and file offset
	FrameIP      = 2 // an address: no file with a build-id was mapped there
)

// ResolveUserStack names the frames of a user stack that process pid sent,
// innermost first, up to the first empty one; nil when there is none.
// caller, when not 0, is the return address of the innermost function,
// whose caller the kernel's frame-pointer walk missed (a probe or sample on
// its first instructions, before it set up its frame: missing_caller in
// the BPF programs), and ip is that function's address: the caller is put
// back after the innermost frame.
func (p *Processes) ResolveUserStack(pid uint32, frames []BuildIDFrame, ip, caller uint64) []Frame {
	n := 0
	for n < len(frames) && frames[n].Status != FrameEmpty {
		n++
	}
	if n == 0 {
		return nil
	}
	out := make([]Frame, 0, n+1)
	for i, f := range frames[:n] {
		if f.Status == FrameBuildID {
			out = append(out, p.ResolveBuildID(pid, f.BuildID[:], f.Off))
		} else {
			out = append(out, p.Resolve(pid, f.Off))
		}
		if i == 0 && caller != 0 {
			out = append(out, p.missedCaller(pid, f, ip, caller))
		}
	}
	return out
}

// missedCaller names the caller at return address caller of the function
// at ip, whose frame is top: in the file of the function (the usual case)
// from the build-id, at top's file offset plus the distance between the
// two addresses; elsewhere from the process's mappings.
func (p *Processes) missedCaller(pid uint32, top BuildIDFrame, ip, caller uint64) Frame {
	if top.Status == FrameBuildID {
		f := p.ResolveBuildID(pid, top.BuildID[:], top.Off+(caller-ip))
		if f.Symbol != Unknown {
			return f
		}
	}
	return p.Resolve(pid, caller)
}
