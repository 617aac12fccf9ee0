/* Shared by every owl BPF program: the event ring, drop counters by cause,
 * the task header every event starts with and the task filters. Include it
 * first; it pulls in vmlinux.h and libbpf's helpers. User space mirrors it in
 * internal/probe (shared.go): change both together. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#if defined(__TARGET_ARCH_arm64)
/* vmlinux.h is x86's; on arm64 the kprobe context is the UAPI struct
 * user_pt_regs (a stable layout), which libbpf's PT_REGS_* macros read. The
 * rest of the kernel types this code reads go through CO-RE or tracepoint
 * layouts checked at load, so one vmlinux.h serves both. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#endif

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

/* The ring's size is set from Go at load time (MaxEntries), so that one
 * process running many tools can budget its memory; this is a placeholder. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

/* Per-CPU counters: why events (or parts of them) were lost, and the
 * entries put into and taken from a tool's pending table, from which user
 * space derives how many an LRU table evicted. */
enum owl_counter {
	OWL_DROP_RING_FULL,	/* no room in the ring */
	OWL_DROP_MAP_FULL,	/* a count or pending table was full */
	OWL_DROP_STACK,		/* a stack could not be taken (event kept) */
	OWL_PENDING_PUT,
	OWL_PENDING_TAKEN,
	OWL_NR_COUNTERS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OWL_NR_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} owl_counters SEC(".maps");

static __always_inline void owl_count(enum owl_counter which)
{
	__u32 k = which;
	__u64 *n = bpf_map_lookup_elem(&owl_counters, &k);

	if (n)
		*n += 1;
}

/* When the ring's reader is woken. Waking it costs an IRQ-work interrupt
 * (~14 us in a nested VM, 0.05-0.2 per event with the kernel's default of
 * waking whenever the reader has caught up), so records are submitted with
 * BPF_RB_NO_WAKEUP and the one that takes the unread data across
 * owl_wakeup_bytes wakes the reader; the reader also polls on a timer
 * (probe.Options.Latency, 10 ms by default) for what stays below it. 0, as
 * when user space does not set it, keeps the kernel's default. */
const volatile __u32 owl_wakeup_bytes = 0;

static __always_inline __u64 owl_wakeup_flags(__u64 size)
{
	__u64 avail;

	if (!owl_wakeup_bytes)
		return 0;
	avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	/* avail includes this record: wake only on the crossing, so that a
	 * reader still draining above the threshold is not woken again for
	 * every record. */
	if (avail >= owl_wakeup_bytes && avail < owl_wakeup_bytes + size + 8)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* Submits a record from owl_reserve (size is what was reserved). */
static __always_inline void owl_submit(void *e, __u64 size)
{
	bpf_ringbuf_submit(e, owl_wakeup_flags(size));
}

/* Returns a zeroed record of size bytes, or NULL (counted) when the ring is
 * full. Zeroed, so that a field added later never carries stale bytes. */
static __always_inline void *owl_reserve(__u64 size)
{
	void *e = bpf_ringbuf_reserve(&events, size, 0);

	if (!e) {
		owl_count(OWL_DROP_RING_FULL);
		return NULL;
	}
	__builtin_memset(e, 0, size);
	return e;
}

/* Copies one event into the ring, counting it when there is no room. */
static __always_inline void owl_emit(const void *e, __u64 size)
{
	if (bpf_ringbuf_output(&events, (void *)e, size, owl_wakeup_flags(size)))
		owl_count(OWL_DROP_RING_FULL);
}

/* The task part every event starts with (event.Task in Go). */
struct owl_task {
	__u64 ts_ns;	 /* bpf_ktime_get_ns() */
	__u64 cgroup_id; /* cgroup v2 id; on cgroup-v1-only hosts it tells nothing apart */
	__u32 pid;	 /* tgid */
	__u32 tid;
	__u32 uid;
	__u32 mntns;	 /* mount namespace inode, 0 when unknown */
	__u8 comm[16];
};

/* Task filters, set from Go before load; 0 (uid: -1) means all. */
const volatile __u32 owl_targ_tgid = 0;
const volatile __u32 owl_targ_uid = (__u32)-1;
const volatile __u64 owl_targ_cgroup = 0;
const volatile __u32 owl_targ_mntns = 0;

/* Offsets of task_struct.nsproxy, nsproxy.mnt_ns and mnt_namespace.ns.inum,
 * found in the kernel's BTF by Go (internal/kbtf): a CO-RE read here would
 * make every tool parse the whole kernel BTF at start (~50 ms). */
const volatile __u32 owl_off_nsproxy = 0;
const volatile __u32 owl_off_mnt_ns = 0;
const volatile __u32 owl_off_ns_inum = 0;

static __always_inline __u32 owl_current_mntns(void)
{
	void *task = (void *)bpf_get_current_task();
	void *nsproxy = NULL, *mnt_ns = NULL;
	__u32 inum = 0;

	if (!owl_off_nsproxy)
		return 0;
	if (bpf_probe_read_kernel(&nsproxy, sizeof(nsproxy), task + owl_off_nsproxy) || !nsproxy)
		return 0;
	if (bpf_probe_read_kernel(&mnt_ns, sizeof(mnt_ns), nsproxy + owl_off_mnt_ns) || !mnt_ns)
		return 0;
	bpf_probe_read_kernel(&inum, sizeof(inum), mnt_ns + owl_off_ns_inum);
	return inum;
}

/* Offset of task_struct.thread_info.status, from Go on x86-64 (0
 * elsewhere): TS_COMPAT there marks a 32-bit syscall made by a 64-bit
 * process (int $0x80), which the syscalls:* tracepoints never see and
 * raw_syscalls numbers from the ia32 table. */
const volatile __u32 owl_off_ti_status = 0;
#define OWL_TS_COMPAT 0x0002

static __always_inline bool owl_in_compat_syscall(void)
{
	void *task = (void *)bpf_get_current_task();
	__u32 status = 0;

	if (!owl_off_ti_status)
		return false;
	bpf_probe_read_kernel(&status, sizeof(status), task + owl_off_ti_status);
	return status & OWL_TS_COMPAT;
}

/* Whether the current task passes -p, -u, --cgroup and --mntns. */
static __always_inline bool owl_task_wanted(void)
{
	__u64 id = bpf_get_current_pid_tgid();

	if (owl_targ_tgid && owl_targ_tgid != id >> 32)
		return false;
	if (owl_targ_uid != (__u32)-1 && owl_targ_uid != (__u32)bpf_get_current_uid_gid())
		return false;
	if (owl_targ_cgroup && owl_targ_cgroup != bpf_get_current_cgroup_id())
		return false;
	if (owl_targ_mntns && owl_targ_mntns != owl_current_mntns())
		return false;
	return true;
}

/* Fills the task part from the current task. */
static __always_inline void owl_task_fill(struct owl_task *t)
{
	__u64 id = bpf_get_current_pid_tgid();

	t->ts_ns = bpf_ktime_get_ns();
	t->cgroup_id = bpf_get_current_cgroup_id();
	t->pid = id >> 32;
	t->tid = (__u32)id;
	t->uid = (__u32)bpf_get_current_uid_gid();
	t->mntns = owl_current_mntns();
	bpf_get_current_comm(t->comm, sizeof(t->comm));
}

/* Puts a pending entry (an event waiting for its end, such as a handshake)
 * and takes it back, counting both: the difference minus what the table
 * still holds is what an LRU table evicted. A failed put is counted as a
 * full table. */
static __always_inline void owl_pending_put(void *map, const void *key, const void *val)
{
	if (bpf_map_update_elem(map, key, val, BPF_ANY))
		owl_count(OWL_DROP_MAP_FULL);
	else
		owl_count(OWL_PENDING_PUT);
}

static __always_inline void owl_pending_taken(void *map, const void *key)
{
	if (!bpf_map_delete_elem(map, key))
		owl_count(OWL_PENDING_TAKEN);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
