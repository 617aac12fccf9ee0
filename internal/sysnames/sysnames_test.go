package sysnames

import (
	"runtime"
	"strconv"
	"testing"
)

// knownSyscalls are numbers owl's tools depend on, checked on both arches
// because they differ between them.
var knownSyscalls = []struct {
	arch string
	nr   int
	name string
}{
	{"amd64", 0, "read"},
	{"amd64", 2, "open"},
	{"amd64", 59, "execve"},
	{"amd64", 62, "kill"},
	{"amd64", 105, "setuid"},
	{"amd64", 117, "setresuid"},
	{"amd64", 122, "setfsuid"},
	{"amd64", 161, "chroot"},
	{"amd64", 257, "openat"},
	{"amd64", 262, "newfstatat"},
	{"arm64", 51, "chroot"},
	{"arm64", 56, "openat"},
	{"arm64", 62, "lseek"},
	{"arm64", 63, "read"},
	{"arm64", 79, "newfstatat"},
	{"arm64", 80, "fstat"},
	{"arm64", 129, "kill"},
	{"arm64", 146, "setuid"},
	{"arm64", 147, "setresuid"},
	{"arm64", 151, "setfsuid"},
	{"arm64", 221, "execve"},
	{"arm64", 222, "mmap"},
	{"x86_64", 257, "openat"},
	{"aarch64", 56, "openat"},
	// The ia32 table names the 32-bit syscalls of x86-64's compat mode,
	// with the 16-bit-id set*id calls and their 32-bit successors.
	{"386", 0, "restart_syscall"},
	{"386", 11, "execve"},
	{"386", 23, "setuid"},
	{"386", 37, "kill"},
	{"386", 46, "setgid"},
	{"386", 70, "setreuid"},
	{"386", 71, "setregid"},
	{"386", 138, "setfsuid"},
	{"386", 139, "setfsgid"},
	{"386", 164, "setresuid"},
	{"386", 170, "setresgid"},
	{"386", 203, "setreuid32"},
	{"386", 204, "setregid32"},
	{"386", 208, "setresuid32"},
	{"386", 210, "setresgid32"},
	{"386", 213, "setuid32"},
	{"386", 214, "setgid32"},
	{"386", 215, "setfsuid32"},
	{"386", 216, "setfsgid32"},
	{"386", 295, "openat"},
	{"i386", 37, "kill"},
	{"i686", 208, "setresuid32"},
}

func TestSyscall(t *testing.T) {
	for _, tc := range knownSyscalls {
		if got := Syscall(tc.arch, tc.nr); got != tc.name {
			t.Errorf("Syscall(%q, %d) = %q, want %q", tc.arch, tc.nr, got, tc.name)
		}
	}
}

func TestSyscallNr(t *testing.T) {
	for _, tc := range knownSyscalls {
		nr, ok := SyscallNr(tc.arch, tc.name)
		if !ok || nr != tc.nr {
			t.Errorf("SyscallNr(%q, %q) = %d, %v; want %d, true", tc.arch, tc.name, nr, ok, tc.nr)
		}
	}
	// arm64 has only the *at variants of the old path syscalls.
	for _, tc := range []struct{ arch, name string }{
		{"arm64", "open"},
		{"arm64", "stat"},
		{"amd64", "no_such_syscall"},
		{"amd64", ""},
		{"mips", "read"},
	} {
		if nr, ok := SyscallNr(tc.arch, tc.name); ok {
			t.Errorf("SyscallNr(%q, %q) = %d, true; want false", tc.arch, tc.name, nr)
		}
	}
}

func TestSyscallRoundTrip(t *testing.T) {
	for _, arch := range []string{"amd64", "arm64", IA32} {
		named := 0
		for nr, name := range syscallTable(arch) {
			if name == "" {
				continue
			}
			named++
			if got, ok := SyscallNr(arch, name); !ok || got != nr {
				t.Errorf("%s: SyscallNr(%q) = %d, %v; want %d (duplicate name?)", arch, name, got, ok, nr)
			}
		}
		// All have well over 300 syscalls; far fewer means a broken table.
		if named < 300 {
			t.Errorf("%s: only %d named syscalls", arch, named)
		}
	}
}

func TestSyscallFallback(t *testing.T) {
	for _, tc := range []struct {
		arch string
		nr   int
		want string
	}{
		{"amd64", -1, "syscall_-1"},
		{"amd64", 100000, "syscall_100000"},
		{"arm64", 244, "syscall_244"}, // arch-specific range marker, not a syscall
		{"arm64", 1024, "syscall_1024"},
		{"386", 222, "syscall_222"}, // unused in the i386 table
		{"386", 100000, "syscall_100000"},
		{"mips", 0, "syscall_0"},
		{"", 59, "syscall_59"},
	} {
		if got := Syscall(tc.arch, tc.nr); got != tc.want {
			t.Errorf("Syscall(%q, %d) = %q, want %q", tc.arch, tc.nr, got, tc.want)
		}
	}
}

func TestNative(t *testing.T) {
	if got := Native(); got != runtime.GOARCH {
		t.Fatalf("Native() = %q, want %q", got, runtime.GOARCH)
	}
	if runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" {
		if got := Syscall(Native(), 0); got == "syscall_0" {
			t.Errorf("no table for native arch %s", Native())
		}
	}
}

func TestCapability(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{
		{0, "CAP_CHOWN"},
		{6, "CAP_SETGID"},
		{7, "CAP_SETUID"},
		{18, "CAP_SYS_CHROOT"},
		{21, "CAP_SYS_ADMIN"},
		{38, "CAP_PERFMON"},
		{39, "CAP_BPF"},
		{40, "CAP_CHECKPOINT_RESTORE"},
		{41, "CAP_41"},
		{63, "CAP_63"},
		{-1, "CAP_-1"},
	} {
		if got := Capability(tc.n); got != tc.want {
			t.Errorf("Capability(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	for n := 0; n <= 40; n++ {
		if got := Capability(n); got == "" || got == "CAP_"+strconv.Itoa(n) {
			t.Errorf("Capability(%d) = %q, want a name", n, got)
		}
	}
}

func TestErrno(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{
		{1, "EPERM"},
		{2, "ENOENT"},
		{11, "EAGAIN"},
		{13, "EACCES"},
		{22, "EINVAL"},
		{38, "ENOSYS"},
		{95, "ENOTSUP"},
		{-1, "EPERM"},
		{-13, "EACCES"},
		{0, "errno_0"},
		{41, "errno_41"}, // unused on Linux
		{4095, "errno_4095"},
	} {
		if got := Errno(tc.n); got != tc.want {
			t.Errorf("Errno(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestNoAllocs holds the promise that naming a known number allocates
// nothing, since these run once per event.
func TestNoAllocs(t *testing.T) {
	var sink string
	allocs := testing.AllocsPerRun(100, func() {
		sink = Syscall("amd64", 257)
		sink = Syscall("arm64", 56)
		sink = Syscall(IA32, 208)
		sink = Capability(21)
		sink = Errno(-13)
	})
	_ = sink
	if allocs != 0 {
		t.Errorf("known-number lookups allocate %v times, want 0", allocs)
	}
}

func BenchmarkSyscall(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		_ = Syscall("amd64", i&255)
	}
}
