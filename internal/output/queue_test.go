package output

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"
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
	q := &queue{w: g}
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
	q := &queue{w: failing{}, onError: func(err error) { seen = err }}
	q.put(chunk{b: []byte("a")}, true)
	if err := q.Close(); !errors.Is(err, io.ErrClosedPipe) || !errors.Is(seen, io.ErrClosedPipe) {
		t.Errorf("Close: %v, onError: %v; want the write error in both", err, seen)
	}
}
