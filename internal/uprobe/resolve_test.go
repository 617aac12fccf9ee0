package uprobe

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// need skips t for reason, or fails it under OWL_E2E=require outside the
// qemu guests, as e2e.Need does. Not e2e.Need itself: test/vm/run.sh runs
// every package whose tests import internal/e2e in the guests, and these
// tests load no BPF.
func need(t *testing.T, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("OWL_E2E") == "require" && os.Getenv("OWL_TEST_PROGRAMS") == "" {
		t.Fatalf("test cannot run: %s (OWL_E2E=require)", reason)
	}
	t.Skipf("test skipped: %s", reason)
}

// tool returns the path of a compiler the test builds with.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	need(t, err == nil, name+" not installed")
	return p
}

// build compiles src (C, C++ or Go, by the name's extension) into dir.
func build(t *testing.T, dir, name, src string, flags ...string) string {
	t.Helper()
	srcPath := filepath.Join(dir, name)
	if err := os.WriteFile(srcPath, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := strings.TrimSuffix(srcPath, filepath.Ext(srcPath))
	var cmd *exec.Cmd
	switch filepath.Ext(name) {
	case ".c":
		cmd = exec.Command(tool(t, "gcc"), append([]string{"-O1", "-fno-omit-frame-pointer", "-fno-inline", "-o", bin, srcPath}, flags...)...)
	case ".cpp":
		cmd = exec.Command(tool(t, "g++"), append([]string{"-O1", "-fno-omit-frame-pointer", "-fno-inline", "-o", bin, srcPath}, flags...)...)
	case ".go":
		cmd = exec.Command(tool(t, "go"), append(append([]string{"build", "-o", bin}, flags...), srcPath)...)
		cmd.Env = append(os.Environ(), "GO111MODULE=off", "CGO_ENABLED=0")
	}
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return bin
}

const cSrc = `#include <stdio.h>
int work(int i) { return i * 2 + 1; }
int sleep_ms(int ms) { return ms; }
int sleep_us(int us) { return us; }
static int helper(int x) { return x + 3; }
int main(void) { printf("%d\n", work(1) + sleep_ms(2) + sleep_us(3) + helper(4)); return 0; }
`

const cppSrc = `#include <cstdio>
namespace geo {
class Shape {
public:
	Shape(double w) : w_(w) {}
	double area() const;
	void scale(double k);
private:
	double w_;
};
double Shape::area() const { return w_ * w_; }
void Shape::scale(double k) { w_ *= k; }
}
int main() { geo::Shape s(2); s.scale(3); std::printf("%g\n", s.area()); return 0; }
`

const goSrc = `package main

import "fmt"

//go:noinline
func work(i int) int {
	if i < 0 {
		return -1
	}
	return i*2 + 1
}

func main() { fmt.Println(work(3)) }
`

func names(funcs []Func) []string {
	var n []string
	for _, f := range funcs {
		n = append(n, f.Name)
	}
	return n
}

func resolve(t *testing.T, spec string, o Options) []Func {
	t.Helper()
	s, err := Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	funcs, err := Resolve(s, o)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", spec, err)
	}
	return funcs
}

// checkOffsets checks each function's offset against the bytes of the
// file: they are the function's code as the symbol table places it.
func checkOffsets(t *testing.T, funcs []Func) {
	t.Helper()
	for _, f := range funcs {
		ef, err := elf.Open(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		var text *elf.Section
		for _, s := range ef.Sections {
			if s.Flags&elf.SHF_EXECINSTR != 0 && s.Offset <= f.Offset && f.Offset < s.Offset+s.Size {
				text = s
			}
		}
		ef.Close()
		if text == nil {
			t.Errorf("%s: offset %#x is in no executable section of %s", f.Name, f.Offset, f.Path)
		}
	}
}

func TestResolveC(t *testing.T) {
	dir := t.TempDir()
	// Stripped, the functions are those -rdynamic exports in .dynsym.
	for _, flags := range [][]string{nil, {"-no-pie"}, {"-s", "-rdynamic"}} {
		bin := build(t, dir, "app.c", cSrc, flags...)
		funcs := resolve(t, bin+":sleep_*", Options{})
		if got := names(funcs); !slices.Equal(got, []string{"sleep_ms", "sleep_us"}) {
			t.Errorf("%v: sleep_* matched %v", flags, got)
		}
		funcs = resolve(t, bin+":work", Options{Rets: true})
		if len(funcs) != 1 || funcs[0].Path != bin || funcs[0].Symbol != "work" || funcs[0].Go || funcs[0].Rets != nil {
			t.Errorf("%v: work resolved to %+v", flags, funcs)
		}
		checkOffsets(t, funcs)
		rel := strings.TrimPrefix(bin, dir+"/")
		t.Chdir(dir)
		if got := resolve(t, "./"+rel+":work", Options{}); got[0].Path != bin {
			t.Errorf("relative path resolved to %s, want %s", got[0].Path, bin)
		}
		if len(flags) == 0 {
			if got := names(resolve(t, bin+":helper", Options{})); !slices.Equal(got, []string{"helper"}) {
				t.Errorf("local function: %v", got)
			}
		}
	}
}

func TestResolveCPlusPlus(t *testing.T) {
	bin := build(t, t.TempDir(), "shapes.cpp", cppSrc)
	funcs := resolve(t, bin+":geo::Shape::*", Options{})
	want := []string{"geo::Shape::Shape(double)", "geo::Shape::area() const", "geo::Shape::scale(double)"}
	if got := names(funcs); !slices.Equal(got, want) {
		t.Errorf("geo::Shape::* matched %v, want %v", got, want)
	}
	for _, f := range funcs {
		if !strings.HasPrefix(f.Symbol, "_ZN") {
			t.Errorf("%s: raw name %q, want the mangled one", f.Name, f.Symbol)
		}
	}
	checkOffsets(t, funcs)
	// Without parameters, and by the mangled name.
	if got := names(resolve(t, bin+":geo::Shape::area", Options{})); !slices.Equal(got, want[1:2]) {
		t.Errorf("geo::Shape::area matched %v", got)
	}
	if got := names(resolve(t, bin+":_ZN3geo5Shape5scaleEd", Options{})); !slices.Equal(got, want[2:]) {
		t.Errorf("mangled name matched %v", got)
	}
}

func TestResolveGo(t *testing.T) {
	dir := t.TempDir()
	for _, flags := range [][]string{nil, {"-ldflags=-s -w"}} {
		bin := build(t, dir, "goapp.go", goSrc, flags...)
		funcs := resolve(t, bin+":main.work", Options{Rets: true})
		if len(funcs) != 1 || !funcs[0].Go || funcs[0].Size == 0 {
			t.Fatalf("%v: main.work resolved to %+v", flags, funcs)
		}
		f := funcs[0]
		if len(f.Rets) < 2 {
			t.Errorf("%v: main.work has two returns, found %v", flags, f.Rets)
		}
		file, err := os.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range f.Rets {
			var b [1]byte
			if _, err := file.ReadAt(b[:], int64(r)); err != nil || b[0] != 0xc3 || r < f.Offset || r >= f.Offset+f.Size {
				t.Errorf("%v: return at %#x: byte %#x (%v), function at %#x size %d", flags, r, b[0], err, f.Offset, f.Size)
			}
		}
		file.Close()
		checkOffsets(t, funcs)
		// A glob over the pclntab, '/' in package paths included.
		if got, err := Resolve(Spec{Target: bin, Func: "*/fmt.Fprintln"}, Options{}); !errors.Is(err, ErrNoMatch) {
			t.Errorf("*/fmt.Fprintln matched %v (no slash in fmt's path), %v", names(got), err)
		}
		if got := names(resolve(t, bin+":*fmt.Fprintln", Options{})); !slices.Equal(got, []string{"fmt.Fprintln"}) {
			t.Errorf("*fmt.Fprintln matched %v", got)
		}
	}
}

// Each bad specifier is one line naming what is wrong.
func TestResolveErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		spec string
		opts Options
		want error
		says string
	}{
		{"/nonexistent/app:work", Options{}, ErrNoFile, "/nonexistent/app: no such file"},
		{text + ":work", Options{}, ErrNotELF, text + " is not an ELF"},
		{dir + ":work", Options{}, ErrNotELF, "is a directory"},
		{"work", Options{}, ErrNoTarget, "-p PID"},
		{"owl_no_such_lib_zz:f", Options{}, ErrNoLib, `"owl_no_such_lib_zz"`},
		{self + ":owl_no_such_function", Options{}, ErrNoMatch, `"owl_no_such_function" in ` + self},
		{self + ":runtime.*", Options{Max: 10}, ErrTooMany, "use --max N"},
	} {
		s, err := Parse(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		funcs, err := Resolve(s, c.opts)
		if err == nil {
			t.Errorf("%s: resolved to %d functions, want an error", c.spec, len(funcs))
			continue
		}
		msg := err.Error()
		if !errors.Is(err, c.want) || !strings.HasPrefix(msg, c.spec+": ") || !strings.Contains(msg, c.says) || strings.Contains(msg, "\n") {
			t.Errorf("%s: error %q; want one line saying %q (%v)", c.spec, msg, c.says, c.want)
		}
	}
	// A relocatable object is ELF but nothing to attach to.
	if _, err := exec.LookPath("gcc"); err == nil {
		obj := filepath.Join(dir, "app.o")
		src := filepath.Join(dir, "app.c")
		os.WriteFile(src, []byte(cSrc), 0o644)
		if out, err := exec.Command("gcc", "-c", "-o", obj, src).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
		if _, err := Resolve(Spec{Target: obj, Func: "work"}, Options{}); !errors.Is(err, ErrNotELF) {
			t.Errorf("object file: %v, want %v", err, ErrNotELF)
		}
	}
}

// startProcess runs bin, waiting for it to print "ready", and returns it
// with its stdin (closing it ends the program).
func startProcess(t *testing.T, attr *syscall.SysProcAttr, bin string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.SysProcAttr = attr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("%s printed %q (%v)", bin, line, err)
	}
	return cmd
}

const waitSrc = `#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int work(int i) { return i + 1; }
int main(void) { char c; void *p = malloc(8); printf("ready\n"); fflush(stdout); free(p); while (read(0, &c, 1) > 0) work(c); return 0; }
`

// With -p, a library is the one the process maps, and a bare function is
// in the process's executable.
func TestResolveInProcess(t *testing.T) {
	bin := build(t, t.TempDir(), "wait.c", waitSrc)
	pid := startProcess(t, nil, bin).Process.Pid
	funcs := resolve(t, "c:malloc", Options{PID: pid})
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(funcs) != 1 || funcs[0].Name != "malloc" || !strings.Contains(string(maps), funcs[0].Path+"\n") {
		t.Errorf("c:malloc in process %d resolved to %+v, not a mapped file:\n%s", pid, funcs, maps)
	}
	if got := resolve(t, "work", Options{PID: pid}); len(got) != 1 || got[0].Path != bin {
		t.Errorf("work in process %d: %+v, want in %s", pid, got, bin)
	}
	if got := resolve(t, "wait:work", Options{PID: pid}); len(got) != 1 || got[0].Path != bin {
		t.Errorf("wait:work in process %d: %+v, want in %s", pid, got, bin)
	}
	if _, err := Resolve(Spec{Func: "work"}, Options{PID: 1 << 30}); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Errorf("a pid that does not exist: %v", err)
	}
}

// A process in another mount namespace is reached through /proc/PID/root.
func TestResolveOtherMountNamespace(t *testing.T) {
	need(t, os.Geteuid() == 0, "not root (a new mount namespace needs CAP_SYS_ADMIN)")
	bin := build(t, t.TempDir(), "wait.c", waitSrc)
	pid := startProcess(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}, bin).Process.Pid
	root := fmt.Sprintf("/proc/%d/root/", pid)
	for _, spec := range []string{"c:malloc", "work", bin + ":work"} {
		funcs := resolve(t, spec, Options{PID: pid})
		if len(funcs) != 1 || !strings.HasPrefix(funcs[0].Path, root) {
			t.Errorf("%s in process %d (another mount namespace): %+v, want a path under %s", spec, pid, funcs, root)
		}
	}
}
