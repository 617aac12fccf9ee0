package output

import (
	"io"
	"sync"
)

// maxQueued is how many 64 KiB chunks of output may wait in memory (32 MiB)
// before Write blocks.
const maxQueued = 512

// queue hands output to a goroutine that writes it, so that a reader of
// owl's output that stalls for a while (a pipe into a busy program, a
// paused terminal) does not stop owl from draining the kernel's ring
// buffer, which would then lose events. The goroutine starts on the first
// write; Close waits until everything is written.
type queue struct {
	w    io.Writer
	ch   chan []byte
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func (q *queue) Write(p []byte) (int, error) {
	if err := q.error(); err != nil {
		return 0, err
	}
	if q.ch == nil {
		q.ch, q.done = make(chan []byte, maxQueued), make(chan struct{})
		go q.run()
	}
	// A copy: the caller (bufio) reuses p. One allocation per chunk.
	q.ch <- append([]byte(nil), p...)
	return len(p), nil
}

func (q *queue) run() {
	defer close(q.done)
	for b := range q.ch {
		if q.error() != nil {
			continue // drain, so writers never block on a dead output
		}
		if _, err := q.w.Write(b); err != nil {
			q.mu.Lock()
			q.err = err
			q.mu.Unlock()
		}
	}
}

func (q *queue) error() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Close waits until everything queued is written and returns the first
// write error. The queue must not be written to afterwards.
func (q *queue) Close() error {
	if q.ch != nil {
		close(q.ch)
		<-q.done
		q.ch = nil
	}
	return q.error()
}
