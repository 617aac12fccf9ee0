package syms

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/owlbpf/owl/internal/e2e"
)

// buildC compiles testdata/target.c with gcc and flags into dir/name.
func buildC(t *testing.T, dir, name string, flags ...string) string {
	t.Helper()
	gcc := e2e.Need(t, "gcc")
	src, err := filepath.Abs("testdata/target.c")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name)
	run(t, dir, gcc, append(append([]string{"-O0", "-o", out}, flags...), src)...)
	return out
}

// TestResolveC symbolizes a real running C program built as PIE, non-PIE
// and stripped PIE (only .dynsym left), against the addresses the program
// printed itself.
func TestResolveC(t *testing.T) {
	e2e.Need(t, "gcc") // skips in the qemu guest, which has no compiler
	dir := t.TempDir()
	cache := NewCache()
	for _, c := range []struct {
		name  string
		flags []string
	}{
		{"owl-pie", []string{"-fPIE", "-pie"}},
		{"owl-nopie", []string{"-fno-pie", "-no-pie"}},
		{"owl-dynsym", []string{"-fPIE", "-pie", "-rdynamic", "-s"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			bin := buildC(t, dir, c.name, c.flags...)
			pid, addrs := startTarget(t, bin)
			r, err := NewResolver(pid, cache)
			if err != nil {
				t.Fatal(err)
			}
			checkFrame(t, r, addrs["owl_test_target"], "owl_test_target", c.name)
			if c.name == "owl-pie" {
				// A shared library: getpid's address, taken through the GOT
				// in a PIE, is libc's own.
				checkFrame(t, r, addrs["getpid"], "getpid", "libc.so.6")
			}
			if a, ok := addrs["vdso"]; ok {
				// The vDSO is no file: its symbols come from our own copy.
				if f := r.Resolve(a); !strings.Contains(f.Symbol, "clock_gettime") || f.Offset != 0 || f.Module != "[vdso]" {
					t.Errorf("vdso clock_gettime at %#x: %+v", a, f)
				}
			}
		})
	}
	// libc was parsed once for all three processes.
	if n := cache.Len(); n != 4 && !t.Failed() {
		t.Errorf("cache holds %d tables, want 4 (3 programs, libc)", n)
	}
}

// TestResolveJIT names code in an anonymous executable mapping from the
// perf map the test writes for the process, as a JIT would.
func TestResolveJIT(t *testing.T) {
	bin := buildC(t, t.TempDir(), "owl-jit", "-fPIE", "-pie")
	pid, addrs := startTarget(t, bin)
	jit := addrs["jit"]
	if jit == 0 {
		t.Fatal("no anonymous executable mapping")
	}
	path := fmt.Sprintf("/tmp/perf-%d.map", pid)
	body := fmt.Sprintf("%x 40 LazyCompile:~old app.js:1\nnot a line\n%x 20 LazyCompile:~hot app.js:7\n%x 10 stub\n", jit, jit, jit+0x100)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	r, err := NewResolver(pid, NewCache())
	if err != nil {
		t.Fatal(err)
	}
	module := fmt.Sprintf("perf-%d.map", pid)
	for _, c := range []struct {
		addr uint64
		want Frame
	}{
		{jit + 5, Frame{Symbol: "LazyCompile:~hot app.js:7", Offset: 5, Module: module}},
		{jit + 0x30, Frame{Symbol: "LazyCompile:~old app.js:1", Offset: 0x30, Module: module}},
		{jit + 0x108, Frame{Symbol: "stub", Offset: 8, Module: module}},
		{jit + 0x200, Frame{Symbol: Unknown}},
		{0x10, Frame{Symbol: Unknown}}, // in no mapping
	} {
		c.want.Addr = c.addr
		if f := r.Resolve(c.addr); f != c.want {
			t.Errorf("Resolve(%#x) = %+v, want %+v", c.addr, f, c.want)
		}
	}
	// An address in the binary's data, outside any function.
	for _, m := range r.Maps() {
		if m.Module() == "owl-jit" && !m.Exec() {
			if f := r.Resolve(m.Start); f.String() != "[unknown] (owl-jit)" {
				t.Errorf("data address: %s", f)
			}
			break
		}
	}
}

// TestResolveDeleted symbolizes a program whose file was removed after it
// started: only /proc/PID/map_files still opens it, which needs root.
func TestResolveDeleted(t *testing.T) {
	needRoot(t)
	bin := buildC(t, t.TempDir(), "owl-deleted", "-fPIE", "-pie")
	pid, addrs := startTarget(t, bin)
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	r, err := NewResolver(pid, NewCache())
	if err != nil {
		t.Fatal(err)
	}
	checkFrame(t, r, addrs["owl_test_target"], "owl_test_target", "owl-deleted")
}

// TestBias checks the load bias against layouts seen in practice.
func TestBias(t *testing.T) {
	gccPIE := &table{loads: []segment{
		{off: 0, vaddr: 0, filesz: 0x630},
		{off: 0x1000, vaddr: 0x1000, filesz: 0x1e5, exec: true},
		{off: 0x2de8, vaddr: 0x3de8, filesz: 0x258}, // data: vaddr != off
	}}
	goPIE := &table{loads: []segment{{off: 0, vaddr: 0x400000, filesz: 0x7ab30, exec: true}}}
	for _, c := range []struct {
		t    *table
		m    Mapping
		want uint64
	}{
		{gccPIE, Mapping{Start: 0x555555555000, Offset: 0x1000, Perms: "r-xp"}, 0x555555554000},
		{gccPIE, Mapping{Start: 0x555555557000, Offset: 0x2000, Perms: "rw-p"}, 0x555555557000 - 0x2000 + 0x2de8 - 0x3de8},
		{goPIE, Mapping{Start: 0x7f0000000000, Perms: "r-xp"}, 0x7f0000000000 - 0x400000},
		{&table{exec: true, loads: goPIE.loads}, Mapping{Start: 0x400000, Perms: "r-xp"}, 0},
	} {
		if got := c.t.bias(c.m); got != c.want {
			t.Errorf("bias(%+v) = %#x, want %#x", c.m, got, c.want)
		}
	}
}
