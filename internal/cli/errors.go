// Package cli is the command layer: the flags every tool shares, errors
// with exit codes, and the loop that announces tracing and runs a source
// until Ctrl-C, -d or a closed output. It reads the environment (OWL_HOOKS)
// and mounts tracefs, so that the libraries below it do neither.
package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/caps"
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

// ErrPrivileges is wrapped by the error of a process that lacks a
// capability the run needs (a *caps.MissingError).
var ErrPrivileges = caps.ErrMissing

// Privileged checks, before anything is opened, that this process has the
// capabilities a run needs (caps.Needs: extra are the tool's own, pid is
// -p): without them every hook would fail with EPERM and the user would
// read that this kernel has no usable hook. On kernels that charge BPF
// memory to RLIMIT_MEMLOCK (before 5.11) it also lifts that limit, as a
// program or map may need more than the default 64 KiB or 8 MiB.
func Privileged(extra caps.Set, pid int) error {
	err := caps.Require(extra, pid)
	if !caps.MemcgAccounting() {
		// Needs CAP_SYS_RESOURCE when the hard limit is lower, which
		// caps.Needs then asked for.
		unix.Setrlimit(unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY})
	}
	return err
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
	return rewriteMemlock(s, caps.MemcgAccounting() || unlimited)
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
