// Package sinks are where the agent's records go: JSON lines (stdout or a
// rotated file), OTLP logs, and Prometheus metrics with health endpoints.
package sinks

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"gopkg.in/natefinch/lumberjack.v2"
)

// JSON writes one JSON line per record, to stdout or to a file rotated by
// size (lumberjack: the file is renamed with a timestamp and a new one
// started; MaxBackups old files are kept).
type JSON struct {
	mu     sync.Mutex
	w      io.Writer
	closer io.Closer
	buf    []byte
	Stats  SinkStats
}

// SinkStats counts what a sink did with the records it was given.
type SinkStats struct {
	Exported atomic.Uint64 // written or acknowledged by the receiver
	Failed   atomic.Uint64 // given up on after retries: lost
	Dropped  atomic.Uint64 // not queued: the queue was full
	Queued   atomic.Int64  // waiting in the queue now
}

// NewJSON writes to path ("-" for stdout), rotating at maxMB with
// backups old files kept.
func NewJSON(path string, maxMB, backups int) (*JSON, error) {
	if path == "-" {
		return &JSON{w: os.Stdout}, nil
	}
	// Open once here so that a bad path is an error at start, not at the
	// first event.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	f.Close()
	l := &lumberjack.Logger{Filename: path, MaxSize: maxMB, MaxBackups: backups}
	return &JSON{w: l, closer: l}, nil
}

// Write writes one line (the record's AppendJSON).
func (j *JSON) Write(appendLine func([]byte) []byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf = appendLine(j.buf[:0])
	if _, err := j.w.Write(j.buf); err != nil {
		j.Stats.Failed.Add(1)
		return
	}
	j.Stats.Exported.Add(1)
}

// Close closes the file.
func (j *JSON) Close() error {
	if j.closer != nil {
		return j.closer.Close()
	}
	return nil
}
