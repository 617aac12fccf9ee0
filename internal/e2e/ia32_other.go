//go:build !amd64

package e2e

// Syscall32 is x86-64's; RequireIA32 skips before anything calls it here.
func Syscall32(nr, a1, a2, a3 uintptr) uintptr { panic("int $0x80 is x86-64 only") }

const haveSyscall32 = false
