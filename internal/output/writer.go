package output

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/owlbpf/owl/internal/probe"
)

// Format is how events are printed.
type Format string

const (
	Text Format = "text"
	JSON Format = "json"
)

// ParseFormat accepts the values of -o.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case Text, JSON:
		return Format(s), nil
	}
	return "", fmt.Errorf("output %q: want text or json", s)
}

// chunkSize is when buffered output is passed on to the queue.
const chunkSize = 64 << 10

// Writer prints events of type E as text rows or JSON lines into a buffer;
// Flush passes it on (the reader flushes when the ring is drained) to a
// queue written by its own goroutine; Close waits for the writes.
type Writer[E any] struct {
	format    Format
	table     Table[E]
	trailer   func(b []byte, e *E) []byte
	q         *queue
	buf       []byte          // what Flush will pass on
	events    uint64          // events in buf
	enc       *json.Encoder   // values other than events
	eventJSON *jsonEncoder[E] // events, without reflection per event
}

// NewWriter prints to w in format, with table's columns for text.
func NewWriter[E any](w io.Writer, format Format, table Table[E]) *Writer[E] {
	out := &Writer[E]{format: format, table: table, q: newQueue(w), buf: make([]byte, 0, chunkSize)}
	if format == JSON {
		out.enc = json.NewEncoder((*appender)(&out.buf))
		out.enc.SetEscapeHTML(false)
		out.eventJSON = newJSONEncoder[E]()
	}
	return out
}

// appender is an io.Writer that appends to a byte slice.
type appender []byte

func (a *appender) Write(p []byte) (int, error) {
	*a = append(*a, p...)
	return len(p), nil
}

// OnError sets what to do when writing fails (a closed pipe): called once,
// from the writing goroutine. Set it before the first write.
func (o *Writer[E]) OnError(fn func(error)) { o.q.onError = fn }

// SetTrailer adds lines after each text row, such as an indented stack.
// trailer appends whole lines, newlines included.
func (o *Writer[E]) SetTrailer(trailer func(b []byte, e *E) []byte) {
	o.trailer = trailer
}

// Header prints the column header (text only).
func (o *Writer[E]) Header() {
	if o.format == Text {
		o.buf = o.table.AppendHeader(o.buf)
	}
}

// Event prints one event.
func (o *Writer[E]) Event(e *E) error {
	if o.format == JSON {
		b, err := o.eventJSON.Append(o.buf, e)
		o.buf = b
		if err != nil {
			return err
		}
	} else {
		o.buf = o.table.AppendRow(o.buf, e)
		if o.trailer != nil {
			o.buf = o.trailer(o.buf, e)
		}
	}
	o.events++
	if len(o.buf) >= chunkSize {
		o.pass(false)
	}
	return nil
}

// Value prints any value as a JSON line (summaries, counts) in JSON mode.
func (o *Writer[E]) Value(v any) error {
	return o.enc.Encode(v)
}

// Raw writes text as is (summaries in text mode).
func (o *Writer[E]) Raw(b []byte) {
	o.buf = append(o.buf, b...)
}

// Format reports the output format.
func (o *Writer[E]) Format() Format { return o.format }

// Lost reports what was lost and why: on stderr when anything was, and
// always as {"lost":N,"lost_by_cause":{...}} in JSON, so consumers know
// whether the stream was complete. It first waits until the events printed
// so far are written, or the output is abandoned: events the output queue
// dropped or could not write are added to st as output_queue_full.
func (o *Writer[E]) Lost(stderr io.Writer, st probe.Stats) {
	o.pass(true)
	o.q.sync()
	full, unwritten := o.q.Lost()
	st.QueueFull += full + unwritten
	if o.format == JSON {
		o.buf = append(st.AppendJSON(o.buf), '\n')
	}
	if unwritten > 0 {
		fmt.Fprintf(stderr, "owl: output blocked, stopped waiting for it: %d events not written\n", unwritten)
	}
	if msg := st.Message(); msg != "" {
		fmt.Fprintf(stderr, "owl: %s\n", msg)
	}
}

// Abandon stops waiting for the output, as when its reader stalls for
// good: Lost, Close and the writes that wait return at once, and the
// events not written by then are counted as dropped. Safe to call from
// any goroutine.
func (o *Writer[E]) Abandon() { o.q.abandon() }

// Stalled tells whether the output has been blocked in one write for at
// least d.
func (o *Writer[E]) Stalled(d time.Duration) bool { return o.q.stalled(d) }

// Flush passes buffered output on to be written. Only buffers holding
// events are dropped (and counted) when the queue is full.
func (o *Writer[E]) Flush() error {
	o.pass(o.events == 0)
	return o.q.error()
}

func (o *Writer[E]) pass(wait bool) {
	if len(o.buf) == 0 {
		return
	}
	// A copy of the used part: one allocation of what is written, and
	// buf keeps its capacity.
	o.q.put(chunk{b: append([]byte(nil), o.buf...), events: o.events}, wait)
	o.buf, o.events = o.buf[:0], 0
}

// Close flushes and waits until all output is written, or the output is
// abandoned. Nothing may be printed afterwards.
func (o *Writer[E]) Close() error {
	o.pass(true)
	return o.q.Close()
}
