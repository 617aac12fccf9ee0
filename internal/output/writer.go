package output

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
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

// Writer prints events of type E as text rows or JSON lines through one
// buffer; Flush passes it on (the reader flushes when the ring is drained)
// to a queue written by its own goroutine; Close waits for the writes.
type Writer[E any] struct {
	format  Format
	table   Table[E]
	trailer func(b []byte, e *E) []byte
	q       *queue
	w       *bufio.Writer
	enc     *json.Encoder
	buf     []byte
}

// NewWriter prints to w in format, with table's columns for text.
func NewWriter[E any](w io.Writer, format Format, table Table[E]) *Writer[E] {
	q := &queue{w: w}
	bw := bufio.NewWriterSize(q, 64*1024)
	out := &Writer[E]{format: format, table: table, q: q, w: bw, buf: make([]byte, 0, 256)}
	if format == JSON {
		out.enc = json.NewEncoder(bw)
		out.enc.SetEscapeHTML(false)
	}
	return out
}

// SetTrailer adds lines after each text row, such as an indented stack.
// trailer appends whole lines, newlines included.
func (o *Writer[E]) SetTrailer(trailer func(b []byte, e *E) []byte) {
	o.trailer = trailer
}

// Header prints the column header (text only).
func (o *Writer[E]) Header() {
	if o.format == Text {
		o.buf = o.table.AppendHeader(o.buf[:0])
		o.w.Write(o.buf)
	}
}

// Event prints one event.
func (o *Writer[E]) Event(e *E) error {
	if o.format == JSON {
		return o.enc.Encode(e)
	}
	o.buf = o.table.AppendRow(o.buf[:0], e)
	if o.trailer != nil {
		o.buf = o.trailer(o.buf, e)
	}
	_, err := o.w.Write(o.buf)
	return err
}

// Value prints any value as a JSON line (summaries, counts) in JSON mode.
func (o *Writer[E]) Value(v any) error {
	return o.enc.Encode(v)
}

// Raw writes text as is (summaries in text mode).
func (o *Writer[E]) Raw(b []byte) {
	o.w.Write(b)
}

// Format reports the output format.
func (o *Writer[E]) Format() Format { return o.format }

// Lost reports events dropped by the BPF side: on stderr when there were
// any, and always as {"lost": N} in JSON so consumers know the stream was
// complete.
func (o *Writer[E]) Lost(stderr io.Writer, n uint64) {
	if o.format == JSON {
		fmt.Fprintf(o.w, "{\"lost\":%d}\n", n)
	}
	if n > 0 {
		fmt.Fprintf(stderr, "owl: %d events lost: the ring buffer was full\n", n)
	}
}

// Flush passes buffered output on to be written; it blocks only when 32
// MiB are already waiting.
func (o *Writer[E]) Flush() error { return o.w.Flush() }

// Close flushes and waits until all output is written. Nothing may be
// printed afterwards.
func (o *Writer[E]) Close() error {
	err := o.w.Flush()
	if cerr := o.q.Close(); err == nil {
		err = cerr
	}
	return err
}
