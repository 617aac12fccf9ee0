package syms

import (
	"debug/elf"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// buildIDOf reads the GNU build-id of the ELF file at path.
func buildIDOf(t *testing.T, path string) []byte {
	t.Helper()
	ef, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	id := noteDesc(ef, ".note.gnu.build-id", "GNU\x00", 3)
	if id == nil {
		t.Fatalf("%s has no GNU build-id", path)
	}
	return id
}

// fileOffset returns the offset in its file of addr, mapped in process pid,
// as the kernel computes it for a build-id stack frame.
func fileOffset(t *testing.T, pid int, addr uint64) uint64 {
	t.Helper()
	maps, err := ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range maps {
		if m.Start <= addr && addr < m.End {
			return m.Offset + addr - m.Start
		}
	}
	t.Fatalf("%#x is in no mapping of %d", addr, pid)
	return 0
}

// TestResolveBuildID names build-id frames of a real C program while it
// runs (as Resolve names the address) and after it exited and was reaped,
// from what was learned of it before: its mappings (Learn), its exec
// (Exec), or nothing (the build-id itself). gcc's default build-id is 20
// bytes (sha1); an md5 one is 16, which the kernel pads with zeros.
func TestResolveBuildID(t *testing.T) {
	dir := t.TempDir()
	for _, style := range []string{"sha1", "md5"} {
		t.Run(style, func(t *testing.T) {
			name := "owl-bid-" + style
			bin := buildC(t, dir, name, "-fPIE", "-pie", "-Wl,--build-id="+style)
			id := buildIDOf(t, bin)
			cmd, stdin, addrs := runTarget(t, bin)
			pid := cmd.Process.Pid
			addr := addrs["owl_test_target"] + 5
			off := fileOffset(t, pid, addr)
			kernelID := make([]byte, BuildIDSize) // as struct bpf_stack_build_id has it
			copy(kernelID, id)

			live := NewProcesses(nil, 8)
			want := Frame{Addr: addr, Symbol: "owl_test_target", Offset: 5, Module: name}
			if f := live.ResolveBuildID(uint32(pid), kernelID, off); f != want {
				t.Errorf("running: %+v, want %+v", f, want)
			}
			learned := NewProcesses(nil, 8)
			learned.Learn(uint32(pid))

			stdin.Close()
			if err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
			want.Addr = 0 // the mappings are gone with the process
			if f := learned.ResolveBuildID(uint32(pid), kernelID, off); f != want {
				t.Errorf("exited, learned at start: %+v, want %+v", f, want)
			}
			execd := NewProcesses(nil, 8)
			execd.Exec(uint32(pid), bin)
			if f := execd.ResolveBuildID(uint32(pid), kernelID, off); f != want {
				t.Errorf("exited, exec seen: %+v, want %+v", f, want)
			}
			unknown := NewProcesses(nil, 8)
			f := unknown.ResolveBuildID(uint32(pid), kernelID, off)
			if s := fmt.Sprintf("[unknown] (build-id %x+%#x)", kernelID, off); f.String() != s || f.Addr != 0 {
				t.Errorf("exited, never seen: %s (addr %#x), want %s", f, f.Addr, s)
			}
		})
	}
}

// TestExecRelativePathOfGoneProcess learns nothing from a relative path
// once the process is gone: it was relative to a directory we do not know,
// and a file of ours there must not be taken for it.
func TestExecRelativePathOfGoneProcess(t *testing.T) {
	dir := t.TempDir()
	buildC(t, dir, "owl-rel", "-fPIE", "-pie")
	cmd := startSleep(t)
	cmd.Process.Kill()
	cmd.Wait()
	t.Chdir(dir)
	p := NewProcesses(nil, 8)
	p.Exec(uint32(cmd.Process.Pid), "owl-rel")
	if n := p.cache.known.len(); n != 0 {
		t.Errorf("%d build-ids learned from a relative path, want none", n)
	}
}

// TestProcessesZombieKeepsMappings: a process that exited but was not
// reaped has no mappings left in /proc; rereading them (for an address in
// none) must not drop those it had, which name the stacks it sent.
func TestProcessesZombieKeepsMappings(t *testing.T) {
	cmd := startSleep(t)
	pid := uint32(cmd.Process.Pid)
	code := codeOf(t, cmd.Process.Pid)
	p, _ := newTestProcesses(8)
	if f := p.Resolve(pid, code.Start); f.Module != code.Module() {
		t.Fatalf("running: Resolve(%#x) = %+v, want module %s", code.Start, f, code.Module())
	}
	cmd.Process.Kill() // not waited for: a zombie until the cleanup
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("no zombie: %v", err)
		}
		if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); f[0] == "Z" {
			break
		}
	}
	p.Resolve(pid, 0x10) // in no mapping: the maps are read again
	if f := p.Resolve(pid, code.Start); f.Module != code.Module() {
		t.Errorf("zombie: Resolve(%#x) = %+v, want module %s", code.Start, f, code.Module())
	}
}
