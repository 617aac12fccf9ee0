package tool

import (
	"context"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
)

type ev struct {
	event.Task
	Port    uint16 `json:"port"`
	Outcome string `json:"outcome,omitempty"`
	hidden  int
	Skip    int `json:"-"`
}

type countRow struct {
	Addr  string `json:"addr"`
	Count uint64 `json:"count"`
}

var testSpec = Spec[struct{}, ev]{
	Name:    "x",
	Summary: "Trace x",
	Long:    "Trace x, as the book's x.\n",
	Default: func() struct{} { return struct{}{} },
	Hooks: func(struct{}) []probe.Hook {
		return []probe.Hook{{Kind: probe.Tracepoint, Name: "tracepoint a:b"}, {Kind: probe.Kprobe, Name: "kprobe f"}}
	},
	Outputs: []Output{{Flag: "-c", Value: countRow{}}},
}

func TestJSONFieldsFlattenTheTask(t *testing.T) {
	got := JSONFields(reflect.TypeOf(ev{}))
	want := []string{"time", "pid", "tid", "uid", "comm", "cgroup_id", "mntns_id", "port", "outcome"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestHelpEndsWithHooksAndFields(t *testing.T) {
	want := "Trace x, as the book's x.\n\nHooks, in order of preference: tracepoint a:b → kprobe f.\n\n" +
		"JSON fields: time, pid, tid, uid, comm, cgroup_id, mntns_id, port, outcome. With -c: addr, count."
	if got := testSpec.Help(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestEveryReportsAtIntervalsAndAtTheEnd(t *testing.T) {
	var n atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Millisecond)
	defer cancel()
	Every(ctx, 50*time.Millisecond, func(time.Time) error { n.Add(1); return nil })
	if got := n.Load(); got != 3 { // at 50 and 100 ms, then the end
		t.Errorf("%d reports, want 3", got)
	}
	n.Store(0)
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	Every(ctx, 0, func(time.Time) error { n.Add(1); return nil })
	if n.Load() != 1 {
		t.Errorf("interval 0: %d reports, want only the final one", n.Load())
	}
}
