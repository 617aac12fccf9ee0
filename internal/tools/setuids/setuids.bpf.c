//go:build ignore

/* setuids: the eight privilege-changing syscalls (set*uid, set*gid,
 * setfs*). One entry program keeps each thread's task header (the caller's
 * uid before the call) and arguments; one exit program emits them with the
 * return value. Both attach to all eight tracepoints. */
#include "owl.h"

struct event {
	struct owl_task task; /* filled at entry: uid is the caller's before the call */
	__s64 ret;
	__s32 nr; /* syscall number */
	__u32 args[3];
};

/* The stable layout of syscalls:sys_enter_* and sys_exit_* tracepoints. */
struct syscall_enter {
	__u64 common;
	long nr;
	unsigned long args[6];
};

struct syscall_exit {
	__u64 common;
	long nr;
	long ret;
};

struct start {
	struct owl_task task;
	__s32 nr;
	__u32 args[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct start);
} starts SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_setuid")
int tp_enter(struct syscall_enter *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	unsigned long args[3];
	struct start s = {};

	if (!owl_task_wanted())
		return 0;
	/* A probe read, not ctx loads: the kernel refuses to attach a program
	 * whose ctx loads reach past the record, and setuid has one argument
	 * where setresuid has three. Unused slots are ignored in user space. */
	bpf_probe_read_kernel(args, sizeof(args), ctx->args);
	owl_task_fill(&s.task);
	s.nr = ctx->nr;
	s.args[0] = args[0];
	s.args[1] = args[1];
	s.args[2] = args[2];
	/* A full table must not lose calls silently. */
	if (bpf_map_update_elem(&starts, &tid, &s, BPF_ANY))
		owl_count(OWL_DROP_MAP_FULL);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_setuid")
int tp_exit(struct syscall_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start *s = bpf_map_lookup_elem(&starts, &tid);
	struct event *e;

	if (!s)
		return 0;
	e = owl_reserve(sizeof(*e));
	if (e) {
		e->task = s->task;
		e->ret = ctx->ret;
		e->nr = s->nr;
		e->args[0] = s->args[0];
		e->args[1] = s->args[1];
		e->args[2] = s->args[2];
		bpf_ringbuf_submit(e, 0);
	}
	bpf_map_delete_elem(&starts, &tid);
	return 0;
}

/* Keeps `struct event` in BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));
