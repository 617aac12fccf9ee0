package e2e

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"testing"
)

// ia32Probe is the child action RequireIA32 runs (built into Main).
const ia32Probe = "e2e-ia32-getpid"

// ia32Getpid makes a 32-bit getpid (20 in the i386 table), which must give
// the pid.
func ia32Getpid([]string) (err error) {
	// A kernel without ia32 syscalls answers int $0x80 with a general
	// protection fault (SIGSEGV): report it as an error, not a crash.
	debug.SetPanicOnFault(true)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("int $0x80 raised a fault (%v)", r)
		}
	}()
	if got := int(Syscall32(20, 0, 0, 0)); got != os.Getpid() {
		return fmt.Errorf("ia32 getpid gave %d, want %d", got, os.Getpid())
	}
	return nil
}

// RequireIA32 skips t where this kernel runs no 32-bit syscalls (not
// x86-64, no CONFIG_IA32_EMULATION, ia32_emulation=0, or a PVM guest like
// the 6.18 VM owl is developed on, where int $0x80 faults): there no
// process can make one, so none can go unseen. make vmtest runs these tests
// under Debian's 6.1 kernel, which has them.
func RequireIA32(t testing.TB) {
	t.Helper()
	if !haveSyscall32 {
		t.Skip("ia32 syscalls are x86-64's")
	}
	cmd := Child(ia32Probe)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Skipf("this kernel runs no 32-bit syscalls: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
}
