// Package cli is the command layer: the flags every tool shares, errors
// with exit codes, and the loop that announces tracing and runs a source
// until Ctrl-C, -d or a closed output. It reads the environment (OWL_HOOKS)
// and mounts tracefs, so that the libraries below it do neither.
package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

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
// kind the tool lacks included) and for hooks this kernel lacks (nothing was
// traced), 1 for anything else.
func ExitCode(err error) int {
	var ue *UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue) || errors.Is(err, probe.ErrNoHook) || errors.Is(err, probe.ErrKind):
		return 2
	}
	return 1
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
