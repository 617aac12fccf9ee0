package syms

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// A perf map the JIT appends to or rewrites is read again when its file
// changed, no more often than perfEvery.
func TestPerfMapReread(t *testing.T) {
	bin := buildC(t, t.TempDir(), "owl-jit", "-fPIE", "-pie")
	pid, addrs := startTarget(t, bin)
	jit := addrs["jit"]
	if jit == 0 {
		t.Fatal("no anonymous executable mapping")
	}
	path := fmt.Sprintf("/tmp/perf-%d.map", pid)
	t.Cleanup(func() { os.Remove(path) })
	write := func(flag int, line string) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|flag, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintln(f, line); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewResolver(pid, NewCache())
	if err != nil {
		t.Fatal(err)
	}
	r.perfEvery = time.Hour
	check := func(addr uint64, want string) {
		t.Helper()
		if f := r.Resolve(addr); f.Symbol != want {
			t.Errorf("Resolve(%#x) = %s, want %s", addr, f, want)
		}
	}
	// Not there yet: the first look finds no file.
	check(jit, Unknown)
	write(os.O_TRUNC, fmt.Sprintf("%x 10 first", jit))
	check(jit, Unknown) // not looked at again within perfEvery
	r.perfEvery = 0
	check(jit, "first")
	write(os.O_APPEND, fmt.Sprintf("%x 10 appended", jit+0x20)) // node appends
	check(jit+0x20, "appended")
	write(os.O_TRUNC, fmt.Sprintf("%x 10 rewritten", jit)) // jcmd Compiler.perfmap rewrites
	check(jit, "rewritten")
	check(jit+0x20, Unknown)
	// Refresh (new mappings) forgets the map; it is read again.
	if err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	r.perfEvery = time.Hour
	check(jit, "rewritten")
}
