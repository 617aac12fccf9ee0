package sinks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/owlbpf/owl/internal/probe"
)

// ToolStatus is what the metrics say of one tool.
type ToolStatus struct {
	Name  string
	Hook  string // the hook in use; "" when the tool failed
	Err   error  // why it could not start
	Stats probe.Stats
}

// Status is the agent's state as the metrics and health endpoints read it.
type Status interface {
	Tools() []ToolStatus
	// Sinks are the export sinks by name ("otlp", "json").
	Sinks() map[string]*SinkStats
	// Ready reports whether the tools have been started.
	Ready() bool
}

// Metrics serves /metrics (Prometheus text, from a registry of its own:
// the agent's counters and the Go and process collectors), /healthz (the
// process answers) and /readyz (the tools are started; 503 before; each
// tool's state in the body).
type Metrics struct {
	srv *http.Server
	ln  net.Listener
}

// descs are the agent's metrics, made when the server starts (not at
// program start: every owl command links this package).
type descs struct {
	events, lost, hook, up, queue, exp, fail, drop *prometheus.Desc
}

func newDescs() descs {
	return descs{
		events: prometheus.NewDesc("owl_events_total", "Events delivered, by tool.", []string{"tool"}, nil),
		lost:   prometheus.NewDesc("owl_events_lost_total", "Events lost before export, by tool and cause.", []string{"tool", "cause"}, nil),
		hook:   prometheus.NewDesc("owl_tool_hook", "The hook a running tool uses (1), by tool and hook.", []string{"tool", "hook"}, nil),
		up:     prometheus.NewDesc("owl_tool_up", "1 when the tool runs, 0 when it could not start on this kernel.", []string{"tool"}, nil),
		queue:  prometheus.NewDesc("owl_export_queue_length", "Records waiting to be exported, by sink.", []string{"sink"}, nil),
		exp:    prometheus.NewDesc("owl_export_records_total", "Records exported, by sink.", []string{"sink"}, nil),
		fail:   prometheus.NewDesc("owl_export_failed_records_total", "Records given up on after retries, by sink.", []string{"sink"}, nil),
		drop:   prometheus.NewDesc("owl_export_dropped_records_total", "Records dropped because the export queue was full, by sink.", []string{"sink"}, nil),
	}
}

type collector struct {
	st Status
	d  descs
}

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.st.Tools() {
		up := 0.0
		if t.Err == nil {
			up = 1
			ch <- prometheus.MustNewConstMetric(c.d.hook, prometheus.GaugeValue, 1, t.Name, t.Hook)
		}
		ch <- prometheus.MustNewConstMetric(c.d.up, prometheus.GaugeValue, up, t.Name)
		ch <- prometheus.MustNewConstMetric(c.d.events, prometheus.CounterValue, float64(t.Stats.Events), t.Name)
		for _, cause := range t.Stats.Causes() {
			ch <- prometheus.MustNewConstMetric(c.d.lost, prometheus.CounterValue, float64(cause.N), t.Name, cause.Name)
		}
	}
	if d, ok := c.st.(DetectionStatus); ok {
		collectDetections(d, ch)
	}
	for name, s := range c.st.Sinks() {
		ch <- prometheus.MustNewConstMetric(c.d.queue, prometheus.GaugeValue, float64(s.Queued.Load()), name)
		ch <- prometheus.MustNewConstMetric(c.d.exp, prometheus.CounterValue, float64(s.Exported.Load()), name)
		ch <- prometheus.MustNewConstMetric(c.d.fail, prometheus.CounterValue, float64(s.Failed.Load()), name)
		ch <- prometheus.MustNewConstMetric(c.d.drop, prometheus.CounterValue, float64(s.Dropped.Load()), name)
	}
}

// NewMetrics listens on addr (HOST:PORT) and serves in the background.
func NewMetrics(addr string, st Status, logger *slog.Logger) (*Metrics, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collector{st, newDescs()})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		var b strings.Builder
		running := 0
		for _, t := range st.Tools() {
			if t.Err != nil {
				fmt.Fprintf(&b, "%s: not running: %v\n", t.Name, t.Err)
				continue
			}
			running++
			fmt.Fprintf(&b, "%s: running (%s)\n", t.Name, t.Hook)
		}
		// Ready once started with at least one tool: a tool this kernel
		// cannot run is a detail, not a reason to restart the pod.
		if !st.Ready() || running == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "not ready\n")
		} else {
			fmt.Fprint(w, "ready\n")
		}
		fmt.Fprint(w, b.String())
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address: %w", err)
	}
	m := &Metrics{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics server", "err", err)
		}
	}()
	return m, nil
}

// Addr is the address served (with the port chosen for ":0").
func (m *Metrics) Addr() string { return m.ln.Addr().String() }

// Close stops serving.
func (m *Metrics) Close(ctx context.Context) error { return m.srv.Shutdown(ctx) }
