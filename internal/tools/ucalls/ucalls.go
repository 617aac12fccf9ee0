// Package ucalls counts method calls of a Java, Python or Ruby process
// through its runtime's USDT probes, with -L their total and average
// time: BCC's ucalls.
package ucalls

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/langs"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/usdt"
)

// Roles of a probe location (byte 0 of its cookie; ucalls.bpf.c).
const (
	roleEntry  = 1
	roleReturn = 2
)

// Count is one method's calls: since the start, or of the last interval.
type Count struct {
	Method langs.Text `json:"method"` // class.method (file.function for Python), as BCC prints it
	Class  langs.Text `json:"class"`  // class (Python: file name)
	Name   langs.Text `json:"name"`   // method (function) name
	// C is true for Ruby's C methods (cmethod probes).
	C     bool   `json:"c,omitempty"`
	Calls uint64 `json:"calls"` // returns seen
	// Timed is how many of Calls were paired with their entry (-L);
	// TotalNs and AvgNs are their time.
	Timed   uint64 `json:"timed,omitempty"`
	TotalNs uint64 `json:"total_ns,omitempty"`
	AvgNs   uint64 `json:"avg_ns,omitempty"`
}

// Config is what to count: the probe locations of one process's runtime
// (from Resolve) and whether to time calls.
type Config struct {
	Lang    langs.Lang
	Probes  []usdt.Probe
	Cookies []uint64
	Latency bool
	// MaxMethods sizes the table of counts; methods beyond it are
	// counted as lost (table full).
	MaxMethods int
	pid        int
	each       bool
}

// DefaultMaxMethods is the default size of the table of counts.
const DefaultMaxMethods = 16384

// Resolve finds the method probes of lang in process pid. A JVM started
// without the flag that makes its method probes fire is an error
// wrapping langs.ErrJavaFlag.
func Resolve(lang langs.Lang, pid int, latency bool) (Config, error) {
	m, ok := langs.Methods(lang)
	if !ok {
		return Config{}, fmt.Errorf("ucalls: no method probes for %s", lang)
	}
	if lang == langs.Java && !langs.JavaMethodProbes(pid) {
		return Config{}, fmt.Errorf("process %d: %w", pid, langs.ErrJavaFlag)
	}
	var want []langs.Want
	add := func(names []string, role uint8) {
		for i, n := range names {
			// Ruby's second pair is its C methods' (kind 1).
			want = append(want, langs.Want{Name: n, Optional: i > 0,
				Cookie: langs.Cookie{Role: role, Kind: uint8(i), Strs: [2]langs.Str{m.Class, m.Method}}})
		}
	}
	add(m.Return, roleReturn)
	if latency {
		add(m.Entry, roleEntry)
	}
	probes, cookies, err := langs.Probes(lang, pid, want)
	if err != nil {
		return Config{}, err
	}
	return Config{Lang: lang, Probes: probes, Cookies: cookies, Latency: latency, MaxMethods: DefaultMaxMethods, pid: pid}, nil
}

const hookName = "USDT method return (and entry with -L) probes of the runtime: uprobes, semaphores counted by the kernel"

func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: hookName}
	as, err := usdt.Attachments(ucallsProgUcallsHit, cfg.Probes, cfg.pid, cfg.each)
	if err != nil {
		h.Check = func() error { return err }
	}
	h.Attachments = as
	return []probe.Hook{h}
}

// ErrNoProcess is the error of a Config without probes: ucalls needs -p.
var ErrNoProcess = fmt.Errorf("ucalls: no process given (-p PID) (%w)", tool.ErrNeedsArgs)

var spec = tool.Spec[Config, Count]{
	Name:    "ucalls",
	Group:   "language",
	Summary: "Count method calls of a Java, Python or Ruby process, with -L their time",
	Long: `Count the method calls of process -p PID, a Java, Python or Ruby program, with
its runtime's USDT probes, and print the counts on exit and every INTERVAL
seconds (then of that interval), as BCC's ucalls: METHOD is CLASS.METHOD
(Python: FILE.FUNCTION; Java classes as the JVM names them, java/lang/String).
The language comes from -l, else from the process's executable and the
runtime libraries it maps (libjvm.so, libpython, libruby).

A call is counted when it returns, at the method__return (function__return)
probe: Debian's python3.11 fires function__entry only for generators and
coroutines (cpython#98894, fixed upstream in 2025) but function__return for
every call. With -L, the entry's time is kept on a per-thread stack and each
return paired with its entry gives the call's time (TIME is the total, AVG
the average, nested calls included); returns whose entry was not seen are
counted but not timed, and owl says how many. On python3.11 -L times calls
only when the program has a profile hook (sys.setprofile(lambda *a: None)).

Java: the JVM's method probes fire only when it was started with
-XX:+ExtendedDTraceProbes (or -XX:+DTraceMethodProbes), which made a
call-heavy loop 25-70 times slower here even with nothing attached.
ucalls looks for the flag (command line, JAVA_TOOL_OPTIONS,
JDK_JAVA_OPTIONS, _JAVA_OPTIONS, the JVM's hsperfdata) and without it says
so and exits with status 2, instead of counting nothing.

Ruby: C methods (cmethod__entry/return: Integer#+, Array#each...) are
always counted. Ruby 3.1 fires method__entry/return for methods defined in
Ruby only from instructions it switches on while a TracePoint for :call
and :return is enabled (its stock build has no other per-call hook owl can
reach: the VM's call functions are static and stripped), so Ruby-defined
methods are counted while the program has one, e.g. when started, in
app.rb's folder, as
  ruby -e 'TracePoint.new(:call, :return) {}.enable' -e 'load "./app.rb"'
(an enabled TracePoint stays on, garbage collections or not, until the
program disables it). owl says so when it saw C methods but no
Ruby-defined one.

-T N prints the N most called (most time with -L) methods only; -m prints
times in milliseconds. With -o json each report is one object per method.`,
	Task:    true,
	Load:    loadUcalls,
	Caps:    tool.ReadsPID[Config], // the -p process: its executable, maps, root
	Default: func() Config { return Config{} },
	Hooks:   hooks,
	Configure: func(cfg Config, cs *ebpf.CollectionSpec) error {
		if len(cfg.Probes) == 0 {
			return ErrNoProcess
		}
		if err := usdt.Configure(cs, cfg.Probes, cfg.Cookies); err != nil {
			return err
		}
		var m ucallsMapSpecs
		if err := cs.Assign(&m); err != nil {
			return err
		}
		m.Counts.MaxEntries = uint32(max(1, cfg.MaxMethods))
		var v ucallsVariableSpecs
		if err := cs.Assign(&v); err != nil {
			return err
		}
		if err := v.Latency.Set(cfg.Latency); err != nil {
			return err
		}
		if cfg.each {
			return nil
		}
		return probe.PrepareUprobes(cs, ucallsProgUcallsHit)
	},
	Stream: func(Config) bool { return false },
	Decoder: func(Config, *probe.Session) (func([]byte, *Count) bool, error) {
		return func([]byte, *Count) bool { return false }, nil
	},
}

// Tool is ucalls' registry entry.
var Tool = tool.Register(&spec, command)

// Source is a running ucalls.
type Source struct {
	*tool.Source[Count]
	cfg Config
}

// Open loads ucalls and attaches it to the probes of cfg, in opts' -p
// process.
func Open(cfg Config, opts tool.Options) (*Source, error) {
	if len(cfg.Probes) == 0 {
		return nil, ErrNoProcess
	}
	if cfg.MaxMethods <= 0 {
		return nil, errors.New("ucalls: MaxMethods must be positive")
	}
	cfg.pid = opts.Task.PID
	src, err := tool.Open(&spec, cfg, opts)
	if err != nil {
		return nil, err
	}
	return &Source{Source: src, cfg: cfg}, nil
}

// Counts returns every method's counts since tracing began. They are
// never reset, so no call is lost between a read and a reset; intervals
// are differences of two reads.
func (s *Source) Counts(time.Time) ([]Count, error) {
	var m ucallsMaps
	if err := s.Assign(&m); err != nil {
		return nil, err
	}
	var out []Count
	err := probe.Each(m.Counts, func(k *ucallsMkey, v *ucallsMinfo) {
		c := Count{
			Class: langs.Text(langs.Int8String(k.Cls[:])), Name: langs.Text(langs.Int8String(k.Method[:])), C: k.Kind == 1,
			Calls: v.Calls, Timed: v.Timed, TotalNs: v.Ns,
		}
		c.Method = c.Class + "." + c.Name
		out = append(out, c)
	})
	return out, err
}
