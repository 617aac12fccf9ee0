package cli

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

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

// maxSeconds is the longest interval time.Duration holds.
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
