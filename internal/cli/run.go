package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

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

// Sink is where a run's output goes (an *output.Writer of any row type).
type Sink interface {
	Header()
	Flush() error
	OnError(func(error))
	Lost(stderr io.Writer, st probe.Stats)
	Abandon()
	Stalled(time.Duration) bool
	Close() error
}

// drainGrace is how long one write of the output may block once the run
// is over (Ctrl-C, SIGTERM, -d, -p's exit). A reader that stalls longer (owl ... |
// (sleep 60; wc -l)) would otherwise keep owl waiting in write(2) and
// deaf to signals: the events not written by then are counted as lost
// (output_queue_full) and owl ends.
const drainGrace = time.Second

// Loop says how to run a source.
type Loop[E any] struct {
	What string // for "Tracing <What>... Hit Ctrl-C to end."
	// NoHeader leaves out the column header at the start (reports that
	// print their own).
	NoHeader bool
	Emit     func(*E) // each event; nil ignores them (count-only modes)
	// Report prints counts or summaries every Every (0: only at the end)
	// and once at the end; nil when there are none.
	Report func(now time.Time) error
	Every  time.Duration
}

// Run runs src until Ctrl-C, SIGTERM, -d, the exit of -p's process (said
// on stderr, status 0) or a closed output: it prints the
// header, announces tracing on stderr, hands each event to Emit, flushes
// output whenever the ring is drained, reports and, at the end, says what
// was lost. A closed pipe (owl ... | head -1) ends it quietly, status 0.
// Once the run is over, owl writes what is left unless a write blocks for
// drainGrace; then it stops waiting, counts what was not written, and ends.
func Run[E any](cmd *cobra.Command, c *Common, src *tool.Source[E], out Sink, l Loop[E]) error {
	ctx, cancel := c.Context(cmd.Context())
	defer cancel()
	// -p's process exiting ends the run as Ctrl-C does.
	stopWatch := c.watchPID(cancel)
	defer stopWatch()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
		case <-finished:
			return
		}
		// Events still being read and decoded are waited for; a
		// reader that has blocked one write for drainGrace is not.
		tick := time.NewTicker(drainGrace / 20)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if out.Stalled(drainGrace) {
					out.Abandon()
					return
				}
			case <-finished:
				return
			}
		}
	}()
	var (
		mu   sync.Mutex // Emit and Report share out
		werr error
	)
	out.OnError(func(err error) {
		mu.Lock()
		werr = err
		mu.Unlock()
		cancel()
	})
	if !l.NoHeader {
		out.Header()
	}
	if err := out.Flush(); err != nil {
		return Fail(err)
	}
	src.Drained = func() {
		mu.Lock()
		out.Flush()
		mu.Unlock()
	}
	stopRelink := c.relinkOnExec(src.Session, func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", args...)
		mu.Unlock()
	})
	defer stopRelink()
	Announce(cmd.ErrOrStderr(), l.What)
	reported := make(chan error, 1)
	go func() {
		if l.Report == nil {
			reported <- nil
			return
		}
		reported <- tool.Every(ctx, l.Every, func(now time.Time) error {
			mu.Lock()
			defer mu.Unlock()
			if err := l.Report(now); err != nil {
				return err
			}
			return out.Flush()
		})
	}()
	emit := func(*E) {}
	if l.Emit != nil {
		emit = func(e *E) {
			mu.Lock()
			l.Emit(e)
			mu.Unlock()
		}
	}
	runErr := src.Run(ctx, emit)
	cancel()
	stopRelink()
	exited := stopWatch()
	repErr := <-reported
	st, stErr := src.Stats()
	// stderr is rarely the blocked stdout, but may be (2>&1 | ...): the
	// last words are written within drainGrace or not at all.
	stderr := &boundedWriter{w: cmd.ErrOrStderr(), timeout: drainGrace}
	mu.Lock()
	out.Lost(stderr, st)
	mu.Unlock()
	if exited {
		fmt.Fprintf(stderr, "owl: process %d exited\n", c.PID)
	}
	closeErr := out.Close()
	mu.Lock()
	defer mu.Unlock()
	if werr != nil || closeErr != nil {
		if errors.Is(werr, syscall.EPIPE) || errors.Is(closeErr, syscall.EPIPE) {
			return nil // the reader is gone: end quietly, as BCC's tools do
		}
		return Fail(errors.Join(werr, closeErr))
	}
	return Fail(errors.Join(runErr, repErr, stErr))
}

// boundedWriter gives its writes timeout, from the first, to complete,
// then leaves them running and reports success, skipping the writes that
// follow: for stderr at the end of a run, where a blocked reader must not
// keep owl from ending.
type boundedWriter struct {
	w        io.Writer
	timeout  time.Duration
	deadline time.Time
	stuck    bool
}

func (b *boundedWriter) Write(p []byte) (int, error) {
	if b.stuck {
		return len(p), nil
	}
	if b.deadline.IsZero() {
		b.deadline = time.Now().Add(b.timeout)
	}
	p = bytes.Clone(p) // the write may outlive the call
	done := make(chan struct{})
	var n int
	var err error
	go func() {
		n, err = b.w.Write(p)
		close(done)
	}()
	t := time.NewTimer(time.Until(b.deadline))
	defer t.Stop()
	select {
	case <-done:
		return n, err
	case <-t.C:
		b.stuck = true
		return len(p), nil
	}
}

// Stream runs src printing each event with table: the common case.
func Stream[E any](cmd *cobra.Command, c *Common, src *tool.Source[E], table output.Table[E], what string) error {
	out := output.NewWriter(cmd.OutOrStdout(), c.Format, table)
	return Run(cmd, c, src, out, Loop[E]{What: what, Emit: func(e *E) { out.Event(e) }})
}
