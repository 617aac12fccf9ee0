// Package sysnames turns the numbers the kernel hands to BPF programs —
// syscall numbers, capability numbers and errnos — into the names users know.
//
// The tables are generated (see gen/) from golang.org/x/sys/unix, which is in
// turn generated from the kernel's UAPI headers, so nobody types numbers by
// hand and a new kernel release is picked up by bumping x/sys and running
// "go generate". Syscall tables for amd64, arm64 and 386 are always compiled
// in, whatever GOARCH is: the numbers differ between them (openat is 257
// on amd64, 56 on arm64 and 295 on 386), and naming them must not depend on
// the machine owl was built on. The 386 table (IA32) names the 32-bit
// syscalls an x86-64 kernel also runs.
//
// Lookups of known numbers index a slice and allocate nothing, so they are
// cheap enough to run for every event. Unknown numbers get a numeric name
// ("syscall_<nr>", "CAP_<n>", "errno_<n>") rather than "", so output never
// loses information.
package sysnames

import (
	"runtime"
	"strconv"
)

//go:generate go run ./gen

// Native returns the architecture owl was built for, as GOARCH spells it.
// Syscall numbers seen by a BPF program are those of the running kernel,
// which for a static binary is the architecture it was built for. On an
// architecture without a table here, Syscall gives numeric names.
func Native() string {
	return runtime.GOARCH
}

// IA32 is the arch, as GOARCH spells it, of the 32-bit syscalls an x86-64
// kernel runs for 32-bit processes and for int $0x80 in 64-bit ones
// (in_compat_syscall): the kernel numbers them from the i386 table, where
// kill is 37 (alarm in the amd64 table) and setuid32 is 213.
const IA32 = "386"

// syscallTable returns the table for arch, or nil. The uname -m spellings
// are accepted too because that is what kernels and tracefs report.
func syscallTable(arch string) []string {
	switch arch {
	case "amd64", "x86_64":
		return amd64Syscalls[:]
	case "arm64", "aarch64":
		return arm64Syscalls[:]
	case "386", "i386", "i686":
		return ia32Syscalls[:]
	}
	return nil
}

// Syscall returns the name of syscall nr on arch ("amd64", "arm64" or
// "386"), such as "openat". A number without a name there, or an unknown
// arch, gives "syscall_<nr>".
func Syscall(arch string, nr int) string {
	names := syscallTable(arch)
	if nr >= 0 && nr < len(names) && names[nr] != "" {
		return names[nr]
	}
	return "syscall_" + strconv.Itoa(nr)
}

// SyscallNr returns the number of the syscall called name on arch, and false
// if arch has no such syscall. Names are the kernel's, in lower case and
// without a "sys_" prefix ("openat", "newfstatat"). It scans the table: it is
// meant for parsing filters at start-up, not for the per-event path, and a
// scan of a few hundred strings avoids keeping a second, reverse table.
func SyscallNr(arch, name string) (int, bool) {
	if name == "" {
		return 0, false
	}
	for nr, n := range syscallTable(arch) {
		if n == name {
			return nr, true
		}
	}
	return 0, false
}

// Capability returns the name of capability n, such as "CAP_SYS_ADMIN". A
// capability newer than the table gives "CAP_<n>", so a newer kernel's
// capability is still shown, just by number.
func Capability(n int) string {
	if n >= 0 && n < len(capabilityNames) {
		return capabilityNames[n]
	}
	return "CAP_" + strconv.Itoa(n)
}

// Errno returns the name of errno n, such as "EPERM" for 1 or "EACCES" for
// 13. A negative n is treated as -n, because kernel functions and syscalls
// return -errno and that is what a BPF program usually sees. An unknown
// number gives "errno_<n>". amd64 and arm64 share one errno numbering, so
// there is no arch argument.
func Errno(n int) string {
	if n < 0 {
		n = -n
	}
	if n >= 0 && n < len(errnoNames) && errnoNames[n] != "" {
		return errnoNames[n]
	}
	return "errno_" + strconv.Itoa(n)
}
