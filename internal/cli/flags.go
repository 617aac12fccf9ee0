package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/caps"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

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
	Latency  time.Duration // longest wait of an event in the ring below the wakeup threshold
	Format   output.Format
	// RingBytes overrides the tool's ring buffer size (hidden
	// --ring-bytes): tests overfill a small ring to check that every lost
	// event is counted (docs/RELIABILITY.md).
	RingBytes int
	// PendingEntries overrides the size of the tool's table of events
	// waiting for their end (hidden --pending-entries, tools that have
	// one): tests overfill it to check that every event it loses is
	// counted.
	PendingEntries int
	// NoUIDShort keeps --uid without its -u shorthand, for a command whose
	// -u means something else (funclatency's -u is BCC's microseconds).
	// Set it before NewCommand adds the flags.
	NoUIDShort bool
	// info is the tool's, for the capabilities it needs.
	info tool.Info
	// cmd is the command the flags were added to, to tell a flag given as
	// 0 from one not given (nil: a flag is given when not at its default).
	cmd *cobra.Command
	// pidfd is the -p process, held from Options to the end of the
	// command: it tells when that process exits, and a pid number alone
	// could by then name another process (pids are recycled).
	pidfd *os.File
}

// Limits of the task filters. A pid is below pid_max, which is at most
// PID_MAX_LIMIT (4194304, include/linux/threads.h). A uid is 32 bits, and
// 4294967295 is (uid_t)-1, the kernel's "no uid", which the BPF filter
// takes as "any uid".
const (
	maxPID = 4194304
	maxUID = 1<<32 - 2
	// maxRing bounds --ring-bytes: 1 GiB, far above any tool's default.
	maxRing = 1 << 30
	// maxPending bounds --pending-entries: the largest pending table a
	// tool has by default (tcpconnect's); LRU tables are allocated whole.
	maxPending = 1 << 16
)

// AddFlags registers the common flags; task adds the task filters, a tool
// with a pending table (c.info) --pending-entries.
func (c *Common) AddFlags(cmd *cobra.Command, task bool) {
	c.cmd = cmd
	f := cmd.Flags()
	if task {
		f.IntVarP(&c.PID, "pid", "p", 0, "trace this process (`PID`) only, filtered in the kernel (1 to "+strconv.Itoa(maxPID)+"); when it exits, owl says so and ends (status 0)")
		c.UID = -1
		short := "u"
		if c.NoUIDShort {
			short = ""
		}
		f.VarP(unsetInt{&c.UID, -1}, "uid", short, "trace this `UID` only (0 to "+strconv.Itoa(maxUID)+")")
		f.StringVar(&c.Cgroup, "cgroup", "", "trace tasks of this cgroup v2 directory only (`PATH`, as /sys/fs/cgroup/...)")
		f.StringVar(&c.MntNS, "mntns", "", "trace tasks of this mount namespace only: its inode `ID` (ls -Li /proc/PID/ns/mnt) or that path")
	}
	f.IntVarP(&c.Duration, "duration", "d", 0, "stop after `SECONDS` (1 to "+strconv.Itoa(maxSeconds)+")")
	f.StringVarP(&c.Output, "output", "o", "text", "output format: text or json (one object per line)")
	f.DurationVar(&c.Latency, "poll", probe.DefaultLatency, "read events at most `DURATION` after they happen ("+minLatency.String()+" to "+maxLatency.String()+"): the ring wakes owl only when a quarter full (at most 64 KiB), which costs far less per event in storms; a reader timer bounds the wait")
	f.IntVar(&c.RingBytes, "ring-bytes", 0, "ring buffer size in `BYTES` (a power of two, 4096 to "+strconv.Itoa(maxRing)+"); for tests")
	f.MarkHidden("ring-bytes")
	if c.info.Pending {
		f.IntVar(&c.PendingEntries, "pending-entries", 0, "size of the table of events waiting for their end, in `ENTRIES` (1 to "+strconv.Itoa(maxPending)+"); for tests")
		f.MarkHidden("pending-entries")
	}
	f.StringVar(&c.Hook, "hook", "", "use only hooks of this `KIND`: tracepoint, raw_tracepoint, fentry (fentry/fexit), kprobe (kprobe/kretprobe) or uprobe; default: the first that works (env OWL_HOOKS=KIND forces KIND in tools that have it)")
}

// unsetInt is an int flag whose unset value (-1 for -u) is not shown as
// its default: it is not a value one may give.
type unsetInt struct {
	p     *int
	unset int
}

func (v unsetInt) String() string {
	if v.p == nil || *v.p == v.unset {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func (v unsetInt) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		return err
	}
	*v.p = int(n)
	return nil
}

func (v unsetInt) Type() string { return "int" }

// Options validates the common flags and OWL_HOOKS, checks that this
// process may load and attach BPF programs, and returns the options to open
// a tool with. It mounts tracefs when it is missing (attaching tracepoints
// needs it).
func (c *Common) Options() (tool.Options, error) {
	opts := tool.DefaultOptions()
	if err := c.check(); err != nil {
		return opts, err
	}
	var err error
	opts.Task.PID, opts.Task.UID = c.PID, c.UID
	if opts.Task.Cgroup, err = cgroupID(c.Cgroup); err != nil {
		return opts, err
	}
	if opts.Task.MntNS, err = mntnsID(c.MntNS); err != nil {
		return opts, err
	}
	opts.Hook = c.Hook
	opts.Latency = c.Latency
	opts.RingBytes = uint32(c.RingBytes)
	opts.PendingEntries = uint32(c.PendingEntries)
	if opts.Prefer, err = HooksEnv(); err != nil {
		return opts, err
	}
	// A missing capability is said when the tool opens (tool.Open), which
	// knows what its flags add (--ustack, -K): one line then names all it
	// needs. Only what must be there before is checked here: mounting
	// tracefs, and everything on kernels before 5.8 (CAP_SYS_ADMIN).
	if err := Privileged(c.caps(), c.PID); err != nil {
		var me *caps.MissingError
		if !errors.As(err, &me) || me.Missing.Has(caps.SysAdmin) {
			return opts, err
		}
	}
	opts.Runtime = probe.NewRuntime()
	if err := probe.EnsureTracefs(); err != nil {
		return opts, err
	}
	if err := c.openPID(); err != nil {
		return opts, err
	}
	return opts, nil
}

// caps is what the tool needs besides caps.Base with its default config
// and the -p given: flags that need more (--ustack, -K) are checked again
// when the tool opens.
func (c *Common) caps() caps.Set {
	if c.PID != 0 {
		return c.info.CapsPID
	}
	return c.info.Caps
}

// explain turns a permission error of a run into the line naming the
// capability it lacks, where one is: a process's files read before the
// tool opened (CAP_SYS_PTRACE), perf events refused at Debian's and
// Ubuntu's kernel.perf_event_paranoid=3 (CAP_SYS_ADMIN). Other errors,
// and permission errors with every capability there, are left as they
// are.
func (c *Common) explain(err error) error {
	if err == nil || !errors.Is(err, fs.ErrPermission) || errors.Is(err, caps.ErrMissing) {
		return err
	}
	extra := c.caps()
	pe := (*fs.PathError)(nil)
	isPath := errors.As(err, &pe)
	if isPath && strings.HasPrefix(pe.Path, "/proc/") {
		extra |= caps.SysPtrace
	}
	if missing := caps.Require(extra, c.PID); missing != nil {
		return missing
	}
	have, _ := caps.Effective()
	if p := caps.Paranoid(); p > 2 && !isPath && !have.Has(caps.SysAdmin) {
		n := caps.Needs(extra, c.PID)
		return &caps.MissingError{Missing: caps.SysAdmin, Needs: n.Set | caps.SysAdmin,
			Why: fmt.Sprintf("for perf events at kernel.perf_event_paranoid=%d (at 2, CAP_PERFMON does)", p)}
	}
	return err
}

// Check validates the common flags without opening anything, for modes
// that trace nothing (usdt -l): bad input is bad input there too.
func (c *Common) Check() error { return c.check() }

// check validates the numeric flags and --hook and -o: bad input is one
// line naming the flag and its range.
func (c *Common) check() error {
	var err error
	if c.Format, err = output.ParseFormat(c.Output); err != nil {
		return &UsageError{Err: err}
	}
	if c.given("duration", c.Duration, 0) && (c.Duration < 1 || c.Duration > maxSeconds) {
		return Usagef("--duration %d: want 1 to %d seconds", c.Duration, maxSeconds)
	}
	if c.given("pid", c.PID, 0) {
		if c.PID < 1 || c.PID > maxPID {
			return Usagef("--pid %d: want a process id from 1 to %d", c.PID, maxPID)
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(c.PID)); err != nil {
			return Usagef("--pid %d: no such process", c.PID)
		}
	}
	pollGiven := c.Latency != 0
	if c.cmd != nil {
		pollGiven = c.cmd.Flags().Changed("poll")
	}
	if pollGiven && (c.Latency < minLatency || c.Latency > maxLatency) {
		return Usagef("--poll %v: want %v to %v", c.Latency, minLatency, maxLatency)
	}
	if c.given("ring-bytes", c.RingBytes, 0) && (c.RingBytes < 4096 || c.RingBytes > maxRing || c.RingBytes&(c.RingBytes-1) != 0) {
		return Usagef("--ring-bytes %d: want a power of two from 4096 to %d", c.RingBytes, maxRing)
	}
	if c.given("pending-entries", c.PendingEntries, 0) && (c.PendingEntries < 1 || c.PendingEntries > maxPending) {
		return Usagef("--pending-entries %d: want 1 to %d entries", c.PendingEntries, maxPending)
	}
	if c.given("uid", c.UID, -1) && (c.UID < 0 || c.UID > maxUID) {
		return Usagef("--uid %d: want a user id from 0 to %d", c.UID, maxUID)
	}
	return HookKinds("--hook", c.Hook)
}

// given reports whether the flag name was given on the command line.
// Without a command (a Common filled in by code) a value other than the
// default counts as given.
func (c *Common) given(name string, v, def int) bool {
	if c.cmd != nil {
		return c.cmd.Flags().Changed(name)
	}
	return v != def
}

// HookKinds checks that kinds (as given to --hook or OWL_HOOKS, whose name
// is what) names only hook kinds, comma-separated. A real kind that a tool
// lacks is not checked here: --hook fails in that tool and OWL_HOOKS is
// ignored there.
func HookKinds(what, kinds string) error {
	if kinds == "" {
		return nil
	}
	for _, k := range strings.Split(kinds, ",") {
		if !slices.Contains(hookKinds, probe.Kind(strings.TrimSpace(k))) {
			return Usagef("%s %q: %q is no hook kind; want %s", what, kinds, strings.TrimSpace(k), kindList())
		}
	}
	return nil
}

// hookKinds are the kinds of probe.Kind, in the order --help names them.
var hookKinds = []probe.Kind{probe.Tracepoint, probe.RawTracepoint, probe.Fentry, probe.Kprobe, probe.Uprobe}

func kindList() string {
	names := make([]string, len(hookKinds))
	for i, k := range hookKinds {
		names[i] = string(k)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// HooksEnv returns OWL_HOOKS, checked as --hook is.
func HooksEnv() (string, error) {
	env := os.Getenv("OWL_HOOKS")
	return env, HookKinds("OWL_HOOKS", env)
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
		return mntnsFile(s)
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, Usagef("mntns %q: want an inode number (ls -Li /proc/PID/ns/mnt) or a path", s)
	}
	return uint32(n), nil
}

// mntnsFile is the inode of the mount namespace file at path: any other
// file's inode would be taken for a namespace and filter out everything.
func mntnsFile(path string) (uint32, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, Usagef("mntns %s: %v", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, Usagef("mntns %s: %v", path, err)
	}
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil || typ != unix.CLONE_NEWNS {
		return 0, Usagef("mntns %s: not a mount namespace (as /proc/PID/ns/mnt)", path)
	}
	return uint32(st.Ino), nil
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
			// SIGINT and SIGTERM end the command the same way from its
			// start to its end: one that comes while the tool attaches
			// ends the run as soon as it begins, one that comes while it
			// detaches (after Run, or after -p's process exited) is
			// absorbed, so owl still detaches and exits 0. A second one
			// gets the signal's default action: owl ends at once (its
			// probes are fd-based links, which the kernel detaches).
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			context.AfterFunc(ctx, stop)
			cmd.SetContext(ctx)
			opts, err := c.Options()
			if err != nil {
				return err
			}
			defer c.closePID()
			err = run(cmd, opts)
			if err != nil && c.pidExited() {
				// The -p process went away while the tool was starting
				// (its maps or files vanished under it): that, not the
				// error it caused, is what happened.
				fmt.Fprintf(cmd.ErrOrStderr(), "owl: process %d exited before tracing started (%s)\n", c.PID, Message(err))
				return nil
			}
			return c.explain(err)
		},
	}
	c.info = info
	c.AddFlags(cmd, info.Task)
	return cmd
}

// Bounds of --poll: below a millisecond the reader's timer costs more
// than the wakeups it saves; above 10 s events look lost.
const (
	minLatency = time.Millisecond
	maxLatency = 10 * time.Second
)

// maxSeconds is the longest interval time.Duration holds, in whole seconds.
const maxSeconds = int(^uint64(0)>>1) / int(time.Second)

// Seconds checks a flag of whole seconds (-d, -i, -s): 0 when the flag was
// not given, else 1 to ~292 years; a value given as 0, negative or larger
// is bad input.
func Seconds(cmd *cobra.Command, name string, n int) (time.Duration, error) {
	if !cmd.Flags().Changed(name) {
		return 0, nil
	}
	if n < 1 || n > maxSeconds {
		return 0, Usagef("--%s %d: want 1 to %d seconds", name, n, maxSeconds)
	}
	return time.Duration(n) * time.Second, nil
}
