package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// counting: a setuid storm counted in the kernel (owl funccount of the
// tracepoint, bpftrace's count()) against the empty program on it.
func counting(e *env) error {
	n := 300000
	if e.smoke {
		n = 2000
	}
	tp := "syscalls:sys_enter_setuid"
	tracers := []tracer{owlTracer(e, "funccount", "-p", "{PID}", "t:"+tp)}
	if e.bpftrace != "" {
		tracers = append(tracers, tracer{name: "bpftrace count()", readyOn: "stdout", ready: "Attaching",
			argv: []string{e.bpftrace, "-e", "tracepoint:" + tp + " /pid == {PID}/ { @n = count(); }"}})
	}
	tracers = withBase(e, tracers)
	kinds := []string{"untraced", "floor"}
	for _, t := range tracers {
		kinds = append(kinds, t.name)
	}
	res := map[string]*kindResult{}
	for _, k := range kinds {
		res[k] = &kindResult{name: k}
	}
	for run := range e.runs {
		for i := range kinds {
			k := kinds[(i+run)%len(kinds)]
			if err := countRun(e, tp, k, tracers, n, res[k]); err != nil {
				res[k].fail = err.Error()
				e.problem("counting, %s: %v", k, err)
			}
		}
	}
	fmt.Fprintf(e.out, "\n## 3. Counting in the kernel\n\n"+
		"The setuid storm again, counted in the kernel by one tracepoint program; nothing is streamed.\n"+
		"*delivered* is the count the tool printed at exit over the calls. Goal: owl ≤ 1.2× the floor.\n")
	stormTable(e, storm{name: "setuid(0), counted"}, n, kinds, res)
	return nil
}

func countRun(e *env, tp, kind string, tracers []tracer, n int, r *kindResult) error {
	w, err := startWorkload(e.storm, "setuid")
	if err != nil {
		return err
	}
	defer w.close()
	var p *running
	var mu sync.Mutex
	counted := -1
	// The count is the last number on the line naming the tracepoint
	// (owl's FUNC COUNT table) or on bpftrace's "@n: N".
	match := func(l string) bool {
		if !strings.Contains(l, "sys_enter_setuid") && !strings.HasPrefix(l, "@n:") {
			return false
		}
		f := strings.Fields(l)
		if v, err := strconv.Atoi(f[len(f)-1]); err == nil {
			mu.Lock()
			counted = v
			mu.Unlock()
		}
		return true
	}
	switch kind {
	case "untraced":
	case "floor":
		f, err := attachFloor([]string{tp})
		if err != nil {
			return err
		}
		defer f.close()
	default:
		for _, t := range tracers {
			if t.name == kind {
				if p, err = startTracer(t, w.pid(), match, 30*time.Second); err != nil {
					return err
				}
			}
		}
	}
	time.Sleep(100 * time.Millisecond)
	d, cpu, err := w.run(n, 0)
	if err != nil {
		if p != nil {
			p.stop(nil)
		}
		return err
	}
	r.nsPerCall = append(r.nsPerCall, float64(d.Nanoseconds())/float64(n))
	r.cpuPerCall = append(r.cpuPerCall, float64(cpu.Nanoseconds())/float64(n))
	r.iwiPerEvent = append(r.iwiPerEvent, 0)
	if p == nil {
		fmt.Fprintf(os.Stderr, "counting %-24s %8.0f ns/call\n", kind, float64(d.Nanoseconds())/float64(n))
		return nil
	}
	p.stop(nil)
	mu.Lock()
	c := counted
	mu.Unlock()
	r.calls += n
	r.lines += max(c, 0)
	r.lost += int(p.lost)
	if c != n {
		r.silent += n - max(c, 0)
		if strings.HasPrefix(kind, "owl ") {
			e.problem("counting, %s: counted %d of %d calls (%s)", kind, c, n, p.tail())
		}
	}
	fmt.Fprintf(os.Stderr, "counting %-24s %8.0f ns/call  counted %d/%d\n", kind, float64(d.Nanoseconds())/float64(n), c, n)
	return nil
}
