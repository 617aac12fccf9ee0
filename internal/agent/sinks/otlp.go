package sinks

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
)

// OTLPConfig is where and how OTLP logs are sent.
type OTLPConfig struct {
	Endpoint string // http(s)://HOST:PORT[/PATH]
	Protocol string // http/protobuf or grpc
	// Queue bounds the records waiting to be exported; past it records
	// are dropped and counted.
	Queue int
	// Retry is how long one batch is retried, with backoff, before its
	// records are counted as failed.
	Retry   time.Duration
	Version string // service.version
}

// OTLP sends each record as an OTLP log record, batched, through the
// OpenTelemetry SDK (sdk/log's batch processor and the otlploghttp or
// otlploggrpc exporter). The event name is owl.TOOL; the attributes carry
// the OCSF class and activity and, under OpenTelemetry's semantic-
// convention names, the process, container and network endpoints; the
// body is the event's own fields.
type OTLP struct {
	provider *sdklog.LoggerProvider
	logger   log.Logger
	queue    int64
	Stats    SinkStats
	log      *slog.Logger
}

// NewOTLP starts the exporter; nothing is sent until the first record.
func NewOTLP(ctx context.Context, cfg OTLPConfig, host *Host, logger *slog.Logger) (*OTLP, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("otlp endpoint: %w", err)
	}
	var exp sdklog.Exporter
	// The SDK's own retries are off: retrying here covers every failure,
	// a refused connection (the collector restarting) included, which
	// otlploghttp does not retry.
	switch cfg.Protocol {
	case "grpc":
		opts := []otlploggrpc.Option{otlploggrpc.WithEndpointURL(cfg.Endpoint),
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false})}
		if u.Scheme == "http" {
			opts = append(opts, otlploggrpc.WithInsecure())
		}
		exp, err = otlploggrpc.New(ctx, opts...)
	default:
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/logs"
		}
		opts := []otlploghttp.Option{otlploghttp.WithEndpointURL(u.String()),
			otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false})}
		if u.Scheme == "http" {
			opts = append(opts, otlploghttp.WithInsecure())
		}
		exp, err = otlploghttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("otlp exporter: %w", err)
	}
	o := &OTLP{queue: int64(cfg.Queue), log: logger}
	attrs := []attribute.KeyValue{
		attribute.String("service.name", "owl"),
		attribute.String("host.name", host.Name),
	}
	if cfg.Version != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.Version))
	}
	if host.BootID != "" {
		attrs = append(attrs, attribute.String("host.boot.id", host.BootID))
	}
	if host.NodeName != "" {
		attrs = append(attrs, attribute.String("k8s.node.name", host.NodeName))
	}
	res := resource.NewSchemaless(attrs...)
	batch := 512
	// The processor's own queue never fills: the bound is kept here,
	// where a drop can be counted.
	proc := sdklog.NewBatchProcessor(&retrying{exp: exp, o: o, retry: cfg.Retry},
		sdklog.WithMaxQueueSize(cfg.Queue+batch),
		sdklog.WithExportMaxBatchSize(batch),
		sdklog.WithExportInterval(time.Second),
		sdklog.WithExportTimeout(cfg.Retry+10*time.Second))
	o.provider = sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(proc))
	o.logger = o.provider.Logger("github.com/owlbpf/owl/agent")
	return o, nil
}

// Write queues one record, or counts it dropped when the queue is full.
func (o *OTLP) Write(r *Record) {
	if o.Stats.Queued.Add(1) > o.queue {
		o.Stats.Queued.Add(-1)
		if n := o.Stats.Dropped.Add(1); n&(n-1) == 0 {
			// At 1, 2, 4, 8 ... drops: a line now and then, not one per drop.
			o.log.Warn("otlp queue full: records dropped", "dropped", n)
		}
		return
	}
	o.logger.Emit(context.Background(), o.logRecord(r))
}

func (o *OTLP) logRecord(r *Record) log.Record {
	var lr log.Record
	lr.SetEventName("owl." + r.Tool)
	lr.SetTimestamp(r.Time)
	lr.SetObservedTimestamp(time.Now())
	lr.SetSeverity(log.SeverityInfo)
	lr.SetSeverityText("INFO")
	lr.SetBody(jsonValue(r.Event))
	lr.AddAttributes(Attributes(r)...)
	return lr
}

// Attributes are a record's log attributes: the OCSF classification,
// then semantic-convention names for what the event has.
func Attributes(r *Record) []attribute.KeyValue {
	a := []attribute.KeyValue{
		attribute.String("owl.tool", r.Tool),
		attribute.String("ocsf.version", r.OCSF.Version),
		attribute.Int("ocsf.class_uid", r.OCSF.UID),
		attribute.String("ocsf.class_name", r.OCSF.Name),
		attribute.Int("ocsf.category_uid", r.OCSF.CategoryUID),
		attribute.Int("ocsf.activity_id", r.OCSF.ActivityID),
		attribute.String("ocsf.activity_name", r.OCSF.ActivityName),
		attribute.Int("ocsf.type_uid", r.OCSF.TypeUID),
		attribute.Int("ocsf.status_id", r.OCSF.StatusID),
	}
	if t := r.Task; t != nil {
		a = append(a,
			attribute.Int64("process.pid", int64(t.PID)),
			attribute.Int64("thread.id", int64(t.TID)),
			attribute.String("user.id", strconv.FormatUint(uint64(t.UID), 10)),
			attribute.String("process.executable.name", t.Comm.String()),
			attribute.Int64("owl.mntns_id", int64(t.MntNS)),
		)
	}
	if r.Container.ID != "" {
		a = append(a, attribute.String("container.id", r.Container.ID))
	}
	if r.Container.Runtime != "" {
		a = append(a, attribute.String("container.runtime.name", r.Container.Runtime))
	}
	if r.Container.PodUID != "" {
		a = append(a, attribute.String("k8s.pod.uid", r.Container.PodUID))
	}
	return append(a, endpoints(r)...)
}

// endpoints names a network event's ends as the semantic conventions do:
// source is who sent the first packet (the connecting side; for a reset,
// the side that sent it).
func endpoints(r *Record) []attribute.KeyValue {
	var f map[string]any
	if json.Unmarshal(r.Event, &f) != nil {
		return nil
	}
	var src, dst [2]string
	switch r.Tool {
	case "tcpconnect":
		src, dst = [2]string{"saddr", "sport"}, [2]string{"daddr", "dport"}
	case "tcpaccept":
		src, dst = [2]string{"raddr", "rport"}, [2]string{"laddr", "lport"}
	case "tcpreset":
		src, dst = [2]string{"laddr", "lport"}, [2]string{"raddr", "rport"}
	default:
		return nil
	}
	var a []attribute.KeyValue
	add := func(side string, keys [2]string) {
		if s, ok := f[keys[0]].(string); ok {
			a = append(a, attribute.String(side+".address", s))
		}
		if p, ok := f[keys[1]].(float64); ok {
			a = append(a, attribute.Int64(side+".port", int64(p)))
		}
	}
	add("source", src)
	add("destination", dst)
	a = append(a, attribute.String("network.transport", "tcp"))
	if fam, ok := f["family"].(float64); ok {
		a = append(a, attribute.String("network.type", "ipv"+strconv.Itoa(int(fam))))
	}
	return a
}

// jsonValue converts a JSON document to a log value: objects to maps (keys
// sorted), arrays to slices, integers to ints.
func jsonValue(js []byte) attribute.Value {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return attribute.StringValue(string(js))
	}
	return toValue(v)
}

func toValue(v any) attribute.Value {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		kvs := make([]attribute.KeyValue, 0, len(v))
		for _, k := range keys {
			kvs = append(kvs, attribute.KeyValue{Key: attribute.Key(k), Value: toValue(v[k])})
		}
		return attribute.MapValue(kvs...)
	case []any:
		vs := make([]attribute.Value, len(v))
		for i, x := range v {
			vs[i] = toValue(x)
		}
		return attribute.SliceValue(vs...)
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return attribute.Int64Value(i)
		}
		f, _ := v.Float64()
		return attribute.Float64Value(f)
	case string:
		return attribute.StringValue(v)
	case bool:
		return attribute.BoolValue(v)
	}
	return attribute.Value{} // null
}

// Close exports what is queued (within ctx) and stops.
func (o *OTLP) Close(ctx context.Context) error { return o.provider.Shutdown(ctx) }

// retrying is the exporter the batch processor calls: it retries a batch
// with backoff until it is sent or retry has passed, and counts the
// outcome per record.
type retrying struct {
	exp   sdklog.Exporter
	o     *OTLP
	retry time.Duration
}

func (r *retrying) Export(ctx context.Context, recs []sdklog.Record) error {
	if len(recs) == 0 {
		return nil
	}
	start := time.Now()
	wait := 250 * time.Millisecond
	for {
		err := r.exp.Export(ctx, recs)
		if err == nil {
			r.o.Stats.Exported.Add(uint64(len(recs)))
			r.o.Stats.Queued.Add(-int64(len(recs)))
			return nil
		}
		if ctx.Err() != nil || time.Since(start)+wait > r.retry {
			r.o.Stats.Failed.Add(uint64(len(recs)))
			r.o.Stats.Queued.Add(-int64(len(recs)))
			r.o.log.Error("otlp export failed: records lost", "records", len(recs), "after", time.Since(start).Round(time.Millisecond), "err", err)
			return err
		}
		r.o.log.Warn("otlp export failed, retrying", "records", len(recs), "in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func (r *retrying) Shutdown(ctx context.Context) error   { return r.exp.Shutdown(ctx) }
func (r *retrying) ForceFlush(ctx context.Context) error { return r.exp.ForceFlush(ctx) }
