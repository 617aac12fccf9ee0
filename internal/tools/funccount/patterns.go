package funccount

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/uprobe"
)

// tracefsEvents is where tracepoints are listed (the command layer mounts
// tracefs there when it is missing).
const tracefsEvents = "/sys/kernel/tracing/events"

// Resolve turns funccount's PATTERNs into a Config: t:GROUP:NAME is a
// kernel tracepoint (globs allowed, as BCC's funccount), p:LIB:FUNC is
// LIB:FUNC, anything else a probe specifier (internal/uprobe). Functions
// two patterns both match are counted once. o.Max bounds each pattern and
// the total. Every error is bad input, one line.
func Resolve(patterns []string, o uprobe.Options) (Config, error) {
	var cfg Config
	if o.Max <= 0 {
		o.Max = uprobe.DefaultMax
	}
	type fileOff struct {
		dev, ino uint64
		off      uint64
	}
	seenFunc := map[fileOff]bool{}
	seenTP := map[Tracepoint]bool{}
	for _, p := range patterns {
		if rest, ok := strings.CutPrefix(p, "t:"); ok {
			tps, err := tracepoints(p, rest)
			if err != nil {
				return Config{}, err
			}
			for _, tp := range tps {
				if !seenTP[tp] {
					seenTP[tp] = true
					cfg.Tracepoints = append(cfg.Tracepoints, tp)
				}
			}
			continue
		}
		if rest, ok := strings.CutPrefix(p, "p:"); ok && strings.Contains(rest, ":") {
			p = rest // BCC's explicit form of a user function, p:LIB:FUNC
		}
		s, err := uprobe.Parse(p)
		if err != nil {
			return Config{}, err
		}
		funcs, err := uprobe.Resolve(s, o)
		if err != nil {
			return Config{}, err
		}
		for _, fn := range funcs {
			var st unix.Stat_t
			if err := unix.Stat(fn.Path, &st); err != nil {
				return Config{}, fmt.Errorf("%s: %s: %w", p, fn.Path, err)
			}
			k := fileOff{uint64(st.Dev), st.Ino, fn.Offset}
			if !seenFunc[k] {
				seenFunc[k] = true
				cfg.Funcs = append(cfg.Funcs, fn)
			}
		}
	}
	if n := cfg.Len(); n > o.Max {
		return Config{}, fmt.Errorf("%d functions and tracepoints match, more than %d (narrow the patterns or use --max N)", n, o.Max)
	}
	return cfg, nil
}

// tracepoints expands GROUP:NAME, each part a glob, over tracefs.
func tracepoints(pattern, spec string) ([]Tracepoint, error) {
	group, name, ok := strings.Cut(spec, ":")
	if !ok || group == "" || name == "" || strings.Contains(name, ":") {
		return nil, fmt.Errorf("%s: want t:GROUP:NAME, as t:sched:sched_switch", pattern)
	}
	for _, part := range []string{group, name} {
		if _, err := path.Match(part, ""); err != nil || strings.ContainsAny(part, "/\x00") || part == "." || part == ".." {
			return nil, fmt.Errorf("%s: bad tracepoint pattern %q", pattern, part)
		}
	}
	groups, err := os.ReadDir(tracefsEvents)
	if err != nil {
		return nil, fmt.Errorf("%s: list tracepoints: %w", pattern, err)
	}
	var tps []Tracepoint
	for _, g := range groups {
		if ok, _ := path.Match(group, g.Name()); !ok || !g.IsDir() {
			continue
		}
		events, err := os.ReadDir(tracefsEvents + "/" + g.Name())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", pattern, err)
		}
		for _, e := range events {
			// Every tracepoint is a directory; "enable" and "filter" are
			// the group's own files.
			if ok, _ := path.Match(name, e.Name()); ok && e.IsDir() {
				tps = append(tps, Tracepoint{Group: g.Name(), Name: e.Name()})
			}
		}
	}
	if len(tps) == 0 {
		return nil, fmt.Errorf("%s: %w (see %s)", pattern, errNoTracepoint, "/sys/kernel/tracing/available_events")
	}
	return tps, nil
}

var errNoTracepoint = errors.New("no such tracepoint")
