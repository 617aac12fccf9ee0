package output

import (
	"io"
	"sync"
	"time"
)

// maxBytes is how much output may wait in memory before events are
// dropped and counted. Output is flushed whenever the ring is drained, so
// chunks are often small: the bound is on bytes, with room for many chunks.
const (
	maxBytes  = 32 << 20
	maxQueued = 16384 // chunks
)

// chunk is bytes to write and the number of events they hold. A chunk
// with synced set writes nothing: the writing goroutine closes synced when
// it reaches it, so everything queued before has been handled.
type chunk struct {
	b      []byte
	events uint64
	synced chan struct{}
}

// queue hands output to a goroutine that writes it, so that a reader of
// owl's output that stalls for a while (a pipe into a busy program, a
// paused terminal) does not stop owl from draining the kernel's ring
// buffer. When the queue is full, events are dropped and counted, never
// silently; lines that are not events (headers, the lost line) wait.
//
// A reader may also stall for good (owl ... | (sleep 60; wc -l)): the
// goroutine is then stuck in write(2), which nothing interrupts. abandon
// stops all waiting for it, so that owl can still end: the events of every
// chunk not written by then are counted as dropped.
//
// The goroutine starts on the first write; close waits until all is
// written or the queue is abandoned.
type queue struct {
	w       io.Writer
	ch      chan chunk
	done    chan struct{} // closed when the writing goroutine ends
	stop    chan struct{} // closed by abandon
	started bool          // the goroutine runs; for put, sync and close only
	onError func(error)   // called once, from the writing goroutine

	mu        sync.Mutex
	err       error
	dropped   uint64        // events dropped because the queue was full
	unwritten uint64        // events dropped because the queue was abandoned
	pending   uint64        // events queued or being written
	bytes     int           // bytes queued or being written
	room      chan struct{} // signalled when bytes goes down
	abandoned bool
	// writing is when the write in progress began; zero between writes.
	writing time.Time
}

func newQueue(w io.Writer) *queue {
	return &queue{w: w, ch: make(chan chunk, maxQueued), done: make(chan struct{}), stop: make(chan struct{}), room: make(chan struct{}, 1)}
}

// put queues c, waiting for room when wait is set (until the queue is
// abandoned), else dropping it (and counting its events) when the queue is
// full. Calls to put, sync and close must not overlap.
func (q *queue) put(c chunk, wait bool) {
	q.mu.Lock()
	for q.err == nil && q.bytes > 0 && q.bytes+len(c.b) > maxBytes {
		if !wait {
			q.dropped += c.events
			q.mu.Unlock()
			return
		}
		// Lines that are not events wait until the writer makes room.
		q.mu.Unlock()
		select {
		case <-q.room:
		case <-q.stop:
			q.mu.Lock()
			q.unwritten += c.events
			q.mu.Unlock()
			return
		}
		q.mu.Lock()
	}
	if q.err != nil { // the reader is gone: nothing is counted
		q.mu.Unlock()
		return
	}
	q.pending += c.events
	q.bytes += len(c.b)
	q.mu.Unlock()
	if !q.started {
		q.started = true
		go q.run()
	}
	if wait {
		select {
		case q.ch <- c:
			return
		case <-q.stop:
		}
	} else {
		select {
		case q.ch <- c:
			return
		default:
		}
	}
	q.drop(c)
}

// drop counts the events of a chunk that will not be written.
func (q *queue) drop(c chunk) {
	q.mu.Lock()
	q.pending -= c.events
	q.bytes -= len(c.b)
	q.signalRoom()
	if q.abandoned {
		q.unwritten += c.events
	} else {
		q.dropped += c.events
	}
	q.mu.Unlock()
}

func (q *queue) run() {
	defer close(q.done)
	for c := range q.ch {
		q.mu.Lock()
		failed, abandoned := q.err != nil, q.abandoned
		q.mu.Unlock()
		switch {
		case c.synced != nil:
			close(c.synced)
		case abandoned:
			q.drop(c)
		case failed:
			// Drain, so writers never block on a dead output; what a
			// reader that left did not read is not counted.
			q.written(c, nil)
		default:
			q.mu.Lock()
			q.writing = time.Now()
			q.mu.Unlock()
			_, err := q.w.Write(c.b)
			q.mu.Lock()
			q.writing = time.Time{}
			q.mu.Unlock()
			q.written(c, err)
		}
	}
}

// written records that c was written, or failed with err.
func (q *queue) written(c chunk, err error) {
	q.mu.Lock()
	q.pending -= c.events
	q.bytes -= len(c.b)
	q.signalRoom()
	first := err != nil && q.err == nil
	if first {
		q.err = err
	}
	q.mu.Unlock()
	if first && q.onError != nil {
		q.onError(err)
	}
}

// signalRoom wakes a put waiting for room; q.mu is held.
func (q *queue) signalRoom() {
	select {
	case q.room <- struct{}{}:
	default:
	}
}

func (q *queue) error() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

// Dropped is the number of events dropped because the queue was full or,
// once it was abandoned, not written (Lost).
func (q *queue) Dropped() uint64 {
	dropped, unwritten := q.Lost()
	return dropped + unwritten
}

// Lost returns the events dropped because the queue was full and, apart,
// those not written because it was abandoned: dropped since, still queued
// or in the chunk being written.
func (q *queue) Lost() (full, unwritten uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.abandoned {
		unwritten = q.unwritten + q.pending
	}
	return q.dropped, unwritten
}

// stalled tells whether a write has been in progress for at least d: the
// reader stopped reading (a slow decode, say a first kernel stack naming
// all of kallsyms, is no stall: nothing waits on the reader then).
func (q *queue) stalled(d time.Duration) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.writing.IsZero() && time.Since(q.writing) >= d
}

// abandon stops waiting for the output: puts and close return at once,
// and what is not written yet is dropped and counted. Safe to call from
// any goroutine, more than once.
func (q *queue) abandon() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.abandoned {
		q.abandoned = true
		close(q.stop)
	}
}

// sync waits until everything queued so far is written (or failed), or
// the queue is abandoned.
func (q *queue) sync() {
	if !q.started {
		return
	}
	c := chunk{synced: make(chan struct{})}
	select {
	case q.ch <- c:
	case <-q.stop:
		return
	}
	select {
	case <-c.synced:
	case <-q.stop:
	}
}

// Close waits until everything queued is written, or the queue is
// abandoned, and returns the first write error. The queue must not be
// written to afterwards.
func (q *queue) Close() error {
	if q.started {
		close(q.ch)
		select {
		case <-q.done:
		case <-q.stop:
		}
		q.started = false
	}
	return q.error()
}
