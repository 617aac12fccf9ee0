package e2e

import (
	"os"
	"path/filepath"
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
// Elsewhere build makes it, into t.TempDir() say, skipping or failing as
// it sees fit when a compiler is missing.
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
