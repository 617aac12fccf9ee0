package sysnames

import (
	"bufio"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The generator reads golang.org/x/sys. These tests cross-check its tables
// against the kernel UAPI headers of this machine (Debian's linux-libc-dev),
// an independent copy of the same numbers. The headers may be older or newer
// than x/sys, so only numbers both know are compared.
const (
	amd64Header = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"
	ia32Header  = "/usr/include/x86_64-linux-gnu/asm/unistd_32.h"
	genericHdr  = "/usr/include/asm-generic/unistd.h"
	capHeader   = "/usr/include/linux/capability.h"
)

// openHeader returns the lines of path, skipping the test if it is missing.
func openHeader(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("header not installed (apt-get install linux-libc-dev): %v", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// define splits "#define NAME VALUE" into its name and value.
func define(line string) (name, value string, ok bool) {
	fields := strings.Fields(line)
	if len(fields) < 3 || fields[0] != "#define" {
		return "", "", false
	}
	return fields[1], fields[2], true
}

// compareSyscalls checks every header entry against the table and requires
// that most of the table was covered, so a header that fails to parse does
// not pass silently. A number may have several candidate names because the
// header's #ifdef branches are not evaluated (asm-generic gives 84 as
// sync_file_range2 under __ARCH_WANT_SYNC_FILE_RANGE2, sync_file_range
// otherwise); the table's name must be one of them.
func compareSyscalls(t *testing.T, arch string, fromHeader map[int][]string) {
	t.Helper()
	matched := 0
	for nr, names := range fromHeader {
		got := Syscall(arch, nr)
		if got == "syscall_"+strconv.Itoa(nr) {
			continue // newer header than x/sys, or a conditional entry
		}
		if !slices.Contains(names, got) {
			t.Errorf("%s %d: table has %q, header has %q", arch, nr, got, names)
			continue
		}
		matched++
	}
	t.Logf("%s: %d syscalls match the header", arch, matched)
	if matched < 280 {
		t.Errorf("%s: only %d syscalls matched the header", arch, matched)
	}
}

func TestAMD64AgainstHeader(t *testing.T) {
	compareSyscalls(t, "amd64", plainHeader(t, amd64Header))
}

// TestIA32AgainstHeader checks the 386 table against the i386 numbers the
// x86-64 headers carry for compat mode.
func TestIA32AgainstHeader(t *testing.T) {
	compareSyscalls(t, IA32, plainHeader(t, ia32Header))
}

// plainHeader reads a header of "#define __NR_name N" lines.
func plainHeader(t *testing.T, path string) map[int][]string {
	t.Helper()
	fromHeader := make(map[int][]string)
	for _, line := range openHeader(t, path) {
		name, value, ok := define(line)
		if !ok || !strings.HasPrefix(name, "__NR_") {
			continue
		}
		nr, err := strconv.Atoi(value)
		if err != nil {
			continue
		}
		fromHeader[nr] = append(fromHeader[nr], strings.TrimPrefix(name, "__NR_"))
	}
	return fromHeader
}

// TestARM64AgainstHeader reads asm-generic/unistd.h, which arm64 uses. Most
// entries are "#define __NR_name N"; calls whose argument width differs on
// 32-bit are "#define __NR3264_name N" and are given their 64-bit name in an
// "#if __BITS_PER_LONG == 64" block ("#define __NR_fstat __NR3264_fstat",
// "#define __NR_newfstatat __NR3264_fstatat"); the "#else" block holds the
// 32-bit names (fstat64, mmap2) and is ignored.
func TestARM64AgainstHeader(t *testing.T) {
	numbers := make(map[string]int) // __NR_x and __NR3264_x macro -> number
	aliases := make(map[string]string)
	fromHeader := make(map[int][]string)
	in64 := false // inside the 64-bit branch of the __NR3264 mapping
	depth := 0    // #if nesting within that branch
	for _, line := range openHeader(t, genericHdr) {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "#if __BITS_PER_LONG == 64"):
			in64, depth = true, 0
			continue
		case in64 && strings.HasPrefix(trimmed, "#if"):
			depth++
		case in64 && strings.HasPrefix(trimmed, "#endif"):
			depth--
		case in64 && depth == 0 && strings.HasPrefix(trimmed, "#else"):
			in64 = false
		}
		name, value, ok := define(trimmed)
		if !ok {
			continue
		}
		if nr, err := strconv.Atoi(value); err == nil {
			numbers[name] = nr
			continue
		}
		if in64 && strings.HasPrefix(name, "__NR_") && strings.HasPrefix(value, "__NR3264_") {
			aliases[name] = value
		}
	}
	for name, nr := range numbers {
		if !strings.HasPrefix(name, "__NR_") {
			continue
		}
		switch name {
		case "__NR_syscalls", "__NR_arch_specific_syscall":
			continue // a count and a range marker, not syscalls
		}
		fromHeader[nr] = append(fromHeader[nr], strings.TrimPrefix(name, "__NR_"))
	}
	for name, target := range aliases {
		nr, ok := numbers[target]
		if !ok {
			continue // e.g. __NR3264_stat, which arm64 does not define
		}
		fromHeader[nr] = append(fromHeader[nr], strings.TrimPrefix(name, "__NR_"))
	}
	for _, want := range []string{"fstat", "newfstatat", "lseek", "mmap"} {
		found := false
		for _, names := range fromHeader {
			found = found || slices.Contains(names, want)
		}
		if !found {
			t.Fatalf("parsing %s found no %q; the __NR3264 handling is broken", genericHdr, want)
		}
	}
	compareSyscalls(t, "arm64", fromHeader)
}

func TestCapabilitiesAgainstHeader(t *testing.T) {
	seen := 0
	for _, line := range openHeader(t, capHeader) {
		name, value, ok := define(line)
		if !ok || !strings.HasPrefix(name, "CAP_") {
			continue
		}
		n, err := strconv.Atoi(value)
		if err != nil {
			continue // CAP_LAST_CAP and the CAP_TO_* macros
		}
		if got := Capability(n); got != name {
			t.Errorf("Capability(%d) = %q, header has %q", n, got, name)
		}
		seen++
	}
	if seen < 41 {
		t.Errorf("only %d capabilities in %s", seen, capHeader)
	}
}
