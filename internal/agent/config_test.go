package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func known(n string) bool { return slices.Contains(DefaultTools, n) || n == "opensnoop" }

// File, then environment, then flags: each later one wins.
func TestConfigPrecedence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "owl.yaml")
	err := os.WriteFile(path, []byte(`tools:
  - execsnoop
  - {name: tcpconnect, pid: 42, ports: [443, 80]}
otlp-endpoint: http://file:4318
json: /var/log/owl.json
memory-budget-mb: 32
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	if err := cfg.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT":      "http://otel:4318",
		"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "grpc",
		"OWL_AGENT_JSON":                   "-",
		"NODE_NAME":                        "node-7",
	}
	if err := cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Set("memory-budget-mb", "8"); err != nil { // a flag
		t.Fatal(err)
	}
	if err := cfg.Check(known); err != nil {
		t.Fatal(err)
	}
	want := []ToolConfig{{Name: "execsnoop"}, {Name: "tcpconnect", PID: 42, Ports: []uint16{443, 80}}}
	if len(cfg.Tools) != 2 || cfg.Tools[0].key() != want[0].key() || cfg.Tools[1].key() != want[1].key() {
		t.Errorf("tools %+v", cfg.Tools)
	}
	if cfg.OTLPEndpoint != "http://otel:4318" || cfg.OTLPProtocol != "grpc" || cfg.JSON != "-" ||
		cfg.NodeName != "node-7" || cfg.MemoryBudgetMB != 8 || cfg.OTLPRetry != time.Minute {
		t.Errorf("config %+v", cfg)
	}
	// OWL_AGENT_ wins over OTEL_.
	env["OWL_AGENT_OTLP_ENDPOINT"] = "http://owl:4318"
	cfg.ApplyEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if cfg.OTLPEndpoint != "http://owl:4318" {
		t.Errorf("endpoint %q", cfg.OTLPEndpoint)
	}
}

func TestConfigErrors(t *testing.T) {
	if cfg := Defaults(); cfg.Check(known) == nil {
		t.Error("a config without a sink accepted")
	}
	for _, c := range []struct{ key, value string }{
		{"tools", "tcpconnect,nosuchtool"},
		{"tools", "execsnoop,execsnoop"},
		{"otlp-endpoint", "127.0.0.1:4318"},
		{"otlp-protocol", "udp"},
		{"memory-budget-mb", "1"},
		{"otlp-retry", "0s"},
	} {
		cfg := Defaults()
		cfg.JSON = "-"
		if err := cfg.Set(c.key, c.value); err == nil {
			err = cfg.Check(known)
			if err == nil {
				t.Errorf("%s=%s accepted", c.key, c.value)
			}
		}
	}
	cfg := Defaults()
	if err := cfg.Set("memory-budget-mb", "many"); err == nil {
		t.Error("memory-budget-mb=many accepted")
	}
	path := filepath.Join(t.TempDir(), "owl.yaml")
	os.WriteFile(path, []byte("otlp-endpont: http://x:1\n"), 0o644)
	if err := cfg.ReadFile(path); err == nil {
		t.Error("a misspelt key in the file accepted")
	}
}

// The rings share half the budget (each counted twice: mapped twice),
// the queue the other half.
func TestBudget(t *testing.T) {
	cfg := Defaults()
	cfg.MemoryBudgetMB = 24
	if got := cfg.ringBytes(8); got != 512<<10 {
		t.Errorf("8 tools in 24 MiB: ring %d", got)
	}
	if got := cfg.ringBytes(1); got != 4<<20 {
		t.Errorf("1 tool in 24 MiB: ring %d", got)
	}
	if got := cfg.queueRecords() * recordBytes; got != 12<<20 {
		t.Errorf("queue %d bytes", got)
	}
}
