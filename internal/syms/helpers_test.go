package syms

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// need skips t for reason, or fails it under OWL_E2E=require (as
// e2e.Require does), so CI cannot pass on skipped tests. These tests need
// root or a compiler, not BPF, hence not e2e.Require itself.
func need(t *testing.T, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("OWL_E2E") == "require" {
		t.Fatalf("test cannot run: %s (OWL_E2E=require)", reason)
	}
	t.Skipf("test skipped: %s (set OWL_E2E=require to fail instead)", reason)
}

func needRoot(t *testing.T) { t.Helper(); need(t, os.Geteuid() == 0, "not root") }

// startTarget runs bin, which prints "name 0xADDR" lines then "ready" and
// blocks reading stdin until the test ends. It returns the pid and the
// printed addresses.
func startTarget(t *testing.T, bin string) (int, map[string]uint64) {
	t.Helper()
	cmd, _, addrs := runTarget(t, bin)
	return cmd.Process.Pid, addrs
}

// runTarget is startTarget, also returning the command and its stdin:
// closing stdin ends the program.
func runTarget(t *testing.T, bin string) (*exec.Cmd, io.WriteCloser, map[string]uint64) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Stderr = os.Stderr
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
	addrs := map[string]uint64{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		name, v, _ := strings.Cut(sc.Text(), " ")
		if v == "(nil)" {
			continue
		}
		a, err := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 64)
		if err != nil {
			t.Fatalf("%s printed %q: %v", bin, sc.Text(), err)
		}
		addrs[name] = a
	}
	if sc.Err() != nil || len(addrs) == 0 {
		t.Fatalf("%s printed no addresses (%v)", bin, sc.Err())
	}
	go io.Copy(io.Discard, stdout)
	return cmd, stdin, addrs
}

func run(t *testing.T, dir string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// checkFrame asserts that r resolves addr and addr+5 in function sym.
func checkFrame(t *testing.T, r *Resolver, addr uint64, sym, module string) {
	t.Helper()
	for _, off := range []uint64{0, 5} {
		f := r.Resolve(addr + off)
		if f.Symbol != sym || f.Offset != off || f.Module != module || f.Addr != addr+off {
			t.Errorf("Resolve(%#x) = %+v (%s), want %s+%#x in %s; errors: %v", addr+off, f, f, sym, off, module, r.Errors())
		}
	}
}
