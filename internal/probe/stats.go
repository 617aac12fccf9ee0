package probe

import (
	"fmt"
	"strings"
)

// Stats counts what a source delivered and what it lost, by cause.
type Stats struct {
	Events uint64 // decoded and handed to the consumer
	// Events lost, by cause.
	RingFull       uint64 // the ring buffer had no room
	MapFull        uint64 // a count or pending table was full
	PendingEvicted uint64 // an LRU pending table evicted an event waiting for its end
	QueueFull      uint64 // the output queue was full (set by the output layer)
	// UnpairedReturn counts returns that found no start to pair with
	// (funclatency): calls not timed because their start was evicted from
	// the LRU table of calls in flight (more calls in flight than it
	// holds) or, seen only by RET uprobes (Go), because they began before
	// tracing did. Read from the per-CPU counter UnpairedMap of tools that
	// have one.
	UnpairedReturn uint64
	// Parts of events lost, the events delivered without them (not in
	// Lost): a stack that could not be taken; an entry of a pending
	// table evicted where the event does not need it to be delivered
	// (Options.PendingPartial: uthreads' start routine of a thread, shown
	// at its stop).
	StackUnavailable uint64
	PendingPartial   uint64
}

// Lost is the number of whole events lost.
func (s Stats) Lost() uint64 {
	return s.RingFull + s.MapFull + s.PendingEvicted + s.QueueFull + s.UnpairedReturn
}

// UnpairedMap names the per-CPU array (one counter) of a tool whose
// returns can miss their start: Stats.UnpairedReturn.
const UnpairedMap = "owl_unpaired"

// Cause is one named counter of Stats.
type Cause struct {
	Name string // snake_case, as in JSON and metrics
	N    uint64
	What string // for messages: "ring buffer full"
	// Part: it counts parts missing from delivered events, not lost
	// events (not summed by Lost).
	Part bool
}

// Causes lists every cause, in a fixed order, zero or not.
func (s Stats) Causes() []Cause {
	return []Cause{
		{"ring_full", s.RingFull, "ring buffer full", false},
		{"map_full", s.MapFull, "table full", false},
		{"pending_evicted", s.PendingEvicted, "evicted from the pending table", false},
		{"output_queue_full", s.QueueFull, "output queue full", false},
		{"unpaired_return", s.UnpairedReturn, "returns without a start (starts evicted from the table of calls in flight, or Go calls begun before tracing)", false},
		{"stack_unavailable", s.StackUnavailable, "stacks unavailable (events kept)", true},
		{"pending_partial", s.PendingPartial, "evicted from the pending table (events kept without what it held)", true},
	}
}

// AppendJSON appends {"lost":N,"lost_by_cause":{...}} without a newline.
func (s Stats) AppendJSON(b []byte) []byte {
	b = fmt.Appendf(b, `{"lost":%d,"lost_by_cause":{`, s.Lost())
	for i, c := range s.Causes() {
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%q:%d", c.Name, c.N)
	}
	return append(b, "}}"...)
}

// Message says what was lost and why, for stderr; "" when nothing was.
func (s Stats) Message() string {
	var parts []string
	for _, c := range s.Causes() {
		if c.N > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.N, c.What))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("%d events lost: %s", s.Lost(), strings.Join(parts, ", "))
}
