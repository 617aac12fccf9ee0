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
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	wrote := make(chan struct{})
	go func() {
		for i := 0; i < 100; i++ { // 6.4 MB, well under the 32 MiB cap
			q.Write(chunk)
		}
		close(wrote)
	}()
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("Write blocked on a stalled output before the queue was full")
	}
	close(g.open)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	if g.buf.Len() != 100*len(chunk) {
		t.Errorf("wrote %d bytes, want %d", g.buf.Len(), 100*len(chunk))
	}
}

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestQueueReportsWriteErrors(t *testing.T) {
	q := &queue{w: failing{}}
	q.Write([]byte("a"))
	if err := q.Close(); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Close: %v, want the write error", err)
	}
}
