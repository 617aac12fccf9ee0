// Package agent runs many of owl's tools in one process and feeds their
// events, as records with host, container and OCSF parts, to the sinks
// fleets already run: JSON lines, OTLP logs, Prometheus metrics. The tools
// share one kernel-BTF cache (probe.Runtime), one memory budget for rings
// and the export queue, and one stats registry.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/owlbpf/owl/internal/agent/container"
	"github.com/owlbpf/owl/internal/agent/sinks"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// Options are what the command layer gives the agent besides its Config.
type Options struct {
	// Find returns the registry's tool of a name, or nil.
	Find func(name string) tool.Tool
	Log  *slog.Logger
	// Prefer forces hook kinds (OWL_HOOKS), as for every tool.
	Prefer  string
	Version string
	// Proc is where /proc is ("/proc").
	Proc string
	// Detector, when set, sees every event beside the sinks (detect.go).
	Detector Detector
}

// Agent is a running agent.
type Agent struct {
	opts  Options
	host  sinks.Host
	rt    *probe.Runtime
	res   *container.Resolver
	log   *slog.Logger
	start time.Time

	json    *sinks.JSON
	otlp    *sinks.OTLP
	metrics *sinks.Metrics

	mu      sync.Mutex
	cfg     Config
	running map[string]*running // by tool name
	failed  map[string]error    // tools that could not start
	retired map[string]probe.Stats
	ready   atomic.Bool

	found              detections
	tickStop, tickDone chan struct{}
}

type running struct {
	cfg    ToolConfig
	stream tool.Stream
	cancel context.CancelFunc
	done   chan error
}

// New sets up the sinks of cfg (checked by the caller); Start starts the
// tools.
func New(ctx context.Context, cfg Config, opts Options) (*Agent, error) {
	if opts.Proc == "" {
		opts.Proc = "/proc"
	}
	a := &Agent{opts: opts, cfg: cfg, log: opts.Log, start: time.Now(),
		host: sinks.ReadHost(cfg.HostName, cfg.NodeName),
		rt:   probe.NewRuntime(), res: container.NewResolver(opts.Proc),
		running: map[string]*running{}, failed: map[string]error{}, retired: map[string]probe.Stats{}}
	a.initDetections()
	var err error
	if cfg.JSON != "" {
		if a.json, err = sinks.NewJSON(cfg.JSON, cfg.JSONMaxSizeMB, cfg.JSONMaxBackups); err != nil {
			return nil, err
		}
	}
	if cfg.OTLPEndpoint != "" {
		a.otlp, err = sinks.NewOTLP(ctx, sinks.OTLPConfig{Endpoint: cfg.OTLPEndpoint, Protocol: cfg.OTLPProtocol,
			Queue: cfg.queueRecords(), Retry: cfg.OTLPRetry, Version: opts.Version}, &a.host, a.log)
		if err != nil {
			a.closeSinks(ctx)
			return nil, err
		}
	}
	if cfg.MetricsAddress != "" {
		if a.metrics, err = sinks.NewMetrics(cfg.MetricsAddress, a, a.log); err != nil {
			a.closeSinks(ctx)
			return nil, err
		}
	}
	return a, nil
}

// recordBytes is what one queued OTLP record is reckoned to take (the
// SDK's record, its attributes and the event body as a map).
const recordBytes = 2048

// queueRecords is the OTLP queue's share of the budget: half.
func (c *Config) queueRecords() int { return c.MemoryBudgetMB << 20 / 2 / recordBytes }

// ringBytes is each of n tools' ring: an equal share of the other half,
// halved because a BPF ring's data pages are mapped twice in the reader
// (so that a record never wraps) and count twice in its RSS, rounded down
// to a power of two, at least 64 KiB.
func (c *Config) ringBytes(n int) uint32 {
	share := uint64(c.MemoryBudgetMB) << 20 / 2 / uint64(max(n, 1)) / 2
	ring := uint32(1) << (bits.Len64(share) - 1)
	return max(ring, 64<<10)
}

// MetricsAddr is the address /metrics is served on, "" when none.
func (a *Agent) MetricsAddr() string {
	if a.metrics == nil {
		return ""
	}
	return a.metrics.Addr()
}

// Host is what the records say of this host.
func (a *Agent) Host() sinks.Host { return a.host }

// Start starts the configured tools, each in its own goroutine; a tool
// that cannot start is logged and reported (metrics, /readyz), and the
// others run. It returns once every tool has started or failed.
func (a *Agent) Start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.startDetector()
	a.apply(a.cfg.ToolList())
	a.ready.Store(true)
	var names []string
	for n := range a.running {
		names = append(names, n)
	}
	slices.Sort(names)
	a.log.Info("ready", "tools", names, "failed", len(a.failed), "host", a.host.Name,
		"startup", time.Since(a.start).Round(time.Microsecond))
}

// Reload applies a new config's tools: tools whose config is the same keep
// running, untouched (no event of theirs is lost); removed ones are
// stopped after their ring is drained; new ones start. Sink settings are
// not reloaded (a restart applies them): a change is logged.
func (a *Agent) Reload(cfg Config) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cfg.JSON != a.cfg.JSON || cfg.OTLPEndpoint != a.cfg.OTLPEndpoint || cfg.OTLPProtocol != a.cfg.OTLPProtocol ||
		cfg.MetricsAddress != a.cfg.MetricsAddress {
		a.log.Warn("reload: sink settings changed; they apply at the next start")
	}
	tools := cfg.ToolList()
	a.cfg.Tools = cfg.Tools
	a.apply(tools)
	a.log.Info("reloaded", "tools", len(a.running), "failed", len(a.failed))
}

// apply makes the running tools those of want. Called with a.mu held.
func (a *Agent) apply(want []ToolConfig) {
	keep := map[string]bool{}
	for _, t := range want {
		if r, ok := a.running[t.Name]; ok && r.cfg.key() == t.key() {
			keep[t.Name] = true
		}
	}
	for name := range a.running {
		if !keep[name] {
			a.stop(name)
		}
	}
	clear(a.failed)
	ring := a.cfg.ringBytes(len(want))
	type result struct {
		cfg  ToolConfig
		s    tool.Stream
		err  error
		took time.Duration
	}
	results := make(chan result)
	n := 0
	for _, t := range want {
		if keep[t.Name] {
			continue
		}
		n++
		// Tools load and attach in parallel: start-up is the slowest
		// tool's, not the sum.
		go func() {
			start := time.Now()
			s, err := a.open(t, ring)
			results <- result{t, s, err, time.Since(start)}
		}()
	}
	for range n {
		r := <-results
		if r.err != nil {
			a.failed[r.cfg.Name] = r.err
			a.log.Warn("tool not running", "tool", r.cfg.Name, "err", r.err)
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		run := &running{cfg: r.cfg, stream: r.s, cancel: cancel, done: make(chan error, 1)}
		a.running[r.cfg.Name] = run
		emit := a.emitter(r.cfg.Name)
		go func() { run.done <- r.s.Run(ctx, emit) }()
		a.log.Debug("tool running", "tool", r.cfg.Name, "hook", r.s.Hook().Name, "took", r.took.Round(time.Microsecond))
	}
}

func (a *Agent) open(t ToolConfig, ring uint32) (tool.Stream, error) {
	tl := a.opts.Find(t.Name)
	if tl == nil {
		return nil, fmt.Errorf("no tool %q", t.Name)
	}
	opts := tool.DefaultOptions()
	opts.Runtime, opts.Prefer, opts.RingBytes = a.rt, a.opts.Prefer, ring
	opts.Task.PID, opts.Task.MntNS = t.PID, t.MntNS
	if t.UID != nil {
		opts.Task.UID = *t.UID
	}
	opts.Net.Ports = t.Ports
	return tl.Start(opts)
}

// stop stops a running tool: its ring is drained (events delivered), then
// it is closed and its counts kept for the metrics. Called with a.mu held.
func (a *Agent) stop(name string) {
	r := a.running[name]
	r.cancel()
	if err := <-r.done; err != nil {
		a.log.Warn("tool stopped with an error", "tool", name, "err", err)
	}
	if st, err := r.stream.Stats(); err == nil {
		a.retired[name] = addStats(a.retired[name], st)
		if st.Lost() > 0 {
			a.log.Warn("tool lost events", "tool", name, "lost", st.Message())
		}
	}
	if err := r.stream.Close(); err != nil {
		a.log.Warn("closing tool", "tool", name, "err", err)
	}
	delete(a.running, name)
}

func addStats(a, b probe.Stats) probe.Stats {
	a.Events += b.Events
	a.RingFull += b.RingFull
	a.MapFull += b.MapFull
	a.PendingEvicted += b.PendingEvicted
	a.QueueFull += b.QueueFull
	a.UnpairedReturn += b.UnpairedReturn
	a.StackUnavailable += b.StackUnavailable
	a.PendingPartial += b.PendingPartial
	return a
}

// emitter returns the function a tool hands its events to: each becomes
// a record given to every sink.
func (a *Agent) emitter(name string) func(any) {
	return func(e any) {
		rec, err := newRecord(name, e, &a.host, a.res)
		if err != nil {
			a.log.Error("encoding event", "tool", name, "err", err)
			return
		}
		if a.json != nil {
			a.json.Write(rec.AppendJSON)
		}
		if a.otlp != nil {
			a.otlp.Write(rec)
		}
		if a.opts.Detector != nil {
			a.opts.Detector.Observe(name, e)
		}
	}
}

// Stop stops every tool (draining its ring), then exports what is queued
// within ctx and closes the sinks.
func (a *Agent) Stop(ctx context.Context) error {
	a.mu.Lock()
	for name := range a.running {
		a.stop(name)
	}
	a.mu.Unlock()
	a.stopDetector()
	return a.closeSinks(ctx)
}

func (a *Agent) closeSinks(ctx context.Context) error {
	var errs []error
	if a.otlp != nil {
		errs = append(errs, a.otlp.Close(ctx))
		st := &a.otlp.Stats
		if lost := st.Failed.Load() + st.Dropped.Load(); lost > 0 {
			a.log.Warn("otlp records lost", "failed", st.Failed.Load(), "dropped", st.Dropped.Load())
		}
	}
	if a.json != nil {
		errs = append(errs, a.json.Close())
	}
	if a.metrics != nil {
		errs = append(errs, a.metrics.Close(ctx))
	}
	return errors.Join(errs...)
}

// Tools reports each configured tool (sinks.Status).
func (a *Agent) Tools() []sinks.ToolStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []sinks.ToolStatus
	seen := map[string]bool{}
	for name, r := range a.running {
		st, _ := r.stream.Stats()
		out = append(out, sinks.ToolStatus{Name: name, Hook: r.stream.Hook().Name, Stats: addStats(a.retired[name], st)})
		seen[name] = true
	}
	for name, err := range a.failed {
		out = append(out, sinks.ToolStatus{Name: name, Err: err, Stats: a.retired[name]})
		seen[name] = true
	}
	// Tools stopped by a reload keep their counters: they only go up.
	for name, st := range a.retired {
		if !seen[name] {
			out = append(out, sinks.ToolStatus{Name: name, Err: errors.New("not configured"), Stats: st})
		}
	}
	slices.SortFunc(out, func(x, y sinks.ToolStatus) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// Sinks reports the export sinks (sinks.Status).
func (a *Agent) Sinks() map[string]*sinks.SinkStats {
	m := map[string]*sinks.SinkStats{}
	if a.otlp != nil {
		m["otlp"] = &a.otlp.Stats
	}
	if a.json != nil {
		m["json"] = &a.json.Stats
	}
	return m
}

// Ready reports whether Start has run (sinks.Status).
func (a *Agent) Ready() bool { return a.ready.Load() }
