package usdt

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/owlbpf/owl/internal/probe"
)

// SpecsMap is the map of bpf/usdt.h that holds the argument specs.
const SpecsMap = "usdt_specs"

// Kinds and flags of struct usdt_arg (bpf/usdt.h).
const (
	kindConst = 1
	kindReg   = 2
	kindMem   = 3

	flagSigned = 1
	flagBase   = 2
	flagIndex  = 4
	flagBias   = 8
)

// argRecord is struct usdt_arg of bpf/usdt.h.
type argRecord struct {
	ValOff     int64
	RegOff     uint16
	IdxOff     uint16
	Kind       uint8
	Size       uint8
	Flags      uint8
	ScaleShift uint8
}

// specRecord is struct usdt_spec of bpf/usdt.h.
type specRecord struct {
	Args   [MaxArgs]argRecord
	Loc    uint64
	Cookie uint64
	Nargs  uint32
	Pad    uint32
}

// encodeArg turns a spec into what the BPF fetcher reads, with register
// offsets for machine.
func encodeArg(a ArgSpec, machine elf.Machine) (argRecord, error) {
	r := argRecord{Size: uint8(a.Size), ValOff: a.Off}
	if a.Signed {
		r.Flags |= flagSigned
	}
	reg := func(name string) (uint16, error) {
		off, ok := regOffset(machine, name)
		if !ok {
			return 0, fmt.Errorf("register %s: not readable on %v", name, machine)
		}
		return off, nil
	}
	var err error
	switch a.Kind {
	case ArgConst:
		r.Kind = kindConst
	case ArgReg:
		r.Kind = kindReg
		r.RegOff, err = reg(a.Reg)
		// %ah is the register's second byte (little-endian).
		r.RegOff += uint16(a.Shift / 8)
	case ArgMem:
		r.Kind = kindMem
		if a.Symbol != "" {
			// The symbol's runtime address: its link-time one plus the
			// load bias, which the fetcher adds. %rip said no more.
			r.ValOff += int64(a.SymbolAddr)
			r.Flags |= flagBias
		} else if a.Reg != "" {
			r.Flags |= flagBase
			r.RegOff, err = reg(a.Reg)
		}
		if a.Symbol != "" && a.Reg != "" && a.Reg != "rip" {
			r.Flags |= flagBase
			r.RegOff, err = reg(a.Reg)
		}
		if err == nil && a.Index != "" {
			r.Flags |= flagIndex
			r.IdxOff, err = reg(a.Index)
			r.ScaleShift = map[int]uint8{1: 0, 2: 1, 4: 2, 8: 3}[a.Scale]
		}
	default:
		err = fmt.Errorf("argument kind %d", a.Kind)
	}
	return r, err
}

// encode returns the spec entry of p, cookie being the caller's value.
func encode(p Probe, cookie uint64) (specRecord, error) {
	s := specRecord{Loc: p.Addr, Cookie: cookie, Nargs: uint32(len(p.Args))}
	for i, a := range p.Args {
		r, err := encodeArg(a, p.Machine)
		if err != nil {
			return specRecord{}, fmt.Errorf("%s argument %d: %w", p.ID(), i, err)
		}
		s.Args[i] = r
	}
	return s, nil
}

// Configure sizes the spec map of cs (a collection that includes
// bpf/usdt.h) and fills it before the load: entry i is probes[i], with
// cookies[i] as its usdt_cookie() (nil: i). Call it from a tool's
// Configure; Attach then attaches at the same probes, in the same order.
func Configure(cs *ebpf.CollectionSpec, probes []Probe, cookies []uint64) error {
	m := cs.Maps[SpecsMap]
	if m == nil {
		return fmt.Errorf("map %s missing from the BPF object (include usdt.h)", SpecsMap)
	}
	if size, err := btf.Sizeof(m.Value); err != nil || size != binary.Size(specRecord{}) {
		return fmt.Errorf("struct usdt_spec is %d bytes in BPF (%v), %d in Go: bpf/usdt.h and internal/usdt disagree", size, err, binary.Size(specRecord{}))
	}
	if cookies != nil && len(cookies) != len(probes) {
		return fmt.Errorf("%d cookies for %d probes", len(cookies), len(probes))
	}
	m.MaxEntries = uint32(max(len(probes), 1))
	m.Contents = m.Contents[:0]
	for i, p := range probes {
		cookie := uint64(i)
		if cookies != nil {
			cookie = cookies[i]
		}
		s, err := encode(p, cookie)
		if err != nil {
			return err
		}
		m.Contents = append(m.Contents, ebpf.MapKV{Key: uint32(i), Value: s})
	}
	return nil
}

// Native is the ELF machine of this process's architecture, whose probes
// it can attach to.
func Native() elf.Machine {
	switch runtime.GOARCH {
	case "amd64":
		return elf.EM_X86_64
	case "arm64":
		return elf.EM_AARCH64
	}
	return elf.EM_NONE
}

// Attachments returns the hook-chain attachments of the program named
// prog at every location of probes: one per file, each location handed
// its index as attach cookie (its entry of the spec map written by
// Configure) and its semaphore registered, so that the kernel increments
// it while attached and *_ENABLED()-guarded probes fire. One uprobe-multi
// link per file where the kernel has them and prog was loaded for them
// (probe.PrepareUprobes), else, or with each, one uprobe per location.
// pid 0 traces every process, else that process only.
func Attachments(prog string, probes []Probe, pid int, each bool) ([]probe.Attachment, error) {
	type file struct{ offsets, refs, cookies []uint64 }
	var order []string
	files := map[string]*file{}
	for i, p := range probes {
		if p.Machine != Native() {
			return nil, fmt.Errorf("%s in %s: a %v probe, and this is %s", p.ID(), p.Path, p.Machine, runtime.GOARCH)
		}
		f := files[p.Path]
		if f == nil {
			f = &file{}
			files[p.Path] = f
			order = append(order, p.Path)
		}
		f.offsets = append(f.offsets, p.Offset)
		f.refs = append(f.refs, p.RefCtrOffset)
		f.cookies = append(f.cookies, uint64(i))
	}
	var as []probe.Attachment
	for _, path := range order {
		f := files[path]
		as = append(as, probe.UprobeRefsAt(prog, path, f.offsets, f.refs, f.cookies, each, pid))
	}
	return as, nil
}
