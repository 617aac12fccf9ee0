// Package cli is the command layer: the flags every tool shares, errors
// with exit codes, and the loop that announces tracing and runs a source
// until Ctrl-C, -d or a closed output. It reads the environment (OWL_HOOKS)
// and mounts tracefs, so that the libraries below it do neither.
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
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
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

// Common are the flags every tool takes: -d, -o, --hook and, for tools
// whose events have a task, -p, -u, --cgroup and --mntns.
type Common struct {
	PID      int
	UID      int
	Cgroup   string
	MntNS    string
	Duration int // seconds, 0 = until Ctrl-C
	Output   string
	Hook     string
	Format   output.Format
}

// AddFlags registers the common flags; task adds the task filters.
func (c *Common) AddFlags(cmd *cobra.Command, task bool) {
	f := cmd.Flags()
	if task {
		f.IntVarP(&c.PID, "pid", "p", 0, "trace this process only (filtered in the kernel)")
		f.IntVarP(&c.UID, "uid", "u", -1, "trace this UID only")
		f.StringVar(&c.Cgroup, "cgroup", "", "trace tasks of this cgroup v2 directory only (`PATH`, as /sys/fs/cgroup/...)")
		f.StringVar(&c.MntNS, "mntns", "", "trace tasks of this mount namespace only: its inode `ID` (ls -Li /proc/PID/ns/mnt) or that path")
	}
	f.IntVarP(&c.Duration, "duration", "d", 0, "stop after `SECONDS`")
	f.StringVarP(&c.Output, "output", "o", "text", "output format: text or json (one object per line)")
	f.StringVar(&c.Hook, "hook", "", "use only hooks of this `KIND`: tracepoint, fentry (fentry/fexit) or kprobe (kprobe/kretprobe); default: the first that works (env OWL_HOOKS=KIND forces KIND in tools that have it)")
}

// Options validates the common flags and returns the options to open a
// tool with. It mounts tracefs when it is missing (attaching tracepoints
// needs it).
func (c *Common) Options() (tool.Options, error) {
	opts := tool.DefaultOptions()
	var err error
	if c.Format, err = output.ParseFormat(c.Output); err != nil {
		return opts, &UsageError{Err: err}
	}
	if c.Duration < 0 {
		return opts, Usagef("duration %d: must be positive", c.Duration)
	}
	if c.PID < 0 {
		return opts, Usagef("pid %d: must be positive", c.PID)
	}
	if c.PID > 0 {
		if _, err := os.Stat("/proc/" + strconv.Itoa(c.PID)); err != nil {
			return opts, Usagef("pid %d: no such process", c.PID)
		}
	}
	if c.UID < -1 {
		return opts, Usagef("uid %d: must be positive", c.UID)
	}
	opts.Task.PID, opts.Task.UID = c.PID, c.UID
	if opts.Task.Cgroup, err = cgroupID(c.Cgroup); err != nil {
		return opts, err
	}
	if opts.Task.MntNS, err = mntnsID(c.MntNS); err != nil {
		return opts, err
	}
	opts.Hook = c.Hook
	opts.Prefer = os.Getenv("OWL_HOOKS")
	opts.Runtime = probe.NewRuntime()
	if err := probe.EnsureTracefs(); err != nil {
		return opts, err
	}
	return opts, nil
}

// cgroupID is the id BPF's bpf_get_current_cgroup_id() returns for the
// cgroup v2 directory path: its inode number.
func cgroupID(path string) (uint64, error) {
	if path == "" {
		return 0, nil
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return 0, Usagef("cgroup %s: %v", path, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		why := "this host mounts only cgroup v1, where BPF cgroup ids cannot tell containers apart; use --mntns"
		if at := cgroup2Mount(); at != "" {
			why = "not in the cgroup v2 hierarchy (mounted at " + at + ")"
		}
		return 0, Usagef("cgroup %s: %s", path, why)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, Usagef("cgroup %s: %v", path, err)
	}
	return st.Ino, nil
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted, "" when it is
// not (hosts with cgroup v1 only).
func cgroup2Mount() string {
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "cgroup2" {
			return f[1]
		}
	}
	return ""
}

// mntnsID accepts a mount namespace's inode number or a path to it
// (/proc/PID/ns/mnt).
func mntnsID(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	if strings.HasPrefix(s, "/") {
		var st unix.Stat_t
		if err := unix.Stat(s, &st); err != nil {
			return 0, Usagef("mntns %s: %v", s, err)
		}
		return uint32(st.Ino), nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, Usagef("mntns %q: want an inode number (ls -Li /proc/PID/ns/mnt) or a path", s)
	}
	return uint32(n), nil
}

// Net is the -4/-6 pair of flags and -P.
type Net struct {
	v4, v6 bool
	ports  string
}

// AddFlags registers -4, -6 and -P; which says which ports -P selects.
func (n *Net) AddFlags(cmd *cobra.Command, which string) {
	cmd.Flags().BoolVarP(&n.v4, "ipv4", "4", false, "trace IPv4 only")
	cmd.Flags().BoolVarP(&n.v6, "ipv6", "6", false, "trace IPv6 only")
	cmd.Flags().StringVarP(&n.ports, "port", "P", "", "trace these "+which+" `PORTS` only (comma-separated, at most "+strconv.Itoa(probe.MaxPorts)+")")
}

// Filter validates the flags.
func (n *Net) Filter() (probe.NetFilter, error) {
	var f probe.NetFilter
	switch {
	case n.v4 && n.v6:
		return f, Usagef("-4 and -6 exclude each other")
	case n.v4:
		f.Family = 4
	case n.v6:
		f.Family = 6
	}
	var err error
	f.Ports, err = ParsePorts(n.ports)
	return f, err
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
	if len(ports) > probe.MaxPorts {
		return nil, Usagef("%d ports: -P takes at most %d", len(ports), probe.MaxPorts)
	}
	return ports, nil
}

// NewCommand builds a tool's command: usage, help from its Info, the
// common flags, and run called with the validated options.
func NewCommand(info tool.Info, help, example string, c *Common, run func(cmd *cobra.Command, opts tool.Options) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:     info.Name + " [flags]",
		Short:   info.Summary,
		Long:    help,
		Example: example,
		Args:    NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := c.Options()
			if err != nil {
				return err
			}
			return run(cmd, opts)
		},
	}
	c.AddFlags(cmd, info.Task)
	return cmd
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

// Sink is where a run's output goes (an *output.Writer of any row type).
type Sink interface {
	Header()
	Flush() error
	OnError(func(error))
	Lost(stderr io.Writer, st probe.Stats)
	Close() error
}

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

// Run runs src until Ctrl-C, SIGTERM, -d or a closed output: it prints the
// header, announces tracing on stderr, hands each event to Emit, flushes
// output whenever the ring is drained, reports and, at the end, says what
// was lost. A closed pipe (owl ... | head -1) ends it quietly, status 0.
func Run[E any](cmd *cobra.Command, c *Common, src *tool.Source[E], out Sink, l Loop[E]) error {
	ctx, cancel := c.Context(cmd.Context())
	defer cancel()
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
	repErr := <-reported
	st, stErr := src.Stats()
	mu.Lock()
	out.Lost(cmd.ErrOrStderr(), st)
	mu.Unlock()
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

// Stream runs src printing each event with table: the common case.
func Stream[E any](cmd *cobra.Command, c *Common, src *tool.Source[E], table output.Table[E], what string) error {
	out := output.NewWriter(cmd.OutOrStdout(), c.Format, table)
	return Run(cmd, c, src, out, Loop[E]{What: what, Emit: func(e *E) { out.Event(e) }})
}
