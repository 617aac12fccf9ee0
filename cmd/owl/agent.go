package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/agent"
	"github.com/owlbpf/owl/internal/agent/sinks"
	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// stopGrace is how long SIGTERM waits for queued records to be exported.
const stopGrace = 20 * time.Second

// agentCommand is `owl agent`: the command layer of internal/agent (flags,
// environment, config file, signals).
func agentCommand(registry []tool.Tool) *cobra.Command {
	var configPath string
	var verbose bool
	flags := map[string]*string{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run many tools in one process, exporting to OTLP, Prometheus and JSON",
		Long: `owl agent runs a set of tools at once (default: ` + fmt.Sprint(agent.DefaultTools) + `)
and turns each event into one record: the tool's own fields, the task, the
host (host.name, boot id, Kubernetes node), the container (id and runtime
from the cgroup path of the pid; the pod UID on Kubernetes; the mount
namespace) and an OCSF ` + "1.3.0" + ` classification (class and activity).

Records go to any combination of sinks:
  --json FILE|-        JSON lines, to stdout or a file rotated by size (a
                       device or fifo, such as /dev/null, is not rotated)
  --otlp-endpoint URL  OTLP logs over HTTP/protobuf or gRPC (--otlp-protocol),
                       batched, retried with backoff, bounded queue
  --metrics-address A  Prometheus /metrics, /healthz and /readyz

Every key of the YAML config file (--config) is also a flag below and an
environment variable OWL_AGENT_KEY (upper case, dashes as underscores);
flags win over the environment, which wins over the file. The OpenTelemetry
variables OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT and _PROTOCOL are honoured
(below OWL_AGENT_OTLP_*), NODE_NAME sets node-name. In the file, tools is a
list of names or of maps with filters: {name: tcpconnect, pid: N, uid: N,
mntns: N, ports: [443]}.

SIGHUP reads the config again: tools whose settings did not change keep
running without losing an event, removed ones are drained and stopped, new
ones start (sink settings apply at the next start). SIGTERM or SIGINT stops
the tools, drains their rings and exports what is queued (up to 20 s).
A tool that cannot run on this kernel is logged, exported as owl_tool_up 0
and listed in /readyz; the others run.

--detect default|FILE runs owl detect's rules over the tools' events: each
finding state is a JSON line (an OCSF Detection Finding, class 2004), an
OTLP log record owl.finding whose severity follows the finding's (Low WARN,
Medium ERROR, High ERROR3, Critical FATAL), and each new finding counts in
owl_detections_total{rule}. The rules read the default tools' events.`,
		Example: `  owl agent --json -                                  # default tools, JSON lines on stdout
  owl agent --otlp-endpoint http://127.0.0.1:4318 --metrics-address 127.0.0.1:9464
  owl agent --otlp-endpoint http://127.0.0.1:4317 --otlp-protocol grpc --tools execsnoop,tcpconnect
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 owl agent --tools tcpconnect
  owl agent --config agent.yaml                       # YAML keys as the flags below
  owl agent --json - --detect default                 # events and detection findings`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Info is not free (a tool may resolve its target's symbols
			// in it): once per tool, not at every look-up.
			byName := make(map[string]tool.Tool, len(registry))
			for _, t := range registry {
				byName[t.Info().Name] = t
			}
			find := func(name string) tool.Tool { return byName[name] }
			load := func() (agent.Config, error) {
				cfg := agent.Defaults()
				if configPath != "" {
					if err := cfg.ReadFile(configPath); err != nil {
						return cfg, err
					}
				}
				if err := cfg.ApplyEnv(os.LookupEnv); err != nil {
					return cfg, err
				}
				for _, k := range agent.Keys() {
					if cmd.Flags().Changed(k) {
						if err := cfg.Set(k, *flags[k]); err != nil {
							return cfg, err
						}
					}
				}
				return cfg, cfg.Check(func(n string) bool { return find(n) != nil })
			}
			cfg, err := load()
			if err != nil {
				return &cli.UsageError{Err: err}
			}
			detector, setAgent, err := agentDetector(cfg.Detect)
			if err != nil {
				return &cli.UsageError{Err: err}
			}
			prefer, err := cli.HooksEnv()
			if err != nil {
				return err
			}
			if err := cli.Privileged(0, 0); err != nil { // each tool checks its own set when it opens
				return err
			}
			if err := probe.EnsureTracefs(); err != nil {
				return err
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctx := cmd.Context()
			a, err := agent.New(ctx, cfg, agent.Options{Find: find, Log: logger, Prefer: prefer, Version: version(), Detector: detector})
			var pathErr *sinks.PathError
			if errors.As(err, &pathErr) {
				return &cli.UsageError{Err: err}
			}
			if err != nil {
				return err
			}
			setAgent(a)
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sigs)
			a.Start()
			for sig := range sigs {
				if sig != syscall.SIGHUP {
					break
				}
				cfg, err := load()
				if err != nil {
					logger.Error("reload: config not applied", "err", err)
					continue
				}
				a.Reload(cfg)
			}
			stop, cancel := context.WithTimeout(context.Background(), stopGrace)
			defer cancel()
			err = a.Stop(stop)
			logger.Info("stopped")
			return err
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML config `FILE`")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "log each tool's hook and other details")
	for _, k := range agent.Keys() {
		flags[k] = cmd.Flags().String(k, "", agentFlagUsage[k])
	}
	return cmd
}

// agentFlagUsage documents each config key as a flag.
var agentFlagUsage = map[string]string{
	"tools":            "comma-separated tools to run (default: the default set)",
	"json":             "write JSON lines to `FILE` (- for stdout; a device or fifo is written without rotation)",
	"json-max-size-mb": "rotate the JSON file at this size in MiB (default 100)",
	"json-max-backups": "rotated JSON files to keep (default 3)",
	"otlp-endpoint":    "send OTLP logs to `URL` (http://HOST:4318 or, with grpc, http://HOST:4317)",
	"otlp-protocol":    "http/protobuf (default) or grpc",
	"otlp-retry":       "retry a batch this long before counting it failed (default 1m)",
	"metrics-address":  "serve /metrics, /healthz, /readyz on `HOST:PORT`",
	"host-name":        "host name in records (default: the kernel's)",
	"node-name":        "Kubernetes node name (default: env NODE_NAME)",
	"memory-budget-mb": "MiB for all rings and the export queue (default 24)",
	"detect":           "run owl detect's rules: default, or a detect config `FILE`; findings go to the sinks",
}
