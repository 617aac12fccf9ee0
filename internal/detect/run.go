package detect

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// Flush closes every open finding (sending its last state when it changed
// since the last one sent) and forgets every group: at the end of a run.
func (e *Engine) Flush(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.priv.resolve(now.Add(time.Hour))
	for _, b := range e.books() {
		for _, g := range b.groups {
			g.last = now.Add(-b.closeAfter)
		}
		b.tick(now)
	}
}

func (e *Engine) books() []*book {
	return []*book{&e.scan.book, &e.brute.book, &e.brute.succ, &e.priv.book, &e.caps.book, &e.mods.book, &e.shells.book}
}

// Needed are the tools the enabled rules read, sorted.
func (c *Config) Needed() []string {
	off := map[string]bool{
		RulePortScan.ID: c.PortScan.Disabled, RuleBruteForce.ID: c.BruteForce.Disabled,
		RuleSuccessAfter.ID: c.BruteForce.Disabled, RulePrivEsc.ID: c.PrivEsc.Disabled,
		RuleCapDenials.ID: c.PrivEsc.Disabled, RuleModuleLoad.ID: c.ModuleLoad.Disabled,
		RuleReverseShell.ID: c.ReverseShell.Disabled,
	}
	var tools []string
	for t, rules := range Tools {
		for _, r := range rules {
			if !off[r] {
				tools = append(tools, t)
				break
			}
		}
	}
	slices.Sort(tools)
	return tools
}

// Started is a tool Run started, or could not.
type Started struct {
	Name   string
	Stream tool.Stream // nil when Err
	Err    error
}

// Start opens the tools the config's rules need, in parallel, with opts
// (a shared Runtime, hook preferences); a tool that cannot run here
// (modsnoop without modules) is returned with its error, the others run.
func Start(cfg *Config, find func(string) tool.Tool, opts tool.Options) []Started {
	names := cfg.Needed()
	out := make([]Started, len(names))
	done := make(chan struct{})
	for i, n := range names {
		go func() {
			defer func() { done <- struct{}{} }()
			out[i].Name = n
			t := find(n)
			if t == nil {
				out[i].Err = fmt.Errorf("no tool %q", n)
				return
			}
			out[i].Stream, out[i].Err = t.Start(opts)
		}()
	}
	for range names {
		<-done
	}
	return out
}

// Run feeds the started tools' events to e and ticks it every second
// until ctx ends; then the tools' rings are drained, the tools closed,
// and the open findings flushed. It returns the tools' lost-event counts.
func Run(ctx context.Context, e *Engine, started []Started) (map[string]probe.Stats, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(started))
	n := 0
	for _, s := range started {
		if s.Stream == nil {
			continue
		}
		n++
		go func() {
			err := s.Stream.Run(runCtx, func(ev any) { e.Observe(s.Name, ev) })
			if err != nil {
				err = fmt.Errorf("%s: %w", s.Name, err)
			}
			errs <- err
		}()
	}
	if n == 0 {
		return nil, errors.New("none of the detectors' tools could start")
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var runErr error
loop:
	for {
		select {
		case now := <-tick.C:
			e.Tick(now)
		case <-ctx.Done():
			break loop
		case err := <-errs:
			// A tool that ends early ends the run: its rules are blind.
			n--
			runErr = err
			break loop
		}
	}
	cancel()
	for range n {
		if err := <-errs; err != nil && runErr == nil {
			runErr = err
		}
	}
	stats := map[string]probe.Stats{}
	for _, s := range started {
		if s.Stream == nil {
			continue
		}
		if st, err := s.Stream.Stats(); err == nil {
			stats[s.Name] = st
		}
		s.Stream.Close()
	}
	e.Flush(time.Now())
	return stats, runErr
}
