package probe

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestKernelTypesSameFixups relocates every CO-RE program of every tool's
// BPF object against the running kernel twice, with its whole BTF and with
// the types kernelTypes keeps, and wants the same fixups.
func TestKernelTypesSameFixups(t *testing.T) {
	arch := map[string]string{"amd64": "x86", "arm64": "arm64"}[runtime.GOARCH]
	objs, _ := filepath.Glob("../tools/*/*_" + arch + "_bpfel.o")
	if len(objs) == 0 {
		t.Skip("no BPF objects beside the sources (a test binary alone, as in the guests)")
	}
	full, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	raw, release, err := kernelBTF()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	reduced := 0
	for _, obj := range objs {
		cs, err := ebpf.LoadCollectionSpec(obj)
		if err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		relos, err := programRelos(cs)
		if err != nil {
			t.Fatalf("%s: %v", obj, err)
		}
		if len(relos) == 0 {
			continue
		}
		small, err := kernelTypes(relos, raw)
		if err != nil {
			t.Errorf("%s: %v", obj, err)
			continue
		}
		reduced++
		for name, p := range cs.Programs {
			var metas []*btf.CORERelocation
			for i := range p.Instructions {
				if r := btf.CORERelocationMetadata(&p.Instructions[i]); r != nil {
					metas = append(metas, r)
				}
			}
			if len(metas) == 0 {
				continue
			}
			want, err := fixups(metas, full, p.ByteOrder)
			if err != nil {
				t.Errorf("%s %s, full BTF: %v", obj, name, err)
				continue
			}
			got, err := fixups(metas, small, p.ByteOrder)
			if err != nil {
				t.Errorf("%s %s, reduced BTF: %v", obj, name, err)
				continue
			}
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("%s %s: %v: fixup %s, want %s", obj, name, metas[i], got[i], want[i])
				}
			}
		}
		var n int
		for range small.All() {
			n++
		}
		t.Logf("%s: %d relocations, %d kernel types kept", filepath.Base(obj), len(relos), n)
	}
	if reduced == 0 {
		t.Fatal("no object with CO-RE relocations found")
	}
}

func fixups(relos []*btf.CORERelocation, target *btf.Spec, bo binary.ByteOrder) ([]string, error) {
	b, err := btf.NewBuilder(nil, nil)
	if err != nil {
		return nil, err
	}
	fs, err := btf.CORERelocate(relos, []*btf.Spec{target}, bo, b.Add)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(fs))
	for i := range fs {
		out[i] = fs[i].String()
	}
	return out, nil
}

// BenchmarkKernelTypes is what a CO-RE tool's start pays for its kernel
// types: go test -run - -bench KernelTypes -benchmem ./internal/probe/
func BenchmarkKernelTypes(b *testing.B) {
	arch := map[string]string{"amd64": "x86", "arm64": "arm64"}[runtime.GOARCH]
	obj := "../tools/tcpaccept/tcpaccept_" + arch + "_bpfel.o"
	cs, err := ebpf.LoadCollectionSpec(obj)
	if err != nil {
		b.Skip(err)
	}
	relos, err := programRelos(cs)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		raw, release, err := kernelBTF()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := kernelTypes(relos, raw); err != nil {
			b.Fatal(err)
		}
		release()
	}
}
