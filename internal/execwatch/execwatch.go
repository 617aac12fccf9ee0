// Package execwatch tells when a process execs from a thread other than
// its leader. The kernel filters a uprobe attached for one process (-p) on
// that process's leading thread, which such an exec ends: the new image
// never traps. Whoever attached uprobes for the process attaches them
// again when told (probe.Session.Relink). A Go program calling
// syscall.Exec does this about one time in five: any thread may run it.
package execwatch

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/owlbpf/owl/internal/probe"
)

// Watch watches one process.
type Watch struct {
	objs   execwatchObjects
	link   link.Link
	reader *ringbuf.Reader
}

// layout is where execwatch.bpf.c reads sched:sched_process_exec.
var layout = map[string]int{"pid": 12, "old_pid": 16}

// Start watches process pid (in owl's pid namespace, as -p takes it).
func Start(pid int) (_ *Watch, err error) {
	if err := probe.CheckLayout("sched", "sched_process_exec", layout)(); err != nil {
		return nil, err
	}
	spec, err := loadExecwatch()
	if err != nil {
		return nil, err
	}
	if err := spec.Variables[execwatchVarTargetTgid].Set(int32(pid)); err != nil {
		return nil, fmt.Errorf("set target: %w", err)
	}
	w := &Watch{}
	if err := spec.LoadAndAssign(&w.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load: %w", verr)
		}
		return nil, fmt.Errorf("load: %w", err)
	}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	if w.link, err = link.Tracepoint("sched", "sched_process_exec", w.objs.OwlExecwatch, nil); err != nil {
		return nil, fmt.Errorf("attach sched:sched_process_exec: %w", err)
	}
	if w.reader, err = ringbuf.NewReader(w.objs.Execs); err != nil {
		return nil, fmt.Errorf("ring buffer reader: %w", err)
	}
	return w, nil
}

// Next waits for the process to exec from a thread other than its leader
// and returns that thread's id. Once Close is called it returns an error
// that wraps os.ErrClosed.
func (w *Watch) Next() (tid int, err error) {
	rec, err := w.reader.Read()
	if err != nil {
		return 0, err
	}
	if len(rec.RawSample) < 4 {
		return 0, fmt.Errorf("exec record of %d bytes", len(rec.RawSample))
	}
	return int(int32(binary.NativeEndian.Uint32(rec.RawSample))), nil
}

// Close stops the watch; a Next waiting returns. Safe to call twice.
func (w *Watch) Close() error {
	var errs []error
	if w.reader != nil {
		errs = append(errs, w.reader.Close())
	}
	if w.link != nil {
		errs = append(errs, w.link.Close())
		w.link = nil
	}
	errs = append(errs, w.objs.Close())
	return errors.Join(errs...)
}
