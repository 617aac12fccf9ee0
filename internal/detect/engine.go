// Package detect evaluates windowed detection rules over owl's typed event
// streams on the host (port scans, authentication brute force, privilege
// escalation, kernel module loads, reverse shells) and turns what they
// find into OCSF Detection Findings. The detectors are pure: tool events
// in (Engine.Observe), findings out (the emit function), time from the
// events and from Tick's argument, so tests drive them with synthetic
// events; Run starts the tools they need from the registry.
package detect

import (
	"encoding/json"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/owlbpf/owl/internal/tools/capable"
	"github.com/owlbpf/owl/internal/tools/execsnoop"
	"github.com/owlbpf/owl/internal/tools/modsnoop"
	"github.com/owlbpf/owl/internal/tools/pamsnoop"
	"github.com/owlbpf/owl/internal/tools/setuids"
	"github.com/owlbpf/owl/internal/tools/tcpaccept"
	"github.com/owlbpf/owl/internal/tools/tcpreset"
)

// Tools are the tools whose events the detectors read, by rule.
var Tools = map[string][]string{
	"tcpreset":  {RulePortScan.ID},
	"tcpaccept": {RulePortScan.ID},
	"pamsnoop":  {RuleBruteForce.ID, RuleSuccessAfter.ID},
	"setuids":   {RulePrivEsc.ID},
	"capable":   {RuleCapDenials.ID},
	"modsnoop":  {RuleModuleLoad.ID},
	"execsnoop": {RuleReverseShell.ID},
}

// Engine runs every configured detector. Observe and Tick may be called
// from many goroutines (one per tool): one lock keeps the detectors
// single-threaded.
type Engine struct {
	mu    sync.Mutex
	cfg   Config
	emit  func(Finding)
	exe   func(pid uint32, comm string) string
	exes  exeCache
	stats Stats

	scan   portScan
	brute  bruteForce
	priv   privEsc
	caps   capDenials
	mods   moduleLoad
	shells reverseShell
}

// Stats count what the engine saw and did.
type Stats struct {
	Events   uint64            // events observed
	Findings map[string]uint64 // findings made (Create), by rule
	Updates  uint64            // updates and closes emitted
	// Dropped counts events not evaluated because a detector already
	// held MaxKeys groups.
	Dropped uint64
}

// Options are what an Engine needs besides its Config.
type Options struct {
	// Emit gets each finding state; called with the engine's lock held
	// (it must not call back into the engine).
	Emit func(Finding)
	// Exe returns the executable path of the process pid when its name
	// was comm ("" when unknown); nil: /proc/PID/exe, else the pid's
	// execs execsnoop reported.
	Exe func(pid uint32, comm string) string
}

// New makes an engine; cfg must have passed Check.
func New(cfg Config, opts Options) *Engine {
	e := &Engine{cfg: cfg, emit: opts.Emit, exe: opts.Exe, stats: Stats{Findings: map[string]uint64{}}}
	if e.exe == nil {
		e.exe = e.procExe
	}
	e.exes = exeCache{m: map[uint32]execs{}, max: cfg.MaxKeys}
	e.scan.init(e, &cfg.PortScan)
	e.brute.init(e, &cfg.BruteForce)
	e.priv.init(e, &cfg.PrivEsc)
	e.caps.init(e, &cfg.PrivEsc)
	e.mods.init(e, &cfg.ModuleLoad)
	e.shells.init(e, &cfg.ReverseShell)
	return e
}

// Observe gives the detectors one event of tool (a pointer to the tool's
// Event, as tool.Stream hands it over; reused after the call: what is
// kept is copied).
func (e *Engine) Observe(toolName string, ev any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stats.Events++
	src := source{tool: toolName, ev: ev}
	switch ev := ev.(type) {
	case *tcpreset.Event:
		e.scan.reset(ev, src)
	case *tcpaccept.Event:
		e.scan.accept(ev, src)
	case *pamsnoop.Event:
		e.brute.pam(ev, src)
	case *setuids.Event:
		e.priv.setuid(setIDOf(ev), src)
	case *capable.Event:
		e.caps.check(ev, src)
	case *modsnoop.Event:
		e.mods.load(ev, src)
	case *execsnoop.Event:
		if ev.Ret == 0 {
			e.exes.put(ev.PID, ev.PPID, string(ev.Filename))
		}
		e.shells.exec(execOf(ev), src)
	}
}

// Tick sends the updates that are due and closes the findings of groups
// that went quiet; Run calls it every second.
func (e *Engine) Tick(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.priv.resolve(now)
	for _, b := range e.books() {
		b.tick(now)
	}
}

// Stats returns a copy of the counts.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.Findings = map[string]uint64{}
	for k, v := range e.stats.Findings {
		s.Findings[k] = v
	}
	return s
}

// source is an event with what evidence needs of it.
type source struct {
	tool string
	ev   any
}

// evidence encodes the event now: it is reused after Observe returns.
func (s source) evidence(t time.Time) func() Evidence {
	return func() Evidence {
		js, err := json.Marshal(s.ev)
		if err != nil {
			js, _ = json.Marshal(err.Error())
		}
		return Evidence{Tool: s.tool, Time: t, Event: js}
	}
}

// actor describes a task's process; comm is its name at the event, which
// tells which of the images the pid ran was the one (a process may exec
// again right after the event: sudo runs its command in its own pid).
func (e *Engine) actor(pid, uid uint32, comm string) *Actor {
	return &Actor{PID: pid, UID: uid, Comm: comm, Exe: e.exe(pid, comm)}
}

// procExe finds the image pid ran when its name was comm: /proc/PID/exe,
// the pid's execs that execsnoop reported, else the same for its parent
// (a child forked by sudo calls setresuid before it execs the command:
// its own exec record is the command's).
func (e *Engine) procExe(pid uint32, comm string) string {
	if exe := e.imageOf(pid, comm); exe != "" {
		return exe
	}
	ppid := e.exes.m[pid].ppid
	if ppid == 0 {
		ppid = procPPID(pid)
	}
	if ppid == 0 {
		return ""
	}
	return e.imageOf(ppid, comm)
}

func (e *Engine) imageOf(pid uint32, comm string) string {
	if p, err := os.Readlink("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/exe"); err == nil && named(p, comm) {
		return p
	}
	list := e.exes.m[pid].execs
	for i := len(list) - 1; i >= 0; i-- {
		if named(list[i], comm) {
			return list[i]
		}
	}
	return ""
}

// procPPID reads a live process's parent from /proc/PID/stat; 0 if gone.
func procPPID(pid uint32) uint32 {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...: comm may hold anything, so from the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseUint(f[1], 10, 32)
	return uint32(n)
}

// named reports whether comm (at most 15 bytes) names the file exe.
func named(exe, comm string) bool {
	base := path.Base(exe)
	return base == comm || (len(comm) == 15 && strings.HasPrefix(base, comm))
}

// exeCache keeps each pid's parent and last execs, bounded: when full it
// starts over (pids of the oldest execs are the likeliest gone).
type exeCache struct {
	m   map[uint32]execs
	max int
}

type execs struct {
	ppid  uint32
	execs []string
}

// execsPerPid bounds the images remembered per pid.
const execsPerPid = 4

func (c *exeCache) put(pid, ppid uint32, exe string) {
	if len(c.m) >= c.max {
		clear(c.m)
	}
	x := c.m[pid]
	x.ppid = ppid
	x.execs = append(x.execs, exe)
	if len(x.execs) > execsPerPid {
		x.execs = x.execs[len(x.execs)-execsPerPid:]
	}
	c.m[pid] = x
}

// book is the groups of one rule and the life of their findings: made
// once the rule trips, updated at most every UpdateEvery while they
// change, closed after CloseAfter without an event.
type book struct {
	e          *Engine
	rule       Rule
	closeAfter time.Duration
	groups     map[string]*group
	// msg, when set, says what a finding is from its current counts.
	msg func(f *Finding) string
	// keep is how long a quiet group's counts are kept: at least the
	// window, however soon its finding closes.
	keep time.Duration
	// windowed findings are always closed (the last state says the
	// activity stopped); a single-event rule's only when it changed.
	windowed bool
}

func (b *book) init(e *Engine, r Rule, closeAfter time.Duration) {
	b.e, b.rule, b.closeAfter, b.keep, b.groups = e, r, closeAfter, closeAfter, map[string]*group{}
}

// get returns key's group, made if new; nil when the book is full (the
// event is counted as dropped).
func (b *book) get(key string, now time.Time) *group {
	g := b.groups[key]
	if g == nil {
		if len(b.groups) >= b.e.cfg.MaxKeys {
			b.e.stats.Dropped++
			return nil
		}
		g = &group{key: key}
		b.groups[key] = g
	}
	g.last = now
	return g
}

// trip makes g's finding from f (filled by the rule) and sends it.
func (b *book) trip(g *group, f *Finding, now time.Time) {
	f.Rule, f.Activity = b.rule, Create
	f.UID = findingUID(b.rule, g.key, f.First)
	f.Evidence = append(g.evidence, f.Evidence...)
	g.evidence = nil
	g.f = f
	b.e.stats.Findings[b.rule.ID]++
	b.send(g, now)
}

// changed marks g's finding changed and sends an update when one is due.
func (b *book) changed(g *group, now time.Time) {
	g.dirty = true
	if now.Sub(g.emitted) >= b.e.cfg.UpdateEvery {
		g.f.Activity = Update
		b.e.stats.Updates++
		b.send(g, now)
	}
}

func (b *book) send(g *group, now time.Time) {
	g.f.Time = now
	if b.msg != nil {
		g.f.Message = b.msg(g.f)
	}
	g.emitted, g.dirty = now, false
	if b.e.emit != nil {
		b.e.emit(g.f.clone())
	}
}

// tick sends due updates, closes quiet findings and forgets quiet groups.
func (b *book) tick(now time.Time) {
	for key, g := range b.groups {
		quiet := now.Sub(g.last) >= b.closeAfter
		if g.f != nil && ((quiet && (g.dirty || b.windowed)) || (g.dirty && now.Sub(g.emitted) >= b.e.cfg.UpdateEvery)) {
			g.f.Activity = Update
			if quiet {
				g.f.Activity = Close
			}
			b.e.stats.Updates++
			b.send(g, now)
		}
		if quiet && now.Sub(g.last) >= b.keep {
			delete(b.groups, key)
		} else if quiet && g.f != nil {
			// Closed; a later event starts a new finding from the counts.
			g.f, g.evidence = nil, nil
		}
	}
}

// remote is an address and port as a finding names them.
func remote(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a.Unmap(), port) }

// Rules are every rule's id (agent.Detector).
func (e *Engine) Rules() []string {
	var ids []string
	for _, r := range Rules {
		ids = append(ids, r.ID)
	}
	return ids
}
