// Package cli is the command layer: the flags every tool shares, errors
// with exit codes, and the loop that announces tracing and runs a source
// until Ctrl-C, -d or a closed output. It reads the environment (OWL_HOOKS)
// and mounts tracefs, so that the libraries below it do neither.
package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/probe"
)

// UsageError is bad input: the process exits with status 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode maps an error to the process status: 2 for bad input (a hook
// kind the tool lacks included), for missing privileges and for hooks this
// kernel lacks (nothing was traced), 1 for anything else.
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue) || errors.Is(err, ErrPrivileges) ||
		errors.Is(err, probe.ErrNoHook) || errors.Is(err, probe.ErrKind):
		return 2
	}
	return 1
}

// ErrPrivileges is returned when this process may not load and attach BPF
// programs.
var ErrPrivileges = errors.New("needs root or CAP_BPF and CAP_PERFMON")

// errOldKernelPrivileges is ErrPrivileges on kernels before 5.8, which
// have no CAP_BPF or CAP_PERFMON.
var errOldKernelPrivileges error = privilegeError("needs root or CAP_SYS_ADMIN")

// errTracefsPrivileges is ErrPrivileges for a process with CAP_BPF and
// CAP_PERFMON that cannot read tracefs.
var errTracefsPrivileges error = privilegeError("needs root, or CAP_DAC_READ_SEARCH besides CAP_BPF and CAP_PERFMON to read " + tracefsEvents)

// tracefsEvents is where tracepoint ids are read (probe mounts tracefs
// there when it is missing).
const tracefsEvents = "/sys/kernel/tracing/events"

type privilegeError string

func (e privilegeError) Error() string        { return string(e) }
func (e privilegeError) Is(target error) bool { return target == ErrPrivileges }

// Privileged checks, before anything is opened, that this process may load
// tracing programs: without that every hook would fail with EPERM and the
// user would read that this kernel has no usable hook. On kernels that
// charge BPF memory to RLIMIT_MEMLOCK (before 5.11) it also lifts that
// limit, as a program or map may need more than the default 64 KiB or 8 MiB.
func Privileged() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("read this process's capabilities: %w", err)
	}
	eff := uint64(data[1].Effective)<<32 | uint64(data[0].Effective)
	last := lastCap()
	if !privileged(eff, last) {
		if last >= 0 && last < unix.CAP_BPF {
			return errOldKernelPrivileges
		}
		return ErrPrivileges
	}
	// Tracepoints are attached by ids read from tracefs, which is root's
	// alone (mode 0700) unless mounted otherwise.
	if f, err := os.Open(tracefsEvents); errors.Is(err, fs.ErrPermission) {
		return errTracefsPrivileges
	} else if err == nil {
		f.Close()
	}
	if !memcgAccounting() {
		// Needs CAP_SYS_RESOURCE; without it a failed load keeps the
		// MEMLOCK hint, which is then right.
		unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})
	}
	return nil
}

// privileged reports whether the effective capability set eff may load and
// attach tracing programs on a kernel whose last capability is last (-1:
// unknown). CAP_SYS_ADMIN covers CAP_BPF and CAP_PERFMON (5.8+) and is what
// older kernels want.
func privileged(eff uint64, last int) bool {
	has := func(c int) bool { return eff&(1<<c) != 0 }
	if has(unix.CAP_SYS_ADMIN) {
		return true
	}
	if last >= 0 && last < unix.CAP_BPF {
		return false
	}
	return has(unix.CAP_BPF) && has(unix.CAP_PERFMON)
}

// lastCap is the highest capability this kernel knows, -1 when unknown.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// memcgAccounting reports whether the kernel charges BPF maps and programs
// to the memory cgroup instead of RLIMIT_MEMLOCK: Linux 5.11 and later.
func memcgAccounting() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	major, minor, ok := kernelVersion(unix.ByteSliceToString(u.Release[:]))
	return ok && (major > 5 || major == 5 && minor >= 11)
}

// kernelVersion parses the major and minor numbers of a kernel release
// ("6.1.0-31-amd64").
func kernelVersion(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	end := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		parts[1] = parts[1][:end]
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	return major, minor, err1 == nil && err2 == nil
}

// memlockHint is what cilium/ebpf appends to every EPERM from creating a
// map or loading a program: advice for the Go programmer, and wrong where
// memory is charged to the memory cgroup or the limit is already lifted.
const memlockHint = " (MEMLOCK may be too low, consider rlimit.RemoveMemlock)"

// Message is the text to show for err: the MEMLOCK hint is dropped where
// RLIMIT_MEMLOCK cannot be the cause, and said for users where it can.
func Message(err error) string {
	s := err.Error()
	if !strings.Contains(s, memlockHint) {
		return s
	}
	var r unix.Rlimit
	unlimited := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &r) == nil && r.Cur == unix.RLIM_INFINITY
	return rewriteMemlock(s, memcgAccounting() || unlimited)
}

func rewriteMemlock(s string, irrelevant bool) string {
	instead := " (RLIMIT_MEMLOCK may be too low: raise it, as with ulimit -l unlimited)"
	if irrelevant {
		instead = ""
	}
	return strings.ReplaceAll(s, memlockHint, instead)
}

// NoArgs is cobra.NoArgs returning a UsageError.
func NoArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return &UsageError{Err: err}
	}
	return nil
}

type failure struct{ err error }

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// Fail marks an error that happened with valid input (exit status 1).
func Fail(err error) error {
	if err == nil {
		return nil
	}
	return &failure{err: err}
}
