// Package cli holds what every tool's command shares: the common flags, the
// tool descriptor the registry lists, errors with exit codes, and the loop
// that announces tracing and runs until Ctrl-C or -d.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/probe"
)

// Tool is one entry of the registry.
type Tool struct {
	Name    string
	Summary string
	// Command builds the tool's cobra command.
	Command func() *cobra.Command
	// Probe loads and attaches the tool with its default settings, without a
	// reader, so `owl tools` can report the hook it would use; the caller
	// closes the session at once.
	Probe func(only string) (*probe.Session, error)
}

// UsageError is bad input: the process exits with status 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// ExitCode maps an error to the process status: 2 for bad input and for
// hooks this kernel lacks (nothing was traced), 1 for failures while tracing.
func ExitCode(err error) int {
	var ue *UsageError
	if err == nil {
		return 0
	}
	if errors.As(err, &ue) || errors.Is(err, probe.ErrNoHook) {
		return 2
	}
	var fe *failure
	if errors.As(err, &fe) {
		return 1
	}
	// Errors cobra makes itself (unknown command or flag) are bad input.
	return 2
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

// Common are the flags every tool takes.
type Common struct {
	PID      int
	Duration int // seconds, 0 = until Ctrl-C
	Output   string
	Hook     string
	Format   output.Format
}

// AddFlags registers -p (when the tool has a process), -d, -o and --hook.
func (c *Common) AddFlags(cmd *cobra.Command, withPID bool) {
	f := cmd.Flags()
	if withPID {
		f.IntVarP(&c.PID, "pid", "p", 0, "trace this process only (filtered in the kernel)")
	}
	f.IntVarP(&c.Duration, "duration", "d", 0, "stop after `SECONDS`")
	f.StringVarP(&c.Output, "output", "o", "text", "output format: text or json (one object per line)")
	f.StringVar(&c.Hook, "hook", "", "use only hooks of this `KIND`: tracepoint, fentry (fentry/fexit) or kprobe (kprobe/kretprobe); default: the first that works (env OWL_HOOKS=KIND forces KIND in tools that have it)")
}

// Validate checks the common flags; call it first in RunE.
func (c *Common) Validate() error {
	var err error
	if c.Format, err = output.ParseFormat(c.Output); err != nil {
		return &UsageError{Err: err}
	}
	if c.Duration < 0 {
		return Usagef("duration %d: must be positive", c.Duration)
	}
	if c.PID < 0 {
		return Usagef("pid %d: must be positive", c.PID)
	}
	if c.PID > 0 {
		if _, err := os.Stat("/proc/" + strconv.Itoa(c.PID)); err != nil {
			return Usagef("pid %d: no such process", c.PID)
		}
	}
	return nil
}

// ParsePorts parses -P: a comma-separated list of TCP ports.
func ParsePorts(s string) ([]uint16, error) {
	if s == "" {
		return nil, nil
	}
	var ports []uint16
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 65535 {
			return nil, Usagef("port %q: want a number from 1 to 65535", f)
		}
		ports = append(ports, uint16(n))
	}
	return ports, nil
}

// Context is cancelled by SIGINT, SIGTERM or the end of -d.
func (c *Common) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	if c.Duration == 0 {
		return ctx, stop
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(c.Duration)*time.Second)
	return ctx, func() { cancel(); stop() }
}

// Announce writes the line scripts wait for, once every probe is attached.
func Announce(stderr io.Writer, what string) {
	fmt.Fprintf(stderr, "Tracing %s... Hit Ctrl-C to end.\n", what)
}

// Stream runs a tracer until Ctrl-C or -d: it prints the header, announces
// tracing on stderr, hands each event to emit, flushes output whenever the
// ring is drained and reports lost events at the end.
func Stream[E any](cmd *cobra.Command, c *Common, t *probe.Tracer[E], out *output.Writer[E], what string, emit func(*E)) error {
	out.Header()
	if err := out.Flush(); err != nil {
		return Fail(err)
	}
	if err := Trace(cmd, c, t, what, emit, func() { out.Flush() }); err != nil {
		return err
	}
	return Finish(cmd, t.Session, out)
}

// Trace announces tracing on stderr and runs t until Ctrl-C or -d.
func Trace[E any](cmd *cobra.Command, c *Common, t *probe.Tracer[E], what string, emit func(*E), idle func()) error {
	ctx, cancel := c.Context(cmd.Context())
	defer cancel()
	Announce(cmd.ErrOrStderr(), what)
	return Fail(t.Run(ctx, emit, idle))
}

// Finish reports lost events and waits until all output is written.
func Finish[E any](cmd *cobra.Command, s *probe.Session, out *output.Writer[E]) error {
	lost, err := s.Lost()
	if err != nil {
		out.Close()
		return Fail(err)
	}
	out.Lost(cmd.ErrOrStderr(), lost)
	return Fail(out.Close())
}

// Family is the -4/-6 pair of flags.
type Family struct{ v4, v6 bool }

// AddFlags registers -4 and -6.
func (f *Family) AddFlags(cmd *cobra.Command) {
	cmd.Flags().BoolVarP(&f.v4, "ipv4", "4", false, "trace IPv4 only")
	cmd.Flags().BoolVarP(&f.v6, "ipv6", "6", false, "trace IPv6 only")
}

// Value is 0 (both), 4 or 6.
func (f Family) Value() (int, error) {
	switch {
	case f.v4 && f.v6:
		return 0, Usagef("-4 and -6 exclude each other")
	case f.v4:
		return 4, nil
	case f.v6:
		return 6, nil
	}
	return 0, nil
}
