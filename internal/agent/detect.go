package agent

import (
	"slices"
	"sync"
	"time"

	"github.com/owlbpf/owl/internal/agent/sinks"
)

// Detector evaluates rules over the tools' events beside the sinks
// (internal/detect's Engine); its findings come back through
// Agent.Finding.
type Detector interface {
	// Observe sees one event of tool, in the tool's goroutine (the event
	// is reused after the call).
	Observe(tool string, e any)
	// Tick runs every second: due updates, quiet findings closed.
	Tick(now time.Time)
	// Flush closes what is open, once the tools are stopped.
	Flush(now time.Time)
	// Rules are the rule ids, counted from 0 in the metrics.
	Rules() []string
}

// detections counts findings by rule for owl_detections_total.
type detections struct {
	mu sync.Mutex
	n  map[string]uint64
}

// initDetections makes every rule's counter, 0: before the metrics
// server starts, so that its registry knows the metric.
func (a *Agent) initDetections() {
	if a.opts.Detector == nil {
		return
	}
	a.found.n = map[string]uint64{}
	for _, r := range a.opts.Detector.Rules() {
		a.found.n[r] = 0
	}
}

// startDetector ticks the detector until stopDetector.
func (a *Agent) startDetector() {
	d := a.opts.Detector
	if d == nil {
		return
	}
	a.tickStop, a.tickDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(a.tickDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				d.Tick(now)
			case <-a.tickStop:
				return
			}
		}
	}()
}

// stopDetector stops the ticks and flushes the detector: called once the
// tools are stopped, before the sinks close.
func (a *Agent) stopDetector() {
	if a.opts.Detector == nil || a.tickStop == nil {
		return
	}
	close(a.tickStop)
	<-a.tickDone
	a.tickStop = nil
	a.opts.Detector.Flush(time.Now())
}

// Finding sends one finding state to the JSON and OTLP sinks and counts
// new findings (activity Create) by rule.
func (a *Agent) Finding(f sinks.Finding) {
	if f.Activity == sinks.FindingCreate {
		a.found.mu.Lock()
		if a.found.n == nil {
			a.found.n = map[string]uint64{}
		}
		a.found.n[f.Rule]++
		a.found.mu.Unlock()
	}
	if a.json != nil {
		a.json.Write(func(b []byte) []byte { return append(append(b, f.JSON...), '\n') })
	}
	if a.otlp != nil {
		a.otlp.WriteFinding(&f)
	}
}

// Detections counts findings by rule (sinks.DetectionStatus).
func (a *Agent) Detections() []sinks.RuleCount {
	a.found.mu.Lock()
	defer a.found.mu.Unlock()
	var out []sinks.RuleCount
	for r, n := range a.found.n {
		out = append(out, sinks.RuleCount{Rule: r, N: n})
	}
	slices.SortFunc(out, func(x, y sinks.RuleCount) int {
		if x.Rule < y.Rule {
			return -1
		}
		if x.Rule > y.Rule {
			return 1
		}
		return 0
	})
	return out
}
