package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// throughput: owl setuids -o json to /dev/null while the workload makes
// setuid calls at a set rate for a while; the rate owl keeps up with
// without loss, and what it counts as lost above it.
func throughput(e *env) error {
	secs := 10.0
	rates := []int{50000, 100000, 200000, 400000, 0}
	if e.smoke {
		secs, rates = 0.2, []int{10000}
	}
	fmt.Fprintf(e.out, "\n## 4. Throughput: `owl setuids -p PID -o json > /dev/null`\n\n"+
		"The workload makes setuid calls at a set rate (0 = as fast as one thread can) for %.0f s per\n"+
		"row; owl writes JSON lines to /dev/null. *lost* is what owl reported on stderr (every drop is\n"+
		"counted by cause). Goal: ≥ 1,000,000 events/s with zero loss on 2 cores — bounded here by how\n"+
		"fast one thread can make setuid calls in this VM (the *achieved* column).\n\n"+
		"| owl | target events/s | achieved events/s | events | lost | owl CPU µs/event |\n|---|---|---|---|---|---|\n", secs)
	bins := [][2]string{{"owl", e.owl}}
	if e.base != "" {
		bins = append(bins, [2]string{"owl@base", e.base})
	}
	for _, rate := range rates {
		for _, bin := range bins {
			if err := throughputRun(e, bin[0], bin[1], rate, secs); err != nil {
				return err
			}
		}
	}
	return nil
}

func throughputRun(e *env, name, bin string, rate int, secs float64) error {

	w, err := startWorkload(e.storm, "setuid")
	if err != nil {
		return err
	}
	t := owlTracer(e, "setuids", "-p", "{PID}", "-o", "json")
	t.argv[0] = bin
	t.stdout = os.DevNull
	p, err := startTracer(t, w.pid(), nil, 30*time.Second)
	if err != nil {
		w.close()
		return err
	}
	k := int(float64(rate) * secs)
	if rate == 0 {
		k = int(secs * 300000) // about 10 s at this VM's speed
		if e.smoke {
			k = 2000
		}
	}
	cpu0 := cpuTime(p.cmd.Process.Pid)
	d, _, err := w.run(k, rate)
	time.Sleep(100 * time.Millisecond) // the last poll of the ring
	cpu1 := cpuTime(p.cmd.Process.Pid)
	p.stop(nil)
	w.close()
	if err != nil {
		return err
	}
	achieved := float64(k) / d.Seconds()
	target := fmt.Sprint(rate)
	if rate == 0 {
		target = "max"
	}
	fmt.Fprintf(e.out, "| %s | %s | %.0f | %d | %d | %.2f |\n", name, target, achieved, k, p.lost, float64((cpu1-cpu0).Microseconds())/float64(k))
	fmt.Fprintf(os.Stderr, "throughput %s: %.0f/s, %d events, lost %d\n", target, achieved, k, p.lost)
	if e.smoke && p.lost != 0 {
		e.problem("throughput %s: %d lost", target, p.lost)
	}
	return nil
}

// cpuTime is utime+stime of a process (10 ms ticks), fields 14 and 15
// of /proc/PID/stat, counted after the command name's closing parenthesis.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // f[0] is field 3
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
