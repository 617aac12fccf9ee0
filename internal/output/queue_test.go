package output

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/probe"
)

// gate is a writer that blocks until opened, like a stalled pipe.
type gate struct {
	open chan struct{}
	buf  bytes.Buffer
}

func (g *gate) Write(p []byte) (int, error) {
	<-g.open
	return g.buf.Write(p)
}

// A stalled output must not stall the writer (and so the ring reader) until
// the queue is full; Close then waits for every byte.
func TestQueueKeepsGoingWhileOutputStalls(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	q := newQueue(g)
	chunk64k := bytes.Repeat([]byte("x"), 64<<10)
	wrote := make(chan struct{})
	go func() {
		for i := 0; i < 100; i++ { // 6.4 MB, well under the cap
			q.put(chunk{b: chunk64k, events: 1}, false)
		}
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("put blocked on a stalled output before the queue was full")
	}
	close(g.open)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if g.buf.Len() != 100*len(chunk64k) || q.Dropped() != 0 {
		t.Errorf("wrote %d bytes, dropped %d events; want %d and 0", g.buf.Len(), q.Dropped(), 100*len(chunk64k))
	}
}

// Past the cap, events are dropped and counted, never silently; lines
// that are not events wait for room.
func TestQueueFullCountsDroppedEvents(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	var got probeStats
	w := NewWriter(g, JSON, Table[row]{})
	w.OnError(func(error) {})
	w.q.put(chunk{b: []byte("first\n"), events: 1}, false) // taken by the writing goroutine, which blocks
	time.Sleep(50 * time.Millisecond)
	const extra = 10
	for range maxQueued + extra {
		w.Event(&row{N: 1})
		w.Flush()
	}
	got.dropped = w.q.Dropped()
	close(g.open)
	w.Close()
	lines := bytes.Count(g.buf.Bytes(), []byte("\n"))
	if got.dropped == 0 || uint64(lines-1)+got.dropped != maxQueued+extra {
		t.Errorf("%d events: %d written, %d dropped; want written + dropped == made, dropped > 0", maxQueued+extra, lines-1, got.dropped)
	}
}

type probeStats struct{ dropped uint64 }

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestQueueReportsWriteErrors(t *testing.T) {
	var seen error
	q := newQueue(failing{})
	q.onError = func(err error) { seen = err }
	q.put(chunk{b: []byte("a")}, true)
	if err := q.Close(); !errors.Is(err, io.ErrClosedPipe) || !errors.Is(seen, io.ErrClosedPipe) {
		t.Errorf("Close: %v, onError: %v; want the write error in both", err, seen)
	}
}

// A reader that never reads again (owl ... | (sleep 60; wc -l)) must not
// keep owl from ending: once abandoned, Lost and Close return at once,
// a writer waiting for room is released, and every event not written is
// counted, the one stuck in write(2) included.
func TestAbandonedOutputIsCounted(t *testing.T) {
	g := &gate{open: make(chan struct{})} // never opens
	w := NewWriter(g, Text, tab)
	w.Header()
	w.Flush()
	const made = maxBytes/chunkSize + 100
	for range made {
		w.Event(&row{N: 1, Name: strings.Repeat("x", chunkSize)}) // a chunk per event
	}
	// A report waits for room, as lines that are not events do.
	reported := make(chan struct{})
	go func() {
		w.Raw([]byte(strings.Repeat("summary\n", chunkSize/8))) // more than the room left
		w.Flush()
		close(reported)
	}()
	select {
	case <-reported:
		t.Fatal("a report did not wait for room in a full queue")
	case <-time.After(100 * time.Millisecond):
	}
	time.AfterFunc(100*time.Millisecond, w.Abandon)
	select {
	case <-reported:
	case <-time.After(5 * time.Second):
		t.Fatal("Abandon did not release a writer waiting for room")
	}
	var stderr bytes.Buffer
	ended := make(chan struct{})
	go func() {
		w.Lost(&stderr, probe.Stats{})
		w.Close()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("Lost and Close still wait for an abandoned output")
	}
	// Nothing was written: every event is dropped (the queue was full) or
	// not written (abandoned).
	if got := w.q.Dropped(); got != made {
		t.Errorf("%d events counted as dropped, want all %d", got, made)
	}
	_, unwritten := w.q.Lost()
	want := fmt.Sprintf("owl: output blocked, stopped waiting for it: %d events not written\n", unwritten)
	if unwritten == 0 || !strings.HasPrefix(stderr.String(), want) ||
		!strings.Contains(stderr.String(), fmt.Sprintf("%d events lost: %d output queue full", made, made)) {
		t.Errorf("stderr %q, want %q then the loss", stderr.String(), want)
	}
}

// Lost waits until the events printed are written, so that the count it
// reports is final: an output that drains in time loses nothing.
func TestLostWaitsForTheOutput(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	w := NewWriter(g, JSON, tab)
	for range 10 {
		w.Event(&row{N: 1})
		w.Flush()
	}
	time.AfterFunc(100*time.Millisecond, func() { close(g.open) })
	var stderr bytes.Buffer
	w.Lost(&stderr, probe.Stats{})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(g.buf.String()), "\n")
	if len(lines) != 11 || !strings.HasPrefix(lines[10], `{"lost":0,`) || stderr.Len() != 0 {
		t.Errorf("output %q, stderr %q: want 10 events and no loss", g.buf.String(), stderr.String())
	}
}
