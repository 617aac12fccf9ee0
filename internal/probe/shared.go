package probe

import (
	"errors"
	"fmt"
	"maps"
	goruntime "runtime"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/kbtf"
)

// The objects of bpf/owl.h and bpf/sock.h that every tool's collection
// has, reached through typed structs (as bpf2go's) so that a wrong name
// fails the load with an error instead of returning nil.
type sharedSpecs struct {
	Events   *ebpf.MapSpec `ebpf:"events"`
	Counters *ebpf.MapSpec `ebpf:"owl_counters"`
}

type taskVars struct {
	Tgid       *ebpf.VariableSpec `ebpf:"owl_targ_tgid"`
	UID        *ebpf.VariableSpec `ebpf:"owl_targ_uid"`
	Cgroup     *ebpf.VariableSpec `ebpf:"owl_targ_cgroup"`
	MntNS      *ebpf.VariableSpec `ebpf:"owl_targ_mntns"`
	OffNsproxy *ebpf.VariableSpec `ebpf:"owl_off_nsproxy"`
	OffMntNS   *ebpf.VariableSpec `ebpf:"owl_off_mnt_ns"`
	OffInum    *ebpf.VariableSpec `ebpf:"owl_off_ns_inum"`
	OffStatus  *ebpf.VariableSpec `ebpf:"owl_off_ti_status"`
}

type netVars struct {
	Family      *ebpf.VariableSpec `ebpf:"owl_targ_family"`
	FilterPorts *ebpf.VariableSpec `ebpf:"owl_filter_ports"`
}

type sharedMaps struct {
	Events   *ebpf.Map `ebpf:"events"`
	Counters *ebpf.Map `ebpf:"owl_counters"`
}

type netMaps struct {
	Ports *ebpf.Map `ebpf:"owl_ports"`
}

// TaskFilter selects tasks in the kernel (owl_task_wanted). The zero value
// with UID -1 selects all; DefaultTaskFilter returns that.
type TaskFilter struct {
	PID    int    // tgid, 0 = all
	UID    int    // -1 = all
	Cgroup uint64 // cgroup v2 id, 0 = all
	MntNS  uint32 // mount namespace inode, 0 = all
}

// AllTasks is the filter that selects every task.
func AllTasks() TaskFilter { return TaskFilter{UID: -1} }

// MaxPorts is how many ports -P takes (OWL_MAX_PORTS of bpf/sock.h).
const MaxPorts = 1024

// NetFilter selects endpoints in the kernel (owl_endpoint_wanted).
type NetFilter struct {
	Family int      // 0 = both, 4 or 6
	Ports  []uint16 // empty = all
}

// Runtime is what the tools loaded by one process share: the kernel's BTF,
// parsed at most once for CO-RE, and the task-struct offsets of the task
// header. Safe for concurrent use.
type Runtime struct {
	BTF *btf.Cache
	// FullKernelTypes relocates CO-RE programs against the whole kernel
	// BTF instead of the few types they need (core.go): for comparisons.
	FullKernelTypes bool

	once    sync.Once
	offsets []uint32
	offErr  error
	status  uint32 // task_struct.thread_info.status, 0 when unknown
}

// NewRuntime returns a Runtime that has loaded nothing yet.
func NewRuntime() *Runtime { return &Runtime{BTF: btf.NewCache()} }

// taskOffsets finds, once, where the mount namespace inode hangs off a
// task_struct. A targeted scan of the kernel's BTF takes a few ms where
// parsing it all for CO-RE takes ~50 ms.
func (r *Runtime) taskOffsets() ([]uint32, error) {
	r.once.Do(func() {
		paths := []string{"task_struct.nsproxy", "nsproxy.mnt_ns", "mnt_namespace.ns.inum"}
		// Only x86-64 marks compat syscalls in thread_info.status; one scan
		// for all four, three if the kernel lacks that field.
		if goruntime.GOARCH == "amd64" {
			if off, err := kbtf.KernelOffsets(append(paths, "task_struct.thread_info.status")...); err == nil {
				r.offsets, r.status = off[:3], off[3]
				return
			}
		}
		r.offsets, r.offErr = kbtf.KernelOffsets(paths...)
	})
	return r.offsets, r.offErr
}

// configureShared sets the ring's size, the pending table's and the shared
// filters on a copy of a tool's spec before it is loaded. The tool's own
// Configure runs after it and may shrink a table a config does not use.
func configureShared(spec *ebpf.CollectionSpec, opts *Options) error {
	var sh sharedSpecs
	if err := spec.Assign(&sh); err != nil {
		return err
	}
	ring := opts.RingBytes
	if ring == 0 {
		// Nothing will read it (count-only modes): the programs still
		// reference the ring; give it the smallest size the kernel takes.
		ring = minRing
	}
	sh.Events.MaxEntries = ring
	if opts.PendingEntries != 0 {
		m := spec.Maps[opts.Pending]
		if m == nil {
			return fmt.Errorf("pending table %s missing from the BPF object", opts.Pending)
		}
		m.MaxEntries = opts.PendingEntries
	}
	// Objects built before bpf/owl.h had the wakeup threshold keep the
	// kernel's default wakeups; the reader polls either way.
	if v := spec.Variables["owl_wakeup_bytes"]; v != nil && !opts.NoReader {
		if err := v.Set(WakeupBytes(ring)); err != nil {
			return fmt.Errorf("set wakeup threshold: %w", err)
		}
	}
	if opts.Task != nil {
		if err := configureTask(spec, opts.Task, opts.Runtime); err != nil {
			return err
		}
	}
	if opts.Net != nil {
		var nv netVars
		if err := spec.Assign(&nv); err != nil {
			return err
		}
		var family uint16
		switch opts.Net.Family {
		case 4:
			family = 2 // AF_INET
		case 6:
			family = 10 // AF_INET6
		}
		if err := errors.Join(nv.Family.Set(family), nv.FilterPorts.Set(len(opts.Net.Ports) > 0)); err != nil {
			return fmt.Errorf("set net filters: %w", err)
		}
	}
	return nil
}

func configureTask(spec *ebpf.CollectionSpec, f *TaskFilter, rt *Runtime) error {
	var tv taskVars
	if err := spec.Assign(&tv); err != nil {
		return err
	}
	uid := uint32(0xffffffff)
	if f.UID >= 0 {
		uid = uint32(f.UID)
	}
	errs := []error{tv.Tgid.Set(uint32(f.PID)), tv.UID.Set(uid), tv.Cgroup.Set(f.Cgroup), tv.MntNS.Set(f.MntNS)}
	off, err := rt.taskOffsets()
	switch {
	case err == nil:
		errs = append(errs, tv.OffNsproxy.Set(off[0]), tv.OffMntNS.Set(off[1]), tv.OffInum.Set(off[2]), tv.OffStatus.Set(rt.status))
	case f.MntNS != 0:
		return fmt.Errorf("mount namespace filter: %w", err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set task filters: %w", err)
	}
	return nil
}

// setPorts fills owl_ports after load.
func (s *Session) setPorts(ports []uint16) error {
	if len(ports) == 0 {
		return nil
	}
	var nm netMaps
	if err := s.Assign(&nm); err != nil {
		return err
	}
	for _, p := range ports {
		if err := nm.Ports.Put(p, uint8(1)); err != nil {
			return fmt.Errorf("set port filter: %w", err)
		}
	}
	return nil
}

// Assign sets the *ebpf.Map and *ebpf.Variable fields of to (one of the
// structs bpf2go generates) from the session's collection. Unlike
// ebpf.Collection.Assign, the session keeps owning them and closes them.
func (s *Session) Assign(to any) error {
	c := ebpf.Collection{Programs: maps.Clone(s.Coll.Programs), Maps: maps.Clone(s.Coll.Maps), Variables: maps.Clone(s.Coll.Variables)}
	return c.Assign(to)
}

// taskRecord is struct owl_task of bpf/owl.h, which starts every record of
// a tool whose events have a task.
type taskRecord struct {
	TsNs     uint64
	CgroupID uint64
	Pid      uint32
	Tid      uint32
	Uid      uint32
	Mntns    uint32
	Comm     [16]byte
}

// TaskSize is the size of the task header in a record.
const TaskSize = int(unsafe.Sizeof(taskRecord{}))

// Task decodes the task header at the start of a record; a short record
// gives the zero Task.
func (s *Session) Task(raw []byte) event.Task {
	r, ok := View[taskRecord](raw)
	if !ok {
		return event.Task{}
	}
	return event.Task{
		Time:     event.Time{Time: s.Time(r.TsNs)},
		KtimeNs:  r.TsNs,
		PID:      r.Pid,
		TID:      r.Tid,
		UID:      r.Uid,
		Comm:     r.Comm,
		CgroupID: r.CgroupID,
		MntNS:    r.Mntns,
	}
}

// counters sums the per-CPU counters of owl_counters.
func (s *Session) counters() ([nrCounters]uint64, error) {
	var out [nrCounters]uint64
	if s.counterMap == nil {
		return out, nil
	}
	var perCPU []uint64
	for i := range out {
		if err := s.counterMap.Lookup(uint32(i), &perCPU); err != nil {
			return out, fmt.Errorf("read counter %d: %w", i, err)
		}
		for _, n := range perCPU {
			out[i] += n
		}
	}
	return out, nil
}

// The indices of enum owl_counter.
const (
	ctrRingFull = iota
	ctrMapFull
	ctrStack
	ctrPendingPut
	ctrPendingTaken
	nrCounters
)

// WakeupBytes is how much unread data in a ring of ringBytes wakes its
// reader (owl_wakeup_bytes of bpf/owl.h): a quarter of the ring, at most
// 64 KiB. Below it the reader finds records on its timer
// (Options.Latency). At 64 KiB a storm of ~100-byte records wakes the
// reader about once per 650 records instead of up to once per 5.
func WakeupBytes(ringBytes uint32) uint32 {
	return min(ringBytes/4, 64<<10)
}

// minRing is the smallest ring the kernel accepts: one page.
const minRing = 4096
