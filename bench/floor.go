package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// floor is an empty BPF program (return 0) attached to tracepoints: what
// any tracer on them pays before it does anything, the floor owl's added
// cost per event is compared with.
type floor struct {
	prog  *ebpf.Program
	links []link.Link
}

// attachFloor attaches the empty program to each "group:name".
func attachFloor(tracepoints []string) (*floor, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "owl_bench_floor", Type: ebpf.TracePoint, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("load the empty program: %w", err)
	}
	f := &floor{prog: prog}
	for _, tp := range tracepoints {
		group, name, _ := strings.Cut(tp, ":")
		l, err := link.Tracepoint(group, name, prog, nil)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("attach the empty program to %s: %w", tp, err)
		}
		f.links = append(f.links, l)
	}
	return f, nil
}

func (f *floor) close() error {
	var errs []error
	for _, l := range f.links {
		errs = append(errs, l.Close())
	}
	return errors.Join(append(errs, f.prog.Close())...)
}
