package syms_test

// JIT code of real runtimes, named from the perf maps they write: node
// with --perf-basic-prof (appends as it compiles), the JVM with `jcmd PID
// Compiler.perfmap` (a snapshot). These tests start the runtimes, which is
// slow (a JVM ~2 s here): they are few.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/tools/funccount"
	"github.com/owlbpf/owl/internal/tools/stackcount"
	"github.com/owlbpf/owl/internal/uprobe"
)

// start runs cmd until the test ends and returns the first line it prints
// that contains want, failing after timeout.
func start(t *testing.T, cmd *exec.Cmd, want string, timeout time.Duration) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		os.Remove(fmt.Sprintf("/tmp/perf-%d.map", cmd.Process.Pid))
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("%s exited before printing %q", cmd.Path, want)
			}
			if strings.Contains(l, want) {
				go func() {
					for range lines {
					}
				}()
				return
			}
		case <-deadline:
			t.Fatalf("%s did not print %q within %v", cmd.Path, want, timeout)
		}
	}
}

// A running node's JIT code (functions compiled by its optimizing tiers)
// is named from /tmp/perf-PID.map as node writes it: the map is read when
// first needed and read again when a later address is missing from it and
// the file grew.
func TestNodeJIT(t *testing.T) {
	e2e.Require(t) // root: another process's maps
	node := e2e.Need(t, "node")
	js := `function owlHot(n) { let s = 0; for (let i = 0; i < n; i++) s += i % 7; return s; }
let t = 0;
console.log("running");
(function loop() { for (let i = 0; i < 200; i++) t += owlHot(1000); setImmediate(loop); })();`
	cmd := exec.Command(node, "--perf-basic-prof", "-e", js)
	cmd.Dir = t.TempDir() // node may leave a v8 log in its directory
	start(t, cmd, "running", 30*time.Second)
	pid := cmd.Process.Pid
	procs := syms.NewProcesses(nil, 4)
	// Something is named before owlHot is optimized: the map is read
	// early, and must be read again for owlHot's code.
	_ = procs.Resolve(uint32(pid), 1)
	var addr uint64
	deadline := time.Now().Add(30 * time.Second)
	for addr == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		addr = perfMapEntry(t, pid, "JS:*owlHot")
	}
	if addr == 0 {
		t.Fatal("node never wrote an optimized owlHot to its perf map")
	}
	var f syms.Frame
	for time.Now().Before(deadline) {
		if f = procs.Resolve(uint32(pid), addr+2); f.Symbol != syms.Unknown {
			break
		}
		time.Sleep(200 * time.Millisecond) // until the map is looked at again
	}
	if !strings.HasPrefix(f.Symbol, "JS:*owlHot ") || f.Offset != 2 || f.Module != fmt.Sprintf("perf-%d.map", pid) {
		t.Errorf("Resolve(%#x) = %+v, want JS:*owlHot+2 from perf-%d.map", addr+2, f, pid)
	}
	// JIT code lives in anonymous memory: no file could have named it.
	for _, m := range mapsOf(t, pid) {
		if m.Start <= addr && addr < m.End && m.File() {
			t.Errorf("owlHot's code is in a file mapping %+v", m)
		}
	}
}

// perfMapEntry returns the start of the last entry of pid's perf map whose
// name starts with prefix, 0 if none.
func perfMapEntry(t *testing.T, pid int, prefix string) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/tmp/perf-%d.map", pid))
	if err != nil {
		return 0
	}
	var addr uint64
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, " ", 3)
		if len(f) == 3 && strings.HasPrefix(f[2], prefix) {
			addr, _ = strconv.ParseUint(strings.TrimPrefix(f[0], "0x"), 16, 64)
		}
	}
	return addr
}

func mapsOf(t *testing.T, pid int) []syms.Mapping {
	t.Helper()
	maps, err := syms.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	return maps
}

// With -XX:+PreserveFramePointer, a frame-pointer walk from a JNI function
// called by JIT code passes through the JIT frames: stackcount -p JAVAPID
// on libjava's Java_java_io_FileOutputStream_writeBytes shows the Java
// methods by name (leaf <- mid <- top), from the map `jcmd PID
// Compiler.perfmap` writes, below the native wrapper.
func TestJavaJITStacks(t *testing.T) {
	e2e.Require(t)
	java := e2e.Need(t, "java")
	jcmd := e2e.Need(t, "jcmd")
	src, err := filepath.Abs("testdata/Jit.java")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(java, "-XX:+PreserveFramePointer", "-XX:CompileCommand=quiet",
		"-XX:CompileCommand=dontinline,Jit::*", src, "2000", "300")
	start(t, cmd, "warm", 120*time.Second)
	pid := cmd.Process.Pid

	var libjava string
	for _, m := range mapsOf(t, pid) {
		if filepath.Base(m.Path) == "libjava.so" {
			libjava = m.Path
		}
	}
	if libjava == "" {
		t.Fatal("the JVM maps no libjava.so")
	}
	probes, err := funccount.Resolve([]string{libjava + ":Java_java_io_FileOutputStream_writeBytes"}, uprobe.Options{PID: pid})
	if err != nil {
		t.Fatal(err)
	}
	opts := e2e.Options()
	opts.Task.PID = pid
	sc, err := stackcount.Open(stackcount.Config{Probes: probes, UStack: true}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	time.Sleep(time.Second)
	// The map is written now, after the methods were compiled and while
	// the stacks wait in the kernel: the report reads it.
	if out, err := exec.Command(jcmd, strconv.Itoa(pid), "Compiler.perfmap").CombinedOutput(); err != nil {
		t.Fatalf("jcmd Compiler.perfmap: %v: %s", err, out)
	}
	stacks, err := sc.Stacks(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var total, named uint64
	var example []syms.Frame
	for _, st := range stacks {
		total += st.Count
		if hasRun(st.UStack, "Java_java_io_FileOutputStream_writeBytes", "void java.io.FileOutputStream.writeBytes(byte[], int, int, boolean)") &&
			hasRun(st.UStack, "void Jit.leaf()", "void Jit.mid()", "void Jit.top()") {
			named += st.Count
			example = st.UStack
		}
	}
	t.Logf("%d calls in %d stacks, %d through named JIT frames; e.g. %v", total, len(stacks), named, example)
	if total == 0 || named*2 < total {
		for _, st := range stacks {
			t.Logf("%d: %v", st.Count, st.UStack)
		}
		t.Errorf("%d of %d calls have named JIT frames leaf <- mid <- top; want most", named, total)
	}
	for _, f := range example {
		if f.Symbol == "void Jit.leaf()" && f.Module != fmt.Sprintf("perf-%d.map", pid) {
			t.Errorf("leaf named from %q, want the perf map", f.Module)
		}
	}
}

// hasRun reports whether frames holds the named frames consecutively.
func hasRun(frames []syms.Frame, names ...string) bool {
	for i := 0; i+len(names) <= len(frames); i++ {
		ok := true
		for j, n := range names {
			if frames[i+j].Symbol != n {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
