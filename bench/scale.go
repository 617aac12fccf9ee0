package main

import (
	"fmt"
	"os"
	"time"
)

// scale: start-up and RSS of funccount as the functions it attaches to
// grow: uprobes on the workload's fn_000..fn_999, and syscall tracepoints.
func scale(e *env) error {
	rows := []*startRow{
		{t: owlTracer(e, "funccount", e.storm+":fn_00?")},
		{t: owlTracer(e, "funccount", e.storm+":fn_0??")},
		{t: owlTracer(e, "funccount", e.storm+":fn_*")},
		{t: owlTracer(e, "funccount", "t:syscalls:sys_enter_set*")},
		{t: owlTracer(e, "funccount", "t:syscalls:sys_enter_*")},
	}
	labels := []string{"10 uprobes", "100 uprobes", "1000 uprobes", "set* syscall tracepoints", "all sys_enter_* tracepoints"}
	for run := range e.runs {
		for i := range rows {
			r := rows[(i+run)%len(rows)]
			if r.fail != "" {
				continue
			}
			p, err := startTracer(r.t, 0, nil, 60*time.Second)
			if err != nil {
				r.fail = err.Error()
				e.problem("scale: %s: %v", cmdline(r.t), err)
				continue
			}
			ready := p.readyAt.Sub(p.start)
			rss := p.stop(nil)
			r.ready = append(r.ready, float64(ready.Microseconds())/1000)
			r.rss = append(r.rss, float64(rss)/1024)
			fmt.Fprintf(os.Stderr, "scale %-40s %7.1f ms %6.1f MB\n", labels[(i+run)%len(rows)], float64(ready.Microseconds())/1000, float64(rss)/1024)
		}
	}
	fmt.Fprintf(e.out, "\n## 5. Scale: funccount with more functions\n\n"+
		"Start-up and peak RSS as the attached functions grow (uprobe-multi links for user functions,\n"+
		"one link per tracepoint). seccount has no hook on this kernel (no kprobes, no fentry).\n\n"+
		"| attached | command | ready ms | peak RSS MB |\n|---|---|---|---|\n")
	for i, r := range rows {
		if len(r.ready) == 0 {
			fmt.Fprintf(e.out, "| %s | %s | fails: %s | |\n", labels[i], cmdline(r.t), firstLine(r.fail))
			continue
		}
		fmt.Fprintf(e.out, "| %s | %s | %s | %s |\n", labels[i], cmdline(r.t), r.ready, r.rss)
	}
	return nil
}
