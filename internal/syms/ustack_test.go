package syms

import (
	"slices"
	"testing"
)

// TestResolveUserStack names a build-id stack of a real C program as the
// kernel would hand it over: a build-id frame, the caller the walk missed
// put back after it (in the same file, and in another one), an address
// frame, and nothing past the first empty frame.
func TestResolveUserStack(t *testing.T) {
	bin := buildC(t, t.TempDir(), "owl-ustack", "-fPIE", "-pie")
	cmd, _, addrs := runTarget(t, bin)
	pid := cmd.Process.Pid
	fn, getpid := addrs["owl_test_target"], addrs["getpid"]
	top := BuildIDFrame{Status: FrameBuildID, Off: fileOffset(t, pid, fn)}
	copy(top.BuildID[:], buildIDOf(t, bin))
	var frames [127]BuildIDFrame
	frames[0] = top
	frames[1] = BuildIDFrame{Status: FrameIP, Off: getpid + 2}
	frames[3] = top // past the empty frames[2]: not part of the stack

	p := NewProcesses(nil, 8)
	own := p.Resolve(uint32(pid), fn)
	if own.Symbol != "owl_test_target" {
		t.Fatalf("Resolve(owl_test_target) = %+v", own)
	}
	inLibc := p.Resolve(uint32(pid), getpid+2)
	for _, c := range []struct {
		name       string
		ip, caller uint64
		want       []Frame
	}{
		{"no caller missed", 0, 0, []Frame{own, inLibc}},
		// The distance from ip to caller, added to top's file offset,
		// names the caller from the build-id.
		{"caller in the same file", fn, fn + 9, []Frame{own, p.Resolve(uint32(pid), fn+9), inLibc}},
		// Outside the file of top: from the process's mappings.
		{"caller in another file", fn, getpid + 2, []Frame{own, inLibc, inLibc}},
	} {
		if got := p.ResolveUserStack(uint32(pid), frames[:], c.ip, c.caller); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	if got := p.ResolveUserStack(uint32(pid), make([]BuildIDFrame, 127), 0, 0); got != nil {
		t.Errorf("empty stack: got %v, want nil", got)
	}
}
