// Package deploy holds owl's deployment files: the Kubernetes manifests,
// the systemd unit and the collector the tests build. Its test decodes
// every manifest strictly with the Kubernetes API types and checks the
// security settings the files promise.
package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/owlbpf/owl/internal/agent"
	"github.com/owlbpf/owl/internal/tools"
)

// theCaps is the capability set of the DaemonSet and the unit file: what
// owl agent needs (internal/agent's TestLeastCapabilities runs it with
// these only).
var theCaps = []string{"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH"}

func decodeStrict(t *testing.T, path string, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestManifestsDecodeStrictly(t *testing.T) {
	paths, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var ds *appsv1.DaemonSet
	var cm *corev1.ConfigMap
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for doc := range bytes.SplitSeq(data, []byte("\n---\n")) {
			var meta struct {
				Kind       string `json:"kind"`
				APIVersion string `json:"apiVersion"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 DaemonSet":
				ds = &appsv1.DaemonSet{}
				decodeStrict(t, path, doc, ds)
			case "v1 ConfigMap":
				cm = &corev1.ConfigMap{}
				decodeStrict(t, path, doc, cm)
			case "v1 Namespace":
				decodeStrict(t, path, doc, &corev1.Namespace{})
			default:
				t.Errorf("%s: unexpected %s %s", path, meta.APIVersion, meta.Kind)
			}
		}
	}
	if ds == nil || cm == nil {
		t.Fatal("want a DaemonSet and a ConfigMap")
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID: the agent attributes containers through the host's /proc")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("security context %+v: want not privileged, no escalation, read-only root", sc)
	}
	var add, drop []string
	if sc != nil && sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Add {
			add = append(add, string(c))
		}
		for _, c := range sc.Capabilities.Drop {
			drop = append(drop, string(c))
		}
	}
	if !slices.Equal(add, theCaps) || !slices.Equal(drop, []string{"ALL"}) {
		t.Errorf("capabilities add %v drop %v, want add %v drop [ALL]", add, drop, theCaps)
	}
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "9464" {
		t.Errorf("scrape annotations %v", ann)
	}
	var nodeFromAPI bool
	for _, e := range c.Env {
		nodeFromAPI = nodeFromAPI || e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}
	if !nodeFromAPI {
		t.Error("NODE_NAME from the downward API (spec.nodeName) missing")
	}
	// The ConfigMap's config is one the agent accepts.
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["agent.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := agent.Defaults()
	if err := cfg.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(func(n string) bool { return tools.Find(n) != nil }); err != nil {
		t.Errorf("ConfigMap agent.yaml: %v", err)
	}
	if want := "--config"; !slices.Contains(c.Args, want) {
		t.Errorf("args %v", c.Args)
	}
}

// The unit file gives the agent the DaemonSet's capabilities and no way to
// gain more.
func TestSystemdUnit(t *testing.T) {
	data, err := os.ReadFile("systemd/owl-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			keys[k] = v
		}
	}
	var want []string
	for _, c := range theCaps {
		want = append(want, "CAP_"+c)
	}
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		if got := strings.Fields(keys[k]); !slices.Equal(got, want) {
			t.Errorf("%s=%v, want %v", k, got, want)
		}
	}
	if keys["NoNewPrivileges"] != "yes" {
		t.Errorf("NoNewPrivileges=%q", keys["NoNewPrivileges"])
	}
	if !strings.Contains(keys["ExecStart"], " agent ") || !strings.Contains(keys["ExecReload"], "-HUP") {
		t.Errorf("ExecStart=%q ExecReload=%q", keys["ExecStart"], keys["ExecReload"])
	}
}
