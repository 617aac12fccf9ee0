package sinks

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
)

// Finding is one state of a detection finding, already encoded as an
// OCSF Detection Finding (internal/detect).
type Finding struct {
	Rule     string
	UID      string
	Activity int // OCSF activity_id: FindingCreate, 2 Update, 3 Close
	Severity int // OCSF severity_id: 1 Informational ... 5 Critical
	Time     time.Time
	JSON     []byte // one object, no newline
}

// FindingCreate is the activity of a new finding.
const FindingCreate = 1

// RuleCount is the findings made by one rule.
type RuleCount struct {
	Rule string
	N    uint64
}

// DetectionStatus is what an agent that runs detectors adds to Status:
// owl_detections_total{rule}.
type DetectionStatus interface {
	Detections() []RuleCount
}

// findingSeverity maps OCSF severities to log severities: Informational
// INFO, Low WARN, Medium ERROR, High ERROR3, Critical FATAL.
func findingSeverity(ocsfSeverity int) (log.Severity, string) {
	switch ocsfSeverity {
	case 1:
		return log.SeverityInfo, "INFO"
	case 2:
		return log.SeverityWarn, "WARN"
	case 3:
		return log.SeverityError, "ERROR"
	case 4:
		return log.SeverityError3, "ERROR3"
	case 5, 6:
		return log.SeverityFatal, "FATAL"
	}
	return log.SeverityUndefined, ""
}

// WriteFinding queues one finding as an OTLP log record named
// owl.finding, with the severity of the finding and the OCSF object as
// its body; dropped and counted when the queue is full.
func (o *OTLP) WriteFinding(f *Finding) {
	if o.Stats.Queued.Add(1) > o.queue {
		o.Stats.Queued.Add(-1)
		o.Stats.Dropped.Add(1)
		return
	}
	var lr log.Record
	lr.SetEventName("owl.finding")
	lr.SetTimestamp(f.Time)
	lr.SetObservedTimestamp(time.Now())
	sev, text := findingSeverity(f.Severity)
	lr.SetSeverity(sev)
	lr.SetSeverityText(text)
	lr.SetBody(jsonValue(f.JSON))
	lr.AddAttributes(
		attribute.String("owl.rule", f.Rule),
		attribute.String("owl.finding.uid", f.UID),
		attribute.Int("ocsf.class_uid", 2004),
		attribute.Int("ocsf.activity_id", f.Activity),
		attribute.Int("ocsf.severity_id", f.Severity),
	)
	o.logger.Emit(context.Background(), lr)
}

// collectDetections sends owl_detections_total{rule}.
func collectDetections(d DetectionStatus, ch chan<- prometheus.Metric) {
	desc := prometheus.NewDesc("owl_detections_total", "Detection findings made (not their updates), by rule.", []string{"rule"}, nil)
	for _, r := range d.Detections() {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(r.N), r.Rule)
	}
}
