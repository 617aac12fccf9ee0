package e2e

// Syscall32 makes syscall nr of the i386 table with int $0x80
// (ia32_amd64.s), the classic way around syscall monitors, and returns
// what the kernel put in eax: the result, or -errno.
func Syscall32(nr, a1, a2, a3 uintptr) uintptr

// haveSyscall32: this architecture can make ia32 syscalls from a 64-bit
// process.
const haveSyscall32 = true
