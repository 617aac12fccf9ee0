package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ProgramsEnv names a directory of prebuilt test programs. test/vm/run.sh
// sets it in the qemu guest, which has no compilers (nor libc): there the
// programs tests trace are built on the host, static, ahead of time.
const ProgramsEnv = "OWL_TEST_PROGRAMS"

// Program returns the path of the test program name ("tool/program", as
// "funccount/work"). Where ProgramsEnv is set it is the prebuilt file
// $OWL_TEST_PROGRAMS/name, which must exist: test/vm/run.sh builds it under
// that name (a test that adds a program adds its build line there too).
// Elsewhere build makes it, into t.TempDir() say, with the compiler
// Need finds.
func Program(t testing.TB, name string, build func() string) string {
	t.Helper()
	dir := os.Getenv(ProgramsEnv)
	if dir == "" {
		return build()
	}
	p := filepath.Join(dir, filepath.FromSlash(name))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("prebuilt test program %s: %v (%s=%s: test/vm/run.sh builds the programs tests ask for)", name, err, ProgramsEnv, dir)
	}
	return p
}

// Prebuilt reports whether test programs come prebuilt (ProgramsEnv set):
// static, as the guest has no libc, which a test of shared libraries must
// allow for.
func Prebuilt() bool { return os.Getenv(ProgramsEnv) != "" }

// InGuest reports whether the tests run in one of test/vm/run.sh's qemu
// guests, which have busybox, owl and the test binaries and programs, and
// nothing else: no compilers, runtimes, peer tracers, libraries beyond
// libc, or source tree. run.sh sets OWL_BIN and ProgramsEnv there;
// InGuest reads ProgramsEnv, as OWL_BIN has a meaning on the host too
// (the owl binary cmd/owl's and test/'s tests run), and setting it there
// must not turn a missing dependency from a failure into a skip.
func InGuest() bool { return os.Getenv(ProgramsEnv) != "" }

// Need returns the path of a program or file a test needs: a name with a
// '/' is a path, which must exist, any other a program looked up in PATH.
// Missing, it fails t under OWL_E2E=require on the host, where make
// deps-test installs everything the tests need, so CI cannot pass on
// skipped tests; it skips t elsewhere and in the qemu guests (InGuest),
// which have none of it.
func Need(t testing.TB, nameOrPath string) string {
	t.Helper()
	var err error
	p := nameOrPath
	if strings.ContainsRune(p, '/') {
		_, err = os.Stat(p)
	} else {
		p, err = exec.LookPath(p)
	}
	if err == nil {
		return p
	}
	if os.Getenv("OWL_E2E") == "require" && !InGuest() {
		t.Fatalf("%s is missing (make deps-test installs it; OWL_E2E=require): %v", nameOrPath, err)
	}
	t.Skipf("test skipped: %s is missing (make deps-test installs it): %v", nameOrPath, err)
	return ""
}
