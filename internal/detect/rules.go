package detect

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/tools/capable"
	"github.com/owlbpf/owl/internal/tools/modsnoop"
	"github.com/owlbpf/owl/internal/tools/pamsnoop"
	"github.com/owlbpf/owl/internal/tools/setuids"
	"github.com/owlbpf/owl/internal/tools/tcpaccept"
	"github.com/owlbpf/owl/internal/tools/tcpreset"
)

// portSample is how many ports a port-scan finding lists.
const portSample = 20

// oneShotClose closes the findings of single-event rules (privilege
// escalation, module load, reverse shell) after this long without another
// event of the same process: repeats within it update the finding.
const oneShotClose = time.Minute

// portScan: per remote address, distinct local ports probed within the
// window.
type portScan struct {
	book
	cfg    *PortScan
	ignore []netip.Prefix
}

func (d *portScan) init(e *Engine, cfg *PortScan) {
	d.book.init(e, RulePortScan, cfg.CloseAfter)
	d.windowed, d.keep = true, max(cfg.CloseAfter, cfg.Window)
	d.cfg = cfg
	d.ignore, _ = parseNets(cfg.Ignore)
	d.msg = func(f *Finding) string {
		return fmt.Sprintf("port scan from %s: %d ports, %d probes in %s", f.Remote.Addr(), f.PortCount, f.Count, span(f))
	}
}

// span is how long a finding's events went on.
func span(f *Finding) time.Duration { return f.Last.Sub(f.First).Round(time.Millisecond) }

// reset counts resets sent for want of a socket: a probe of a closed port.
func (d *portScan) reset(ev *tcpreset.Event, src source) {
	// No socket: no state, and NO_SOCKET where the kernel names reasons.
	if ev.State != 0 || (ev.Reason != "" && ev.Reason != "NO_SOCKET") {
		return
	}
	d.port(ev.Raddr, ev.Lport, ev.Time.Time, src)
}

// accept counts connections accepted: a probe of an open port (nmap -sT).
func (d *portScan) accept(ev *tcpaccept.Event, src source) {
	d.port(ev.Raddr, ev.Lport, ev.Time.Time, src)
}

func (d *portScan) port(from netip.Addr, port uint16, t time.Time, src source) {
	from = from.Unmap()
	if d.cfg.Disabled || !from.IsValid() || inNets(d.ignore, from) {
		return
	}
	g := d.get(from.String(), t)
	if g == nil {
		return
	}
	g.count++
	if f := g.f; f != nil {
		f.Count, f.Last = g.count, t
		if _, seen := g.all[port]; seen {
			return
		}
		g.all[port] = struct{}{}
		f.PortCount = len(g.all)
		if len(f.Ports) < portSample {
			f.Ports = append(f.Ports, port)
			slices.Sort(f.Ports)
		}
		g.addEvidence(d.e.cfg.Evidence, src.evidence(t))
		d.changed(g, t)
		return
	}
	if g.ports == nil {
		g.ports = map[uint16]time.Time{}
	}
	if _, seen := g.ports[port]; !seen {
		g.addEvidence(d.e.cfg.Evidence, src.evidence(t))
	}
	g.ports[port] = t
	if len(g.ports) < d.cfg.Ports {
		return
	}
	first := t
	for p, at := range g.ports {
		if t.Sub(at) > d.cfg.Window {
			delete(g.ports, p)
		} else if at.Before(first) {
			first = at
		}
	}
	if len(g.ports) < d.cfg.Ports {
		return
	}
	g.all = map[uint16]struct{}{}
	var ports []uint16
	for p := range g.ports {
		g.all[p] = struct{}{}
		ports = append(ports, p)
	}
	g.ports = nil
	slices.Sort(ports)
	f := &Finding{First: first, Last: t, Count: g.count, Remote: remote(from, 0), PortCount: len(ports),
		Ports: ports[:min(len(ports), portSample)]}
	d.trip(g, f, t)
}

// bruteForce: PAM authentication failures per (remote host, user,
// service), and a success that follows many of them.
type bruteForce struct {
	book
	succ   book
	cfg    *BruteForce
	ignore []netip.Prefix
}

func (d *bruteForce) init(e *Engine, cfg *BruteForce) {
	d.book.init(e, RuleBruteForce, cfg.CloseAfter)
	d.windowed, d.keep = true, max(cfg.CloseAfter, cfg.Window)
	d.succ.init(e, RuleSuccessAfter, oneShotClose)
	d.cfg = cfg
	d.msg = func(f *Finding) string {
		return fmt.Sprintf("%d %s authentication failures for %s from %s in %s", f.Count, f.Service, f.User, f.remoteHost(), span(f))
	}
	// Names are compared as they are; addresses and networks parse.
	for _, s := range cfg.Ignore {
		if ps, err := parseNets([]string{s}); err == nil {
			d.ignore = append(d.ignore, ps...)
		}
	}
}

func (d *bruteForce) ignored(host string) bool {
	if a, err := netip.ParseAddr(host); err == nil {
		return inNets(d.ignore, a)
	}
	return slices.Contains(d.cfg.Ignore, host)
}

func (d *bruteForce) pam(ev *pamsnoop.Event, src source) {
	if d.cfg.Disabled || ev.Event != "pam_authenticate" || d.ignored(string(ev.RHost)) {
		return
	}
	t := ev.Time.Time
	key := string(ev.RHost) + "\x00" + string(ev.User) + "\x00" + string(ev.Service)
	g := d.get(key, t)
	if g == nil {
		return
	}
	if ev.Result == "PAM_SUCCESS" {
		if g.streak >= d.cfg.SuccessAfter && t.Sub(g.lastFail) <= d.cfg.SuccessWithin {
			s := d.succ.get(key, t)
			if s != nil && s.f == nil {
				f := d.finding(ev, g.streak, g.first, t)
				f.Message = fmt.Sprintf("%s login of %s from %s succeeded after %d failures", ev.Service, ev.User, f.remoteHost(), g.streak)
				s.evidence = slices.Clone(g.f.evidenceOr(g.evidence))
				if len(s.evidence) >= d.e.cfg.Evidence {
					s.evidence = s.evidence[:d.e.cfg.Evidence-1]
				}
				s.evidence = append(s.evidence, src.evidence(t)())
				d.succ.trip(s, f, t)
			}
		}
		g.streak = 0
		return
	}
	// A run of failures ends after a window without one.
	if t.Sub(g.lastFail) > d.cfg.Window {
		g.streak, g.first = 0, t
	}
	g.streak++
	g.lastFail = t
	g.addEvidence(d.e.cfg.Evidence, src.evidence(t))
	if f := g.f; f != nil {
		f.Count, f.Last = g.streak, t
		d.changed(g, t)
		return
	}
	// The times of the last n failures: the rule trips when the oldest
	// is within the window.
	n := d.cfg.Failures
	if v, ok := d.cfg.Services[string(ev.Service)]; ok {
		n = v
	}
	g.times = append(g.times, t)
	if len(g.times) > n {
		g.times = g.times[len(g.times)-n:]
	}
	if len(g.times) < n || t.Sub(g.times[0]) > d.cfg.Window {
		return
	}
	f := d.finding(ev, g.streak, g.first, t)
	g.times = nil
	d.trip(g, f, t)
}

func (d *bruteForce) finding(ev *pamsnoop.Event, count int, first, t time.Time) *Finding {
	f := &Finding{First: first, Last: t, Count: count, User: string(ev.User), Service: string(ev.Service),
		Actor: d.e.actor(ev.PID, ev.UID, ev.Comm.String())}
	if a, err := netip.ParseAddr(string(ev.RHost)); err == nil {
		f.Remote = remote(a, 0)
	} else {
		f.RemoteHost = string(ev.RHost)
	}
	return f
}

func (f *Finding) evidenceOr(ev []Evidence) []Evidence {
	if f != nil {
		return f.Evidence
	}
	return ev
}

// remoteHost names the remote end: an address, a host name, or this host
// (a local login).
func (f *Finding) remoteHost() string {
	switch {
	case f.Remote.IsValid():
		return f.Remote.Addr().String()
	case f.RemoteHost != "":
		return f.RemoteHost
	}
	return "this host"
}

// setID is a setuid-family call as the privilege-escalation rule sees it.
type setID struct {
	Task    event.Task
	Syscall string
	// ToRoot: the call asked for uid or euid 0 (setuid, setreuid,
	// setresuid and their ia32 forms).
	ToRoot bool
	Ret    int64
}

func setIDOf(ev *setuids.Event) setID {
	s := setID{Task: ev.Task, Syscall: ev.Syscall, Ret: ev.Ret}
	if strings.HasPrefix(ev.Syscall, "setuid") || strings.HasPrefix(ev.Syscall, "setreuid") || strings.HasPrefix(ev.Syscall, "setresuid") {
		for _, n := range []string{"uid", "ruid", "euid"} {
			if v, ok := ev.Args.Get(n); ok && v == 0 {
				s.ToRoot = true
			}
		}
	}
	return s
}

// privEsc: a non-root process that made itself root through the setuid
// family, its executable not in the allowlist. Calls wait for the next
// tick (resolveAfter at least) before they are judged: the exec that
// names the executable comes from execsnoop's ring, which may be read
// after setuids'.
type privEsc struct {
	book
	cfg     *PrivEsc
	pending []pendingSetID
}

type pendingSetID struct {
	s   setID
	src Evidence
}

// resolveAfter is how long a setuid call waits for the exec events
// before it.
const resolveAfter = 200 * time.Millisecond

func (d *privEsc) init(e *Engine, cfg *PrivEsc) {
	d.book.init(e, RulePrivEsc, oneShotClose)
	d.cfg = cfg
}

func (d *privEsc) setuid(s setID, src source) {
	if d.cfg.Disabled || s.Task.UID == 0 || !s.ToRoot || s.Ret != 0 {
		return
	}
	if len(d.pending) >= d.e.cfg.MaxKeys {
		d.e.stats.Dropped++
		return
	}
	t := s.Task.Time.Time
	d.pending = append(d.pending, pendingSetID{s, src.evidence(t)()})
}

// resolve judges the calls made before now - resolveAfter.
func (d *privEsc) resolve(now time.Time) {
	keep := d.pending[:0]
	for _, p := range d.pending {
		if now.Sub(p.s.Task.Time.Time) < resolveAfter {
			keep = append(keep, p)
			continue
		}
		d.judge(p.s, p.src)
	}
	clear(d.pending[len(keep):])
	d.pending = keep
}

func (d *privEsc) judge(s setID, ev Evidence) {
	actor := d.e.actor(s.Task.PID, s.Task.UID, s.Task.Comm.String())
	if actor.Exe != "" && matchAny(d.cfg.Allow, actor.Exe) {
		return
	}
	t := s.Task.Time.Time
	g := d.get(fmt.Sprint(s.Task.PID, "/", actor.Exe), t)
	if g == nil {
		return
	}
	g.addEvidence(d.e.cfg.Evidence, func() Evidence { return ev })
	if f := g.f; f != nil {
		f.Count++
		f.Last = t
		d.changed(g, t)
		return
	}
	exe := actor.Exe
	if exe == "" {
		exe = "(executable unknown)"
	}
	f := &Finding{First: t, Last: t, Count: 1, Actor: actor,
		Message: fmt.Sprintf("pid %d %s (%s) of uid %d gained uid 0 through %s", s.Task.PID, exe, actor.Comm, s.Task.UID, s.Syscall)}
	d.trip(g, f, t)
}

// capDenials: per process, denials of the configured capabilities within
// the window.
type capDenials struct {
	book
	cfg *PrivEsc
}

func (d *capDenials) init(e *Engine, cfg *PrivEsc) {
	d.book.init(e, RuleCapDenials, cfg.CloseAfter)
	d.windowed = true
	d.cfg = cfg
	d.msg = func(f *Finding) string {
		return fmt.Sprintf("pid %d (%s) of uid %d was denied %s %d times in %s", f.Actor.PID, f.Actor.Comm, f.Actor.UID,
			f.Capability, f.Count, span(f))
	}
}

func (d *capDenials) check(ev *capable.Event, src source) {
	n, ok := d.cfg.Caps[ev.CapName]
	if d.cfg.Disabled || ev.Verdict != "deny" || !ok {
		return
	}
	t := ev.Time.Time
	g := d.get(fmt.Sprint(ev.PID, "/", ev.CapName), t)
	if g == nil {
		return
	}
	g.addEvidence(d.e.cfg.Evidence, src.evidence(t))
	if f := g.f; f != nil {
		f.Count++
		f.Last = t
		d.changed(g, t)
		return
	}
	g.times = append(g.times, t)
	if len(g.times) > n {
		g.times = g.times[len(g.times)-n:]
	}
	if len(g.times) < n || t.Sub(g.times[0]) > d.cfg.Window {
		return
	}
	f := &Finding{First: g.times[0], Last: t, Count: len(g.times), Actor: d.e.actor(ev.PID, ev.UID, ev.Comm.String()),
		Capability: ev.CapName}
	g.times = nil
	d.trip(g, f, t)
}

// moduleLoad: every module load not allowlisted.
type moduleLoad struct {
	book
	cfg *ModuleLoad
}

func (d *moduleLoad) init(e *Engine, cfg *ModuleLoad) {
	d.book.init(e, RuleModuleLoad, oneShotClose)
	d.cfg = cfg
}

func (d *moduleLoad) load(ev *modsnoop.Event, src source) {
	name := string(ev.Module)
	if name == "" && ev.File != "" {
		name = strings.TrimSuffix(path.Base(string(ev.File)), ".ko")
	}
	if d.cfg.Disabled || (name != "" && matchAny(d.cfg.Allow, name)) {
		return
	}
	t := ev.Time.Time
	g := d.get(fmt.Sprint(ev.PID, "/", name), t)
	if g == nil {
		return
	}
	g.addEvidence(d.e.cfg.Evidence, src.evidence(t))
	if f := g.f; f != nil {
		f.Count++
		f.Last = t
		d.changed(g, t)
		return
	}
	what := name
	if what == "" {
		what = "(a module from memory, init_module)"
	}
	f := &Finding{First: t, Last: t, Count: 1, Module: name, Actor: d.e.actor(ev.PID, ev.UID, ev.Comm.String()),
		Message: fmt.Sprintf("kernel module %s loaded by pid %d (%s)", what, ev.PID, ev.Comm)}
	d.trip(g, f, t)
}

// Exec is an exec as the reverse-shell rule sees it.
type Exec struct {
	Task     event.Task
	Filename string
	// Stdio are the sockets among fds 0, 1 and 2.
	Stdio []StdioSocket
}

// StdioSocket is a socket found at fd 0, 1 or 2 of an exec'd process.
type StdioSocket struct {
	FD       uint8
	Protocol string // tcp or udp
	Laddr    netip.Addr
	Lport    uint16
	Raddr    netip.Addr
	Rport    uint16
}

// reverseShell: a shell or interpreter exec'd with a TCP or UDP socket as
// its standard input, output or error.
type reverseShell struct {
	book
	cfg    *ReverseShell
	ignore []netip.Prefix
}

func (d *reverseShell) init(e *Engine, cfg *ReverseShell) {
	d.book.init(e, RuleReverseShell, oneShotClose)
	d.cfg = cfg
	d.ignore, _ = parseNets(cfg.Ignore)
}

func (d *reverseShell) exec(x Exec, src source) {
	if d.cfg.Disabled || len(x.Stdio) == 0 || !matchAny(d.cfg.Shells, path.Base(x.Filename)) {
		return
	}
	var sock *StdioSocket
	for i := range x.Stdio {
		s := &x.Stdio[i]
		if s.FD <= 2 && (s.Protocol == "tcp" || s.Protocol == "udp") && !inNets(d.ignore, s.Raddr) {
			sock = s
			break
		}
	}
	if sock == nil {
		return
	}
	t := x.Task.Time.Time
	// One finding per connection: the shell's own children (bash -i
	// runs its rc files' commands) inherit the socket and update it.
	g := d.get(remote(sock.Raddr, sock.Rport).String()+"/"+sock.Laddr.String(), t)
	if g == nil {
		return
	}
	g.addEvidence(d.e.cfg.Evidence, src.evidence(t))
	if f := g.f; f != nil {
		f.Count++
		f.Last = t
		d.changed(g, t)
		return
	}
	r := remote(sock.Raddr, sock.Rport)
	actor := &Actor{PID: x.Task.PID, UID: x.Task.UID, Comm: x.Task.Comm.String(), Exe: x.Filename}
	f := &Finding{First: t, Last: t, Count: 1, Actor: actor, Remote: r,
		Message: fmt.Sprintf("%s (pid %d, uid %d) started with fd %d a %s socket to %s", x.Filename, x.Task.PID, x.Task.UID,
			sock.FD, sock.Protocol, r)}
	d.trip(g, f, t)
}
