package output

import (
	"io"
	"sync"
)

// maxQueued is how many chunks (up to ~64 KiB each) may wait in memory,
// ~32 MiB, before events are dropped and counted.
const maxQueued = 512

// chunk is bytes to write and the number of events they hold.
type chunk struct {
	b      []byte
	events uint64
}

// queue hands output to a goroutine that writes it, so that a reader of
// owl's output that stalls for a while (a pipe into a busy program, a
// paused terminal) does not stop owl from draining the kernel's ring
// buffer. When the queue is full, events are dropped and counted, never
// silently; lines that are not events (headers, the lost line) wait. The
// goroutine starts on the first write; Close waits until all is written.
type queue struct {
	w       io.Writer
	ch      chan chunk
	done    chan struct{}
	onError func(error) // called once, from the writing goroutine
	mu      sync.Mutex
	err     error
	dropped uint64
}

// put queues c, waiting for room when wait is set, else dropping it (and
// counting its events) when the queue is full.
func (q *queue) put(c chunk, wait bool) {
	if q.error() != nil {
		return
	}
	if q.ch == nil {
		q.ch, q.done = make(chan chunk, maxQueued), make(chan struct{})
		go q.run()
	}
	if wait {
		q.ch <- c
		return
	}
	select {
	case q.ch <- c:
	default:
		q.mu.Lock()
		q.dropped += c.events
		q.mu.Unlock()
	}
}

func (q *queue) run() {
	defer close(q.done)
	for c := range q.ch {
		if q.error() != nil {
			continue // drain, so writers never block on a dead output
		}
		if _, err := q.w.Write(c.b); err != nil {
			q.mu.Lock()
			q.err = err
			q.mu.Unlock()
			if q.onError != nil {
				q.onError(err)
			}
		}
	}
}

func (q *queue) error() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Dropped is the number of events dropped because the queue was full.
func (q *queue) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
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
