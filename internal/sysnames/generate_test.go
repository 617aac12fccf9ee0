package sysnames

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedUpToDate runs the generator into a temporary directory and
// compares the result with the committed z*.go files, so a hand edit to a
// generated file, or an x/sys bump without "go generate", fails here.
func TestGeneratedUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command; skipped in -short mode")
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not in PATH; cannot run the generator")
	}
	// The generator's source is golang.org/x/sys in the module cache. It is
	// a dependency of owl, but a vendored or pruned build may lack it.
	out, err := exec.Command(goCmd, "list", "-m", "-f", "{{.Dir}}", "golang.org/x/sys").Output()
	sysDir := strings.TrimSpace(string(out))
	if err != nil || sysDir == "" {
		t.Skipf("generator source golang.org/x/sys is not in the module cache (go list: %v)", err)
	}
	for _, f := range []string{"zsysnum_linux_amd64.go", "zsysnum_linux_arm64.go", "zsysnum_linux_386.go", "zerrors_linux.go", "zerrors_linux_amd64.go", "zerrors_linux_arm64.go", "zerrors_linux_386.go"} {
		if _, err := os.Stat(filepath.Join(sysDir, "unix", f)); err != nil {
			t.Skipf("generator source missing: %v", err)
		}
	}

	tmp := t.TempDir()
	cmd := exec.Command(goCmd, "run", "./gen", "-out", tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./gen: %v\n%s", err, out)
	}

	generated, err := filepath.Glob(filepath.Join(tmp, "z*.go"))
	if err != nil || len(generated) == 0 {
		t.Fatalf("generator wrote no z*.go files (%v)", err)
	}
	committed, err := filepath.Glob("z*.go")
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[string]bool)
	for _, path := range generated {
		name := filepath.Base(path)
		want[name] = true
		fresh, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		old, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s: %v; run go generate", name, err)
			continue
		}
		if !bytes.Equal(fresh, old) {
			t.Errorf("%s differs from the generator's output; run go generate instead of editing it", name)
		}
	}
	for _, name := range committed {
		if !want[name] {
			t.Errorf("%s is not written by the generator any more; delete it", name)
		}
	}
}
