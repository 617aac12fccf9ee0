package faults

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// obj is a BPF object in the kernel: a program, a map or a link, by id.
type obj struct {
	Kind string // "prog", "map" or "link", as /proc/PID/fdinfo names them
	ID   uint32
}

func (o obj) String() string { return fmt.Sprintf("%s %d", o.Kind, o.ID) }

var nextIDCmd = map[string]uintptr{
	"prog": unix.BPF_PROG_GET_NEXT_ID,
	"map":  unix.BPF_MAP_GET_NEXT_ID,
	"link": unix.BPF_LINK_GET_NEXT_ID,
}

// kernelObjects lists every BPF program, map and link in the kernel, by
// their ids (BPF_*_GET_NEXT_ID: no bpftool needed, so the qemu guests run
// it too).
func kernelObjects() (map[obj]bool, error) {
	all := map[obj]bool{}
	for kind, cmd := range nextIDCmd {
		// union bpf_attr for *_GET_NEXT_ID: start_id, next_id, open_flags.
		var attr struct{ start, next, flags uint32 }
		for {
			_, _, errno := unix.Syscall(unix.SYS_BPF, cmd, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
			if errno == unix.ENOENT {
				break
			}
			if errno != 0 {
				return nil, fmt.Errorf("bpf %s get next id after %d: %w", kind, attr.start, errno)
			}
			all[obj{kind, attr.next}] = true
			attr.start = attr.next
		}
	}
	return all, nil
}

// heldBy lists the BPF objects process pid holds a descriptor of, from
// /proc/PID/fdinfo (prog_id, map_id, link_id lines).
func heldBy(pid string) map[obj]bool {
	dir := filepath.Join("/proc", pid, "fdinfo")
	ents, _ := os.ReadDir(dir)
	held := map[obj]bool{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			key, val, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			kind, ok := strings.CutSuffix(key, "_id")
			if !ok || nextIDCmd[kind] == 0 {
				continue
			}
			if n, err := strconv.ParseUint(strings.TrimSpace(val), 10, 32); err == nil {
				held[obj{kind, uint32(n)}] = true
			}
		}
	}
	return held
}

// heldByAnyone lists the objects some live process holds, directly or
// through another: a link holds its program, a program its maps.
func heldByAnyone() map[obj]bool {
	held := map[obj]bool{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err == nil {
			for o := range heldBy(p.Name()) {
				held[o] = true
			}
		}
	}
	for o := range held {
		if o.Kind != "link" {
			continue
		}
		if l, err := link.NewFromID(link.ID(o.ID)); err == nil {
			if info, err := l.Info(); err == nil {
				held[obj{"prog", uint32(info.Program)}] = true
			}
			l.Close()
		}
	}
	for o := range held {
		if o.Kind != "prog" {
			continue
		}
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(o.ID)); err == nil {
			if info, err := p.Info(); err == nil {
				ids, _ := info.MapIDs()
				for _, id := range ids {
					held[obj{"map", uint32(id)}] = true
				}
			}
			p.Close()
		}
	}
	return held
}

// name is what the kernel calls o (a link by its program's name), "" once
// it is gone.
func name(o obj) string {
	switch o.Kind {
	case "prog":
		p, err := ebpf.NewProgramFromID(ebpf.ProgramID(o.ID))
		if err != nil {
			return ""
		}
		defer p.Close()
		info, err := p.Info()
		if err != nil {
			return ""
		}
		return "prog " + info.Name
	case "map":
		m, err := ebpf.NewMapFromID(ebpf.MapID(o.ID))
		if err != nil {
			return ""
		}
		defer m.Close()
		info, err := m.Info()
		if err != nil {
			return ""
		}
		return "map " + info.Name
	case "link":
		l, err := link.NewFromID(link.ID(o.ID))
		if err != nil {
			return ""
		}
		defer l.Close()
		info, err := l.Info()
		if err != nil {
			return ""
		}
		if p := name(obj{"prog", uint32(info.Program)}); p != "" {
			return "link to " + p
		}
		return "link"
	}
	return ""
}

// exists reports whether o is still in the kernel.
func exists(o obj) bool {
	var err error
	switch o.Kind {
	case "prog":
		var p *ebpf.Program
		if p, err = ebpf.NewProgramFromID(ebpf.ProgramID(o.ID)); err == nil {
			p.Close()
		}
	case "map":
		var m *ebpf.Map
		if m, err = ebpf.NewMapFromID(ebpf.MapID(o.ID)); err == nil {
			m.Close()
		}
	case "link":
		var l link.Link
		if l, err = link.NewFromID(link.ID(o.ID)); err == nil {
			l.Close()
		}
	}
	// Anything but "no such id" (ENOENT) counts as there.
	return !errors.Is(err, os.ErrNotExist)
}

// settle is how long the kernel may take to free what a dead process
// held: links go through a workqueue, programs and maps through RCU. On a
// loaded 2-CPU host (or a TCG guest) this is far more than needed.
const settle = 10 * time.Second

// stillThere waits up to settle for objs to go and returns those that
// did not.
func stillThere(objs map[obj]string) []string {
	deadline := time.Now().Add(settle)
	for {
		var left []string
		for o, n := range objs {
			if exists(o) {
				left = append(left, fmt.Sprintf("%v (%s)", o, n))
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			slices.Sort(left)
			return left
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// orphans are the objects that appeared since before (a kernelObjects
// list) and stay, for settle, held by no live process, with names among
// names (those a tool makes): what a tool killed at the wrong moment would
// leave behind (pinned, or attached without a descriptor). Other
// engineers' and packages' tests make objects all the time: those are
// held by their processes while they exist, and only objects orphaned at
// the first look are looked at again, so that others' objects passing
// through teardown are not blamed.
func orphans(before map[obj]bool, names map[string]bool) ([]string, error) {
	now, err := kernelObjects()
	if err != nil {
		return nil, err
	}
	suspects := map[obj]string{}
	for o := range now {
		if !before[o] {
			suspects[o] = ""
		}
	}
	deadline := time.Now().Add(settle)
	for first := true; len(suspects) > 0; first = false {
		held := heldByAnyone()
		for o := range suspects {
			n := name(o)
			if n == "" || held[o] || (first && !names[n]) {
				delete(suspects, o)
				continue
			}
			suspects[o] = n
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	var left []string
	for o, n := range suspects {
		left = append(left, fmt.Sprintf("%v (%s)", o, n))
	}
	slices.Sort(left)
	return left, nil
}

// tracefsProbeFiles are where legacy (tracefs) kprobes and uprobes are
// made; an entry there outlives a SIGKILLed tracer.
var tracefsProbeFiles = []string{"/sys/kernel/tracing/uprobe_events", "/sys/kernel/tracing/kprobe_events"}

// tracefsProbes lists the probe definitions in tracefs (files this kernel
// lacks, as kprobe_events here, count as empty).
func tracefsProbes() map[string]bool {
	lines := map[string]bool{}
	for _, f := range tracefsProbeFiles {
		b, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines[filepath.Base(f)+": "+l] = true
			}
		}
	}
	return lines
}

// newProbes are the tracefs probe definitions not in before.
func newProbes(before map[string]bool) []string {
	var added []string
	for l := range tracefsProbes() {
		if !before[l] {
			added = append(added, l)
		}
	}
	slices.Sort(added)
	return added
}
