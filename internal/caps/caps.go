// Package caps says which Linux capabilities a run of a tool needs, which
// this process has, and names the missing ones in one line, before
// anything is loaded: a tool started with too few would otherwise fail at
// every hook with EPERM and blame the kernel.
//
// What needs what (measured on 6.18, see docs/RELIABILITY.md):
//   - loading and attaching tracing programs: CAP_BPF and CAP_PERFMON
//     (CAP_SYS_ADMIN covers both; before 5.8 only it will do);
//   - reading tracepoint ids in tracefs, mode 0700 and root's: nothing for
//     uid 0, CAP_DAC_READ_SEARCH for any other uid; mounting tracefs where
//     it is missing: CAP_SYS_ADMIN;
//   - kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK: lifting it
//     takes CAP_SYS_RESOURCE;
//   - reading another process's maps, executable, root or memory
//     (/proc/PID/..., process_vm_readv): CAP_SYS_PTRACE unless the process
//     has the same uid and no capability owl lacks;
//   - kernel addresses in /proc/kallsyms (kernel stack frames): CAP_SYSLOG
//     unless kernel.kptr_restrict is 0 and kernel.perf_event_paranoid ≤ 1.
package caps

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/sysnames"
)

// Set is a set of capabilities, bit n for capability n.
type Set uint64

// The capabilities owl's tools may need.
const (
	DacReadSearch Set = 1 << unix.CAP_DAC_READ_SEARCH
	SysPtrace     Set = 1 << unix.CAP_SYS_PTRACE
	SysAdmin      Set = 1 << unix.CAP_SYS_ADMIN
	SysResource   Set = 1 << unix.CAP_SYS_RESOURCE
	Syslog        Set = 1 << unix.CAP_SYSLOG
	Perfmon       Set = 1 << unix.CAP_PERFMON
	BPF           Set = 1 << unix.CAP_BPF
)

// Base is what every tool needs: load and attach tracing programs.
const Base = BPF | Perfmon

// Has reports whether s holds every capability of c.
func (s Set) Has(c Set) bool { return s&c == c }

// Names lists the capabilities, CAP_BPF and CAP_PERFMON first (what every
// tool needs), then by number.
func (s Set) Names() []string {
	var names []string
	for _, c := range []Set{BPF, Perfmon} {
		if s.Has(c) {
			names = append(names, c.name())
		}
	}
	for rest := s &^ (BPF | Perfmon); rest != 0; rest &= rest - 1 {
		names = append(names, sysnames.Capability(bits.TrailingZeros64(uint64(rest))))
	}
	return names
}

func (s Set) name() string { return sysnames.Capability(bits.TrailingZeros64(uint64(s))) }

// String is the names joined by ", ".
func (s Set) String() string { return strings.Join(s.Names(), ", ") }

// Effective is this process's effective capability set.
func Effective() (Set, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("read this process's capabilities: %w", err)
	}
	return Set(uint64(data[1].Effective)<<32 | uint64(data[0].Effective)), nil
}

// ErrMissing is wrapped by every MissingError.
var ErrMissing = errors.New("missing capabilities")

// MissingError names the capabilities a run lacks and the set it needs.
type MissingError struct {
	Missing, Needs Set
	// Why says what the missing capability is for when one is missing
	// and it is not one every tool needs ("to read process 181").
	Why string
}

func (e *MissingError) Error() string {
	s := "missing capability " + e.Missing.String()
	if bits.OnesCount64(uint64(e.Missing)) > 1 {
		s = "missing capabilities " + e.Missing.String()
	} else if e.Why != "" {
		s += " " + e.Why
	}
	return s + " (needs " + e.Needs.String() + ")"
}

func (e *MissingError) Is(target error) bool { return target == ErrMissing }

// Need is what one run needs and why each capability beyond Base is there.
type Need struct {
	Set Set
	Why map[Set]string
}

func (n *Need) add(c Set, why string) {
	n.Set |= c
	if n.Why == nil {
		n.Why = map[Set]string{}
	}
	n.Why[c] = why
}

// Needs is what a run of a tool needs on this host: Base (CAP_SYS_ADMIN
// before 5.8), what reading tracefs and lifting RLIMIT_MEMLOCK take here,
// and extra, the tool's own (SysPtrace, Syslog). pid is -p (0: none): a
// tool that reads processes then reads that one only, and needs no
// CAP_SYS_PTRACE when it may read it already. CAP_SYSLOG is not needed
// where /proc/kallsyms shows addresses without it.
func Needs(extra Set, pid int) Need {
	var n Need
	if oldKernel() {
		n.Set = SysAdmin
	} else {
		n.Set = Base
	}
	switch {
	case !tracefsMounted():
		n.add(SysAdmin, "to mount tracefs on "+tracefsDir)
	case tracefsHidden():
		n.add(DacReadSearch, "to read "+tracefsDir)
	}
	if !MemcgAccounting() && !memlockUnlimited() {
		n.add(SysResource, "to lift RLIMIT_MEMLOCK (kernels before 5.11 charge BPF memory to it)")
	}
	if extra.Has(SysPtrace) {
		switch {
		case pid == 0:
			n.add(SysPtrace, "to read other processes")
		case !procReadable(pid):
			n.add(SysPtrace, "to read process "+strconv.Itoa(pid))
		}
	}
	if extra.Has(Syslog) && !kallsymsShown() {
		n.add(Syslog, "to read kernel addresses in /proc/kallsyms")
	}
	return n
}

// Check compares need with this process's effective set.
func Check(n Need) error {
	have, err := Effective()
	if err != nil {
		return err
	}
	return check(n, have, oldKernel())
}

// check compares need with the effective set have on a kernel before 5.8
// (old) or after.
func check(n Need, have Set, old bool) error {
	if have.Has(SysAdmin) && !old {
		have |= Base // bpf_capable() and perfmon_capable() take CAP_SYS_ADMIN
	}
	missing := n.Set &^ have
	if missing == 0 {
		return nil
	}
	return &MissingError{Missing: missing, Needs: n.Set, Why: n.Why[missing]}
}

// Require is Check(Needs(extra, pid)).
func Require(extra Set, pid int) error { return Check(Needs(extra, pid)) }

const (
	tracefsDir    = "/sys/kernel/tracing"
	tracefsEvents = tracefsDir + "/events"
)

// tracefsMounted reports whether a tracefs is mounted (owl mounts one on
// tracefsDir when none is).
func tracefsMounted() bool {
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return true // cannot tell: let the mount say
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[2] == "tracefs" {
			return true
		}
	}
	return false
}

// tracefsHidden reports whether the tracepoint ids are closed to this
// process but for CAP_DAC_READ_SEARCH: tracefs is mode 0700, root's,
// unless mounted otherwise. From the mode bits, as the kernel's check
// without the capability would go: whether it has it must not change
// whether it needs it.
func tracefsHidden() bool {
	return !modeAllows(tracefsDir, 0o5) || !modeAllows(tracefsEvents, 0o5)
}

// modeAllows reports whether path's mode bits give this process's fsuid
// and groups want (0o4 read, 0o2 write, 0o1 search).
func modeAllows(path string, want uint32) bool {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return true // let the open say
	}
	switch {
	case uint32(os.Geteuid()) == st.Uid:
		return st.Mode>>6&want == want
	case inGroup(st.Gid):
		return st.Mode>>3&want == want
	}
	return st.Mode&want == want
}

func inGroup(gid uint32) bool {
	if uint32(os.Getegid()) == gid {
		return true
	}
	groups, _ := os.Getgroups()
	for _, g := range groups {
		if uint32(g) == gid {
			return true
		}
	}
	return false
}

// procReadable reports whether this process may read process pid's
// files (/proc/PID/{root,exe,maps,ns/*}) and memory without
// CAP_SYS_PTRACE: the kernel's ptrace check passes when the process has
// this process's uid and gid in all their forms and no capability this
// one lacks. From /proc/PID/status, readable by all: whether owl has
// CAP_SYS_PTRACE must not change whether it needs it.
func procReadable(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return true // gone or hidden: let the read say
	}
	have, err := Effective()
	if err != nil {
		return false
	}
	uid, gid := strconv.Itoa(os.Geteuid()), strconv.Itoa(os.Getegid())
	for _, line := range strings.Split(string(b), "\n") {
		key, val, _ := strings.Cut(line, ":")
		f := strings.Fields(val)
		switch key {
		case "Uid", "Gid":
			id := uid
			if key == "Gid" {
				id = gid
			}
			for _, v := range f {
				if v != id {
					return false
				}
			}
		case "CapPrm":
			if len(f) != 1 {
				return false
			}
			prm, err := strconv.ParseUint(f[0], 16, 64)
			if err != nil || Set(prm)&^(have&^SysPtrace) != 0 {
				return false
			}
		}
	}
	return true
}

// kallsymsShown reports whether /proc/kallsyms gives real addresses
// without CAP_SYSLOG: where kernel.kptr_restrict is 0 and
// kernel.perf_event_paranoid ≤ 1 (at kptr_restrict 2, to nobody).
func kallsymsShown() bool {
	b, err := os.ReadFile("/proc/sys/kernel/kptr_restrict")
	if err != nil {
		return false
	}
	return strings.TrimSpace(string(b)) == "0" && Paranoid() <= 1
}

// oldKernel reports a kernel before 5.8, which has no CAP_BPF or
// CAP_PERFMON (cap_last_cap below CAP_PERFMON).
func oldKernel() bool {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return err == nil && n < unix.CAP_PERFMON
}

// memlockUnlimited reports whether RLIMIT_MEMLOCK cannot be what stops a
// load: unlimited, or raisable to that without privileges.
func memlockUnlimited() bool {
	var r unix.Rlimit
	return unix.Getrlimit(unix.RLIMIT_MEMLOCK, &r) == nil && r.Max == unix.RLIM_INFINITY
}

// MemcgAccounting reports whether the kernel charges BPF maps and programs
// to the memory cgroup instead of RLIMIT_MEMLOCK: Linux 5.11 and later.
func MemcgAccounting() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	major, minor, ok := KernelVersion(unix.ByteSliceToString(u.Release[:]))
	return ok && (major > 5 || major == 5 && minor >= 11)
}

// KernelVersion parses the major and minor numbers of a kernel release
// ("6.1.0-31-amd64").
func KernelVersion(release string) (major, minor int, ok bool) {
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

// Paranoid is kernel.perf_event_paranoid, -2 when unreadable (mainline
// knows -1 to 2; Debian and Ubuntu add 3 and 4, where perf events, which
// attach tracepoints, kprobes and uprobes, may be CAP_SYS_ADMIN's alone).
func Paranoid() int {
	b, err := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
	if err != nil {
		return -2
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -2
	}
	return n
}

// If is c when cond holds, else none: for Spec.Caps, what a flag adds.
func If(cond bool, c Set) Set {
	if cond {
		return c
	}
	return 0
}
