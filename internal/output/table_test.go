package output

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/probe"
)

type row struct {
	N    uint32 `json:"n"`
	Name string `json:"name"`
}

var tab = Table[row]{
	{Name: "N", Width: 4, Append: func(b []byte, r *row) []byte { return Uint(b, r.N) }},
	{Name: "NAME", Width: 5, Trunc: true, Append: func(b []byte, r *row) []byte { return append(b, r.Name...) }},
	{Name: "LAST", Append: func(b []byte, r *row) []byte { return append(b, r.Name...) }},
}

func TestTableAlignsHeaderAndRows(t *testing.T) {
	got := string(tab.AppendHeader(nil)) + string(tab.AppendRow(nil, &row{N: 123456, Name: "abcdefgh"}))
	want := "N    NAME  LAST\n123456 abcde abcdefgh\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWriterText(t *testing.T) {
	var out, errb bytes.Buffer
	w := NewWriter(&out, Text, tab)
	w.Header()
	w.Event(&row{N: 1, Name: "x"})
	w.Lost(&errb, probe.Stats{})
	w.Close()
	if out.String() != "N    NAME  LAST\n1    x     x\n" {
		t.Errorf("text: %q", out.String())
	}
	if errb.Len() != 0 {
		t.Errorf("no loss, yet stderr has %q", errb.String())
	}
	w.Lost(&errb, probe.Stats{RingFull: 5, MapFull: 2})
	if !strings.Contains(errb.String(), "7 events lost: 5 ring buffer full, 2 table full") {
		t.Errorf("loss not reported: %q", errb.String())
	}
}

func TestWriterJSON(t *testing.T) {
	var out, errb bytes.Buffer
	w := NewWriter(&out, JSON, tab)
	w.Header()
	w.Event(&row{N: 1, Name: "<x>"})
	// Parts missing from delivered events are counted, not summed as lost.
	w.Lost(&errb, probe.Stats{RingFull: 1, PendingEvicted: 2, PendingPartial: 4})
	w.Close()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want an event line and a lost line, got %q", out.String())
	}
	var r row
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil || r.Name != "<x>" {
		t.Errorf("event line %q: %v", lines[0], err)
	}
	var lost struct {
		Lost        *uint64
		LostByCause map[string]uint64 `json:"lost_by_cause"`
	}
	if err := json.Unmarshal([]byte(lines[1]), &lost); err != nil || lost.Lost == nil || *lost.Lost != 3 ||
		lost.LostByCause["ring_full"] != 1 || lost.LostByCause["pending_evicted"] != 2 ||
		lost.LostByCause["pending_partial"] != 4 || len(lost.LostByCause) != 7 {
		t.Errorf("lost line %q: %v", lines[1], err)
	}
}

func TestHelpers(t *testing.T) {
	if got := string(Seconds(nil, 1500*time.Millisecond)); got != "1.500" {
		t.Errorf("Seconds: %q", got)
	}
	if got := string(AppendClock(nil, time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local))); got != "03:04:05" {
		t.Errorf("Clock: %q", got)
	}
	if _, err := ParseFormat("yaml"); err == nil {
		t.Error("ParseFormat accepted yaml")
	}
}
