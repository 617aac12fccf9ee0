package main

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/owlbpf/owl/internal/detect"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/tools/capable"
	"github.com/owlbpf/owl/internal/tools/execsnoop"
	"github.com/owlbpf/owl/internal/tools/pamsnoop"
	"github.com/owlbpf/owl/internal/tools/tcpaccept"
	"github.com/owlbpf/owl/internal/tools/tcpreset"
)

// detectors measures what one detector costs in user space: events a
// second that Engine.Observe takes on one goroutine (one core), over
// synthetic events shaped as the tools hand them over, with a tick every
// simulated second. The kernel side is the tools' own (sections 1-2).
func detectors(e *env) error {
	n := 2_000_000
	if e.smoke {
		n = 20_000
	}
	fmt.Fprintf(e.out, "\n## 6. Detectors (owl detect, owl agent --detect)\n\n"+
		"Synthetic events through `detect.Engine.Observe` on one goroutine, %d per row, "+
		"one tick per simulated second (1000 events): events a second one core consumes, "+
		"and the findings the mix makes.\n\n"+
		"| detector | events | workload | events/s | ns/event | findings |\n|---|---|---|---|---|---|\n", n)
	rows := []struct {
		name, what string
		tool       string
		make       func(i int, at time.Time) any
		want       bool // the mix trips the rule
	}{
		{"port-scan", "tcpreset NO_SOCKET from 256 addresses, 64 ports each, over and over", "tcpreset", func(i int, at time.Time) any {
			return &tcpreset.Event{Time: event.Time{Time: at}, Laddr: netip.AddrFrom4([4]byte{10, 0, 0, 1}), Lport: uint16(i/256%64 + 1),
				Raddr: netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), Rport: 40000, Family: 4, Reason: "NO_SOCKET"}
		}, true},
		{"port-scan (accepts)", "tcpaccept from 256 clients to one port", "tcpaccept", func(i int, at time.Time) any {
			ev := &tcpaccept.Event{Family: 4, Raddr: netip.AddrFrom4([4]byte{10, 2, 0, byte(i)}), Rport: uint16(i), Lport: 443}
			ev.Time = event.Time{Time: at}
			return ev
		}, false},
		{"brute-force", "pam_authenticate failures from 64 hosts, one success in 32", "pamsnoop", func(i int, at time.Time) any {
			ev := &pamsnoop.Event{Service: "sshd", User: "root", RHost: pamsnoop.Text(fmt.Sprintf("10.3.0.%d", i%64)),
				Event: "pam_authenticate", Result: "PAM_AUTH_ERR"}
			if i%32 == 0 {
				ev.Result = "PAM_SUCCESS"
			}
			ev.Time, ev.PID = event.Time{Time: at}, uint32(1000+i%64)
			return ev
		}, true},
		{"capability-denials", "CAP_SYS_ADMIN denials of 8 pids", "capable", func(i int, at time.Time) any {
			ev := &capable.Event{Cap: 21, CapName: "CAP_SYS_ADMIN", Verdict: "deny"}
			ev.Time, ev.PID, ev.UID = event.Time{Time: at}, uint32(2000+i%8), 1000
			return ev
		}, true},
		{"reverse-shell", "execs of shells (no socket on stdio)", "execsnoop", func(i int, at time.Time) any {
			ev := &execsnoop.Event{Filename: "/usr/bin/bash", Args: []execsnoop.Str{"bash", "-c", "true"}}
			ev.Time, ev.PID = event.Time{Time: at}, uint32(3000+i%4096)
			return ev
		}, false},
	}
	for _, r := range rows {
		cfg := detect.Defaults()
		if err := cfg.Check(); err != nil {
			return err
		}
		findings := 0
		eng := detect.New(cfg, detect.Options{Emit: func(f detect.Finding) {
			if f.Activity == detect.Create {
				findings++
			}
		}, Exe: func(uint32, string) string { return "" }})
		// Events are made first: their making is not the detector's cost.
		evs := make([]any, 0, n)
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := range n {
			evs = append(evs, r.make(i, t0.Add(time.Duration(i)*time.Millisecond)))
		}
		start := time.Now()
		for i, ev := range evs {
			eng.Observe(r.tool, ev)
			if i%1000 == 999 {
				eng.Tick(t0.Add(time.Duration(i) * time.Millisecond))
			}
		}
		took := time.Since(start)
		eng.Flush(t0.Add(time.Duration(n) * time.Millisecond))
		rate := float64(n) / took.Seconds()
		fmt.Fprintf(e.out, "| %s | %s | %d | %.2fM | %.0f | %d |\n", r.name, r.what, n, rate/1e6, float64(took.Nanoseconds())/float64(n), findings)
		if r.want != (findings > 0) {
			e.problem("detectors: %s made %d findings (want some: %v)", r.name, findings, r.want)
		}
		if s := eng.Stats(); s.Events != uint64(n) {
			e.problem("detectors: %s observed %d of %d events", r.name, s.Events, n)
		}
	}
	return nil
}
