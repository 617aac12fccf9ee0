package sinks

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"time"

	"github.com/owlbpf/owl/internal/agent/container"
	"github.com/owlbpf/owl/internal/agent/ocsf"
	"github.com/owlbpf/owl/internal/event"
)

// Host is who the agent runs on, the same in every record.
type Host struct {
	Name   string `json:"name"`
	BootID string `json:"boot_id"`
	// NodeName is the Kubernetes node, when on one.
	NodeName string `json:"node_name,omitempty"`
}

// ReadHost fills a Host from the kernel (hostname of the agent's UTS
// namespace, boot id) unless name overrides it.
func ReadHost(name, node string) Host {
	h := Host{Name: name, NodeName: node}
	if h.Name == "" {
		h.Name, _ = os.Hostname()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		h.BootID = strings.TrimSpace(string(b))
	}
	return h
}

// Record is one event as the sinks get it: the tool's event as JSON (its
// own typed fields and the task part), and what the agent adds.
type Record struct {
	Tool string
	// Event is the tool's event as JSON, one object.
	Event []byte
	// Task is the event's task part; nil for events without a task
	// (tcpreset).
	Task      *event.Task
	Time      time.Time
	Host      *Host
	Container container.Info
	OCSF      ocsf.Shape
}

// containerJSON is the container part of a JSON line.
type containerJSON struct {
	container.Info
	MntNS uint32 `json:"mntns_id,omitempty"`
}

// AppendJSON appends the record as one JSON object and a newline: the
// event's own fields first, then "tool", "host", "container" and "ocsf".
func (r *Record) AppendJSON(b []byte) []byte {
	ev := bytes.TrimSpace(r.Event)
	if len(ev) < 2 || ev[len(ev)-1] != '}' {
		ev = []byte("{}")
	}
	b = append(b, ev[:len(ev)-1]...)
	if len(ev) > 2 {
		b = append(b, ',')
	}
	b = append(b, `"tool":`...)
	b, _ = appendJSON(b, r.Tool)
	b = append(b, `,"host":`...)
	b, _ = appendJSON(b, r.Host)
	if r.Task != nil {
		b = append(b, `,"container":`...)
		b, _ = appendJSON(b, containerJSON{r.Container, r.Task.MntNS})
	}
	b = append(b, `,"ocsf":`...)
	b, _ = appendJSON(b, r.OCSF)
	return append(b, "}\n"...)
}

func appendJSON(b []byte, v any) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...), err
	}
	return append(b, js...), nil
}
