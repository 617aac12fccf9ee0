package kbtf

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

// owlPaths are the offsets owl's BPF programs need for every event.
var owlPaths = []string{"task_struct.nsproxy", "nsproxy.mnt_ns", "mnt_namespace.ns.inum"}

func skipWithoutKernelBTF(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat(kernelBTFPath); err != nil {
		tb.Skipf("no kernel BTF: %v", err)
	}
}

// skipQualifiersCilium is the cilium/ebpf counterpart of skipQualifiers.
func skipQualifiersCilium(t btf.Type) btf.Type {
	for range maxResolveDepth {
		switch v := t.(type) {
		case *btf.Typedef:
			t = v.Type
		case *btf.Const:
			t = v.Type
		case *btf.Volatile:
			t = v.Type
		case *btf.Restrict:
			t = v.Type
		case *btf.TypeTag:
			t = v.Type
		default:
			return t
		}
	}
	return t
}

func membersCilium(t btf.Type) []btf.Member {
	switch v := t.(type) {
	case *btf.Struct:
		return v.Members
	case *btf.Union:
		return v.Members
	}
	return nil
}

// memberCilium finds name in t the way C does, through anonymous members,
// and returns the member and its bit offset from the start of t.
func memberCilium(t btf.Type, name string) (btf.Member, btf.Bits, bool) {
	for _, m := range membersCilium(t) {
		if m.Name == name {
			return m, m.Offset, true
		}
		if m.Name == "" {
			if inner, off, ok := memberCilium(skipQualifiersCilium(m.Type), name); ok {
				return inner, m.Offset + off, true
			}
		}
	}
	return btf.Member{}, 0, false
}

func structCilium(spec *btf.Spec, name string) (*btf.Struct, error) {
	types, err := spec.AnyTypesByName(name)
	if err != nil {
		return nil, err
	}
	for _, t := range types {
		if s, ok := t.(*btf.Struct); ok && len(s.Members) > 0 {
			return s, nil
		}
	}
	return nil, fmt.Errorf("no struct %s", name)
}

// offsetCilium computes what Offsets should return for path with cilium/ebpf.
func offsetCilium(spec *btf.Spec, path string) (uint32, error) {
	parts := strings.Split(path, ".")
	s, err := structCilium(spec, parts[0])
	if err != nil {
		return 0, err
	}
	var t btf.Type = s
	var bits btf.Bits
	for _, name := range parts[1:] {
		m, off, ok := memberCilium(t, name)
		if !ok {
			return 0, fmt.Errorf("%s: no member %s", path, name)
		}
		bits += off
		t = skipQualifiersCilium(m.Type)
	}
	if bits%8 != 0 {
		return 0, fmt.Errorf("%s: bit offset %d", path, bits)
	}
	return uint32(bits / 8), nil
}

func TestKernelOffsets(t *testing.T) {
	skipWithoutKernelBTF(t)
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}

	paths := []string{
		"task_struct.nsproxy",
		"task_struct.pid",
		"task_struct.tgid",
		"task_struct.real_cred",
		"nsproxy.mnt_ns",
		"mnt_namespace.ns.inum",
		"sock.__sk_common.skc_family",
		"task_struct.files",
		"sock.sk_protocol",
		"sk_buff.len",
		"task_struct.mm",
		"mm_struct.exe_file",
		"file.f_path.dentry",
	}
	got, err := KernelOffsets(paths...)
	if err != nil {
		t.Fatal(err)
	}
	for i, path := range paths {
		want, err := offsetCilium(spec, path)
		if err != nil {
			t.Errorf("cilium/ebpf: %v", err)
			continue
		}
		if got[i] != want {
			t.Errorf("%s: got %d, cilium/ebpf says %d", path, got[i], want)
		}
	}

	// Every byte-aligned member of a few large structs with anonymous
	// unions, bitfields and nested structs, reached as C would.
	for _, name := range []string{"task_struct", "sock", "sk_buff", "mm_struct", "file", "inode", "nsproxy", "mnt_namespace"} {
		s, err := structCilium(spec, name)
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		var want []uint32
		var walk func(t btf.Type, base btf.Bits)
		walk = func(t btf.Type, base btf.Bits) {
			for _, m := range membersCilium(t) {
				switch {
				case m.Name == "":
					walk(skipQualifiersCilium(m.Type), base+m.Offset)
				case (base+m.Offset)%8 == 0:
					paths = append(paths, name+"."+m.Name)
					want = append(want, uint32((base+m.Offset)/8))
				}
			}
		}
		walk(s, 0)
		got, err := KernelOffsets(paths...)
		if err != nil {
			t.Fatal(err)
		}
		for i := range paths {
			if got[i] != want[i] {
				t.Errorf("%s: got %d, cilium/ebpf says %d", paths[i], got[i], want[i])
			}
		}
		t.Logf("struct %s: %d members agree", name, len(paths))
	}

	if _, err := KernelOffsets("task_struct.no_such_member"); err == nil {
		t.Error("task_struct.no_such_member: no error")
	}
}

func BenchmarkKernelOffsets(b *testing.B) {
	skipWithoutKernelBTF(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := KernelOffsets(owlPaths...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOffsets leaves out reading the file: the cost of the scan alone.
func BenchmarkOffsets(b *testing.B) {
	skipWithoutKernelBTF(b)
	raw, err := os.ReadFile(kernelBTFPath)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Offsets(raw, owlPaths...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCilium is what this package replaces, for comparison.
func BenchmarkCilium(b *testing.B) {
	skipWithoutKernelBTF(b)
	b.ReportAllocs()
	for b.Loop() {
		spec, err := btf.LoadKernelSpec()
		if err != nil {
			b.Fatal(err)
		}
		for _, path := range owlPaths {
			if _, err := offsetCilium(spec, path); err != nil {
				b.Fatal(err)
			}
		}
	}
}
