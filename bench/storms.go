package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// storm is one kind of system call made N times by the workload, with the
// tracers that print a line per call and the tracepoints they use.
type storm struct {
	name     string
	args     []string // of the workload
	n, smoke int      // calls per run, and in -smoke
	floor    []string // tracepoints of the empty program
	tracers  []tracer
	// match tells a tracer's line for one of the workload's calls.
	match func(pid int) func(string) bool
	poke  func() // one call by the harness, not matched: wakes a tracer
	// wall: added cost from wall time (exec: the work is in children);
	// otherwise from the workload thread's CPU time.
	wall bool
}

func hasField(line, f string) bool { return slices.Contains(strings.Fields(line), f) }

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func stormList(e *env) []storm {
	setuid := storm{
		name: "setuid(0)", args: []string{"setuid"}, n: 300000, smoke: 2000,
		floor:   []string{"syscalls:sys_enter_setuid", "syscalls:sys_exit_setuid"},
		tracers: []tracer{owlTracer(e, "setuids", "-p", "{PID}")},
		match: func(pid int) func(string) bool {
			p := strconv.Itoa(pid)
			return func(l string) bool { return strings.Contains(l, "setuid") && hasField(l, p) }
		},
		poke: func() { unix.RawSyscall(unix.SYS_SETUID, 0, 0, 0) },
	}
	openat := storm{
		name: "failing openat", args: []string{"openat", "/nonexistent-" + e.marker + "/x"}, n: 300000, smoke: 2000,
		floor:   []string{"syscalls:sys_enter_openat", "syscalls:sys_exit_openat"},
		tracers: []tracer{owlTracer(e, "opensnoop", "-p", "{PID}")},
		match: func(int) func(string) bool {
			return func(l string) bool { return strings.Contains(l, "nonexistent-"+e.marker) }
		},
		poke: func() { unix.Open("/nonexistent-owl-poke", unix.O_RDONLY, 0) },
	}
	execs := storm{
		name: "exec", args: []string{"exec", e.trueCopy}, n: 100, smoke: 10, wall: true,
		floor:   []string{"syscalls:sys_enter_execve", "sched:sched_process_exec"},
		tracers: []tracer{owlTracer(e, "execsnoop")},
		match: func(int) func(string) bool {
			return func(l string) bool { return strings.Contains(l, e.marker) }
		},
		poke: func() { exec.Command("/bin/true").Run() },
	}
	if e.bpftrace != "" {
		setuid.tracers = append(setuid.tracers, bpftraceTracer(e, "setuids.bt", "/usr/sbin/setuids.bt"))
		openat.tracers = append(openat.tracers, bpftraceTracer(e, "opensnoop.bt", "/usr/sbin/opensnoop.bt"))
		execs.tracers = append(execs.tracers, bpftraceTracer(e, "execsnoop.bt", "/usr/sbin/execsnoop.bt"))
	}
	if exists("/usr/sbin/opensnoop") && !e.noLibbpf {
		openat.tracers = append(openat.tracers, buffered(libbpfTracer("opensnoop", "-p", "{PID}")))
	}
	if exists("/usr/sbin/execsnoop") && !e.noLibbpf {
		execs.tracers = append(execs.tracers, buffered(libbpfTracer("execsnoop")))
	}
	for _, s := range []*storm{&setuid, &openat, &execs} {
		s.tracers = withBase(e, s.tracers)
	}
	return []storm{setuid, openat, execs}
}

// kindResult is what the runs of one tracer (or untraced, or the floor)
// gave.
type kindResult struct {
	name               string
	nsPerCall          stat // wall time of the loop
	cpuPerCall         stat // the workload thread's CPU time
	iwiPerEvent        stat
	calls, lines, lost int
	silent             int // calls neither delivered nor reported lost
	fail               string
}

func storms(e *env) error {
	fmt.Fprintf(e.out, "\n## 2. Added cost per event, streaming\n\n"+
		"A C workload (bench/workload/storm.c) makes N calls of one kind in a loop and times it, by the\n"+
		"wall clock and by its thread's CPU clock (the BPF programs run in that thread; a loaded machine's\n"+
		"run queue does not inflate it); *added* is traced minus untraced ns per call (medians of the same\n"+
		"run), from CPU time for the system-call storms and from wall time for exec (its work is in\n"+
		"children). *floor* is an empty BPF program (`return 0`) on the tracepoints the tools use: what\n"+
		"any tracer pays before doing anything.\n"+
		"Goal: owl's added cost ≤ 1.5× the floor's, below libbpf-tools', nothing lost. Every tracer's\n"+
		"stdout is a pipe the harness reads, so printing is included. *delivered*: lines for the\n"+
		"workload's calls; *lost*: what the tracer reported losing (bpftrace counts perf records, two per\n"+
		"setuids.bt line); *silent*: neither delivered nor reported. IWI: IRQ-work interrupts (how BPF\n"+
		"output wakes its reader) per call, all CPUs.\n")
	for _, s := range stormList(e) {
		n := s.n
		if e.smoke {
			n = s.smoke
		}
		kinds := []string{"untraced", "floor"}
		for _, t := range s.tracers {
			kinds = append(kinds, t.name)
		}
		res := map[string]*kindResult{}
		for _, k := range kinds {
			res[k] = &kindResult{name: k}
		}
		for run := range e.runs {
			for i := range kinds {
				k := kinds[(i+run)%len(kinds)]
				var t *tracer
				for j := range s.tracers {
					if s.tracers[j].name == k {
						t = &s.tracers[j]
					}
				}
				if err := stormRun(e, s, k, t, n, res[k]); err != nil {
					res[k].fail = err.Error()
					e.problem("%s, %s: %v", s.name, k, err)
				}
			}
		}
		stormTable(e, s, n, kinds, res)
	}
	return nil
}

func stormRun(e *env, s storm, kind string, t *tracer, n int, r *kindResult) error {
	w, err := startWorkload(e.storm, s.args...)
	if err != nil {
		return err
	}
	defer w.close()
	var p *running
	warm := 0
	switch {
	case kind == "floor":
		f, err := attachFloor(s.floor)
		if err != nil {
			return err
		}
		defer f.close()
	case t != nil:
		if p, err = startTracer(*t, w.pid(), s.match(w.pid()), 30*time.Second); err != nil {
			return err
		}
		defer func() {
			if p != nil {
				p.stop(s.poke)
			}
		}()
		// Calls until one is printed: the tracer really sees them (a
		// buffered tracer prints later: the calls are not counted).
		for deadline := time.Now().Add(5 * time.Second); t.readyAfter == 0 && time.Now().Before(deadline); {
			if _, _, err := w.run(1, 0); err != nil {
				return err
			}
			warm++
			if c, _ := p.count(); c > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond)
	i0 := iwi()
	d, cpu, err := w.run(n, 0)
	if err != nil {
		return err
	}
	i1 := iwi()
	r.nsPerCall = append(r.nsPerCall, float64(d.Nanoseconds())/float64(n))
	r.cpuPerCall = append(r.cpuPerCall, float64(cpu.Nanoseconds())/float64(n))
	r.iwiPerEvent = append(r.iwiPerEvent, float64(i1-i0)/float64(n))
	if p == nil {
		fmt.Fprintf(os.Stderr, "%-16s %-24s %8.0f ns/call\n", s.name, kind, float64(d.Nanoseconds())/float64(n))
		return nil
	}
	p.waitLines(warm+n, 3*time.Second)
	p.stop(s.poke)
	got, _ := p.count()
	lines := max(0, got-warm)
	r.calls += n
	r.lines += lines
	p.mu.Lock()
	r.lost += int(p.lost)
	p.mu.Unlock()
	if silent := n - lines - int(p.lost); silent > 0 {
		r.silent += silent
	}
	fmt.Fprintf(os.Stderr, "%-16s %-24s %8.0f ns/call  %d/%d lines  lost %d\n", s.name, kind, float64(d.Nanoseconds())/float64(n), lines, n, p.lost)
	if strings.HasPrefix(kind, "owl ") && (lines != n || p.lost != 0) {
		e.problem("%s, %s: %d lines for %d calls, %d reported lost", s.name, kind, lines, n, p.lost)
	}
	p = nil
	return nil
}

func stormTable(e *env, s storm, n int, kinds []string, res map[string]*kindResult) {
	by, measure := func(r *kindResult) stat { return r.cpuPerCall }, "the workload thread's CPU time"
	if s.wall {
		by, measure = func(r *kindResult) stat { return r.nsPerCall }, "wall time"
	}
	base := by(res["untraced"]).med()
	floorAdded := by(res["floor"]).med() - base
	fmt.Fprintf(e.out, "\n### %s storm, %d calls per run (added: from %s)\n\n", s.name, n, measure)
	fmt.Fprintf(e.out, "| | wall ns/call | CPU ns/call | added ns/event | added / floor's | delivered/calls | lost | silent | IWI/event |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, k := range kinds {
		r := res[k]
		if len(r.nsPerCall) == 0 {
			fmt.Fprintf(e.out, "| %s | fails: %s | | | | | | | |\n", k, firstLine(r.fail))
			continue
		}
		added, ratio := "", ""
		if k != "untraced" {
			a := by(r).med() - base
			added = num(a)
			if k != "floor" && floorAdded > 0 {
				ratio = num(a/floorAdded) + "×"
			}
		}
		deliv, lost, silent := "", "", ""
		if r.calls > 0 {
			deliv = fmt.Sprintf("%d/%d", r.lines, r.calls)
			lost, silent = strconv.Itoa(r.lost), strconv.Itoa(r.silent)
		}
		fmt.Fprintf(e.out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", k, r.nsPerCall, r.cpuPerCall, added, ratio, deliv, lost, silent, num(r.iwiPerEvent.med()))
	}
}
