// Package sinks are where the agent's records go: JSON lines (stdout or a
// rotated file), OTLP logs, and Prometheus metrics with health endpoints.
package sinks

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"

	"gopkg.in/natefinch/lumberjack.v2"
)

// JSON writes one JSON line per record: to stdout, to a regular file
// rotated by size (lumberjack: the file is renamed with a timestamp and a
// new one started; MaxBackups old files are kept), or plainly to a device
// or fifo.
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

// PathError is a JSON path the sink cannot write to: a directory, a
// missing parent, no permission. It is bad input, found at start.
type PathError struct {
	Path string
	Err  error
}

func (e *PathError) Error() string { return fmt.Sprintf("json %s: %v", e.Path, e.Err) }
func (e *PathError) Unwrap() error { return e.Err }

// NewJSON writes to path: "-" is stdout; a regular file, or a path that
// does not exist yet, is rotated at maxMB with backups old files kept; any
// other existing file (a character device such as /dev/null, a fifo) is
// written as it is, without rotation: rotating renames the file, which
// would replace /dev/null by a regular file. A fifo is opened when a
// reader has opened it (NewJSON waits, as a shell redirection does).
func NewJSON(path string, maxMB, backups int) (*JSON, error) {
	if path == "-" {
		return &JSON{w: os.Stdout}, nil
	}
	st, err := os.Stat(path)
	switch {
	case err == nil && st.IsDir():
		return nil, &PathError{path, errors.New("is a directory")}
	case err == nil && !st.Mode().IsRegular():
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return nil, &PathError{path, openErr(err)}
		}
		return &JSON{w: f, closer: f}, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return nil, &PathError{path, openErr(err)}
	}
	// Open once here so that a bad path is an error at start, not at the
	// first event.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, &PathError{path, openErr(err)}
	}
	f.Close()
	l := &lumberjack.Logger{Filename: path, MaxSize: maxMB, MaxBackups: backups}
	return &JSON{w: l, closer: l}, nil
}

// openErr is the reason of an open or stat error, without the path the
// PathError already names.
func openErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
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
