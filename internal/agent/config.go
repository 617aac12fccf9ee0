package agent

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the agent's configuration: the YAML file (--config), where
// every key is also a flag (--KEY) and an environment variable
// (OWL_AGENT_KEY, upper case, dashes as underscores). Flags win over the
// environment, the environment over the file.
type Config struct {
	// Tools to run, with their filters; empty: DefaultTools.
	Tools []ToolConfig `yaml:"tools"`
	// JSON is a file to write JSON lines to, "-" for stdout, "" for none.
	JSON string `yaml:"json"`
	// JSONMaxSizeMB rotates the JSON file at this size (MiB); backups
	// kept: JSONMaxBackups.
	JSONMaxSizeMB  int `yaml:"json-max-size-mb"`
	JSONMaxBackups int `yaml:"json-max-backups"`
	// OTLPEndpoint is where OTLP logs go: http(s)://HOST:PORT (a path of
	// /v1/logs is added for HTTP when there is none); "" for none.
	OTLPEndpoint string `yaml:"otlp-endpoint"`
	// OTLPProtocol is http/protobuf (default) or grpc.
	OTLPProtocol string `yaml:"otlp-protocol"`
	// OTLPRetry is how long one batch is retried, with backoff, before it
	// is counted as failed.
	OTLPRetry time.Duration `yaml:"otlp-retry"`
	// MetricsAddress serves /metrics, /healthz and /readyz; "" for none.
	MetricsAddress string `yaml:"metrics-address"`
	// HostName overrides the host's name (default: the kernel's).
	HostName string `yaml:"host-name"`
	// NodeName is the Kubernetes node (the downward API's spec.nodeName,
	// passed as NODE_NAME in the DaemonSet).
	NodeName string `yaml:"node-name"`
	// MemoryBudgetMB bounds the rings of all tools and the export queue
	// together (MiB): half for the rings, half for the queue.
	MemoryBudgetMB int `yaml:"memory-budget-mb"`
	// Detect runs the detectors (owl detect) beside the sinks: "default"
	// for the built-in thresholds, or a detect config FILE; "" for none.
	Detect string `yaml:"detect"`
}

// ToolConfig is one tool to run and the filters it applies in the kernel.
// In YAML a tool is its name, or a map with its name and filters.
type ToolConfig struct {
	Name  string   `yaml:"name"`
	PID   int      `yaml:"pid,omitempty"`
	UID   *int     `yaml:"uid,omitempty"`
	MntNS uint32   `yaml:"mntns,omitempty"`
	Ports []uint16 `yaml:"ports,omitempty"`
}

// UnmarshalYAML accepts "tcpconnect" as well as {name: tcpconnect, ...}.
func (t *ToolConfig) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*t = ToolConfig{Name: n.Value}
		return nil
	}
	type plain ToolConfig
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*t = ToolConfig(p)
	return nil
}

// key tells apart two configurations of a tool: a tool whose key is the
// same after a reload keeps running.
func (t ToolConfig) key() string { return fmt.Sprintf("%+v", t.normal()) }

func (t ToolConfig) normal() ToolConfig {
	if t.UID != nil && *t.UID < 0 {
		t.UID = nil
	}
	return t
}

// DefaultTools are the tools the agent runs when the config names none:
// connections, execs, identity and privilege changes, logins and module
// loads. A tool this kernel cannot run (modsnoop without modules) is
// reported and the others run.
var DefaultTools = []string{"tcpconnect", "tcpaccept", "tcpreset", "execsnoop", "setuids", "capable", "pamsnoop", "modsnoop"}

// Defaults are the values of keys not set anywhere.
func Defaults() Config {
	return Config{JSONMaxSizeMB: 100, JSONMaxBackups: 3, OTLPProtocol: "http/protobuf",
		OTLPRetry: time.Minute, MemoryBudgetMB: 24}
}

// ReadFile reads a YAML config onto c; unknown keys are errors.
func (c *Config) ReadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	// An empty file decodes to io.EOF: it sets nothing.
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Keys lists the config's scalar keys, in file order: the flags and
// environment variables the command layer makes.
func Keys() []string {
	return []string{"tools", "json", "json-max-size-mb", "json-max-backups", "otlp-endpoint", "otlp-protocol",
		"otlp-retry", "metrics-address", "host-name", "node-name", "memory-budget-mb",
		"detect"}
}

// Set sets one key from its text (a flag or environment variable):
// "tools" is a comma-separated list of names.
func (c *Config) Set(key, value string) error {
	var err error
	atoi := func(dst *int) {
		*dst, err = strconv.Atoi(value)
	}
	switch key {
	case "tools":
		c.Tools = nil
		for name := range strings.SplitSeq(value, ",") {
			if name = strings.TrimSpace(name); name != "" {
				c.Tools = append(c.Tools, ToolConfig{Name: name})
			}
		}
	case "json":
		c.JSON = value
	case "json-max-size-mb":
		atoi(&c.JSONMaxSizeMB)
	case "json-max-backups":
		atoi(&c.JSONMaxBackups)
	case "otlp-endpoint":
		c.OTLPEndpoint = value
	case "otlp-protocol":
		c.OTLPProtocol = value
	case "otlp-retry":
		c.OTLPRetry, err = time.ParseDuration(value)
	case "metrics-address":
		c.MetricsAddress = value
	case "host-name":
		c.HostName = value
	case "node-name":
		c.NodeName = value
	case "memory-budget-mb":
		atoi(&c.MemoryBudgetMB)
	case "detect":
		c.Detect = value
	default:
		return fmt.Errorf("unknown key %q", key)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return nil
}

// ApplyEnv sets what the environment gives, through lookup (os.LookupEnv):
// OWL_AGENT_KEY for every key, and the OpenTelemetry variables
// OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT and OTEL_EXPORTER_OTLP_[LOGS_]PROTOCOL
// (the signal-specific one wins), below OWL_AGENT_OTLP_*. NODE_NAME, as
// the DaemonSet passes it from the downward API, sets node-name.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) error {
	for _, v := range [][2]string{
		{"OTEL_EXPORTER_OTLP_ENDPOINT", "otlp-endpoint"},
		{"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "otlp-endpoint"},
		{"OTEL_EXPORTER_OTLP_PROTOCOL", "otlp-protocol"},
		{"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "otlp-protocol"},
		{"NODE_NAME", "node-name"},
	} {
		if s, ok := lookup(v[0]); ok && s != "" {
			if err := c.Set(v[1], s); err != nil {
				return fmt.Errorf("%s: %w", v[0], err)
			}
		}
	}
	for _, k := range Keys() {
		name := EnvName(k)
		if s, ok := lookup(name); ok {
			if err := c.Set(k, s); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// EnvName is the environment variable of a key: OWL_AGENT_OTLP_ENDPOINT.
func EnvName(key string) string {
	return "OWL_AGENT_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// Check validates the config: bad values are the user's to fix.
func (c *Config) Check(known func(string) bool) error {
	seen := map[string]bool{}
	for _, t := range c.Tools {
		if !known(t.Name) {
			return fmt.Errorf("tools: unknown tool %q", t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("tools: %s is listed twice", t.Name)
		}
		seen[t.Name] = true
	}
	if c.JSON == "" && c.OTLPEndpoint == "" && c.MetricsAddress == "" {
		return errors.New("no sink: give json, otlp-endpoint or metrics-address (flags --json, --otlp-endpoint, --metrics-address)")
	}
	if c.OTLPEndpoint != "" {
		u, err := url.Parse(c.OTLPEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("otlp-endpoint: want http://HOST:PORT or https://HOST:PORT, not %q", c.OTLPEndpoint)
		}
	}
	if !slices.Contains([]string{"http/protobuf", "grpc"}, c.OTLPProtocol) {
		return fmt.Errorf("otlp-protocol: want http/protobuf or grpc, not %q", c.OTLPProtocol)
	}
	if c.MemoryBudgetMB < 4 {
		return fmt.Errorf("memory-budget-mb: at least 4, not %d", c.MemoryBudgetMB)
	}
	if c.JSONMaxSizeMB < 1 || c.JSONMaxBackups < 0 {
		return fmt.Errorf("json-max-size-mb and json-max-backups: want ≥ 1 and ≥ 0")
	}
	if c.OTLPRetry <= 0 {
		return fmt.Errorf("otlp-retry: want a positive duration such as 1m")
	}
	return nil
}

// ToolList is the tools to run: the configured ones, or the default set.
func (c *Config) ToolList() []ToolConfig {
	if len(c.Tools) > 0 {
		return c.Tools
	}
	var ts []ToolConfig
	for _, n := range DefaultTools {
		ts = append(ts, ToolConfig{Name: n})
	}
	return ts
}
