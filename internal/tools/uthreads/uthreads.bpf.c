//go:build ignore

/* uthreads: one event per thread start or stop.
 *
 * Language runtimes (hotspot thread__start/stop): uthreads_hit, each
 * location's cookie (langs.Cookie) says start or stop and which
 * arguments hold the ids and the name.
 *
 * C (-l c): pthread_create's start routine is kept by creating thread
 * (uthreads_pthread), taken when that thread clones the new one
 * (task:task_newtask, in the creator, which knows the new tid: the start
 * event), and kept by new tid until it exits (sched:sched_process_exit,
 * in the thread, whose name is its own by then: the stop event). */
#include "owl.h"
#include "usdt.h"
#include "uregs.h"

#define NAME_LEN 80
#define OWL_CLONE_THREAD 0x00010000

enum { ROLE_START = 1, ROLE_STOP = 2 };

struct event {
	struct owl_task task;
	__u64 ids[2];	/* runtime id (C: start routine), native id (tid) */
	__u32 role;	/* 1 start, 2 stop */
	__u32 pad;
	char name[NAME_LEN];
};

const struct event *unused_event __attribute__((unused));

SEC("uprobe")
int uthreads_hit(struct pt_regs *ctx)
{
	const struct usdt_spec *spec;
	struct event *e;
	__u8 a;

	if (!owl_task_wanted())
		return 0;
	spec = usdt_spec(ctx);
	if (!spec)
		return 0;
	e = owl_reserve(sizeof(*e));
	if (!e)
		return 0;
	owl_task_fill(&e->task);
	e->role = usdt_cookie_byte(spec, 0);
	a = usdt_cookie_byte(spec, 2);
	if (a != USDT_NONE)
		usdt_arg(ctx, spec, a, &e->ids[0]);
	a = usdt_cookie_byte(spec, 3);
	if (a != USDT_NONE)
		usdt_arg(ctx, spec, a, &e->ids[1]);
	usdt_str(ctx, spec, usdt_cookie_byte(spec, 4), usdt_cookie_byte(spec, 5), e->name, NAME_LEN);
	owl_submit(e, sizeof(*e));
	return 0;
}

/* Start routines by creating tid, from pthread_create to its clone. A
 * pthread_create that fails before cloning leaves its entry, replaced by
 * the thread's next call; LRU bounds the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} creating SEC(".maps");

/* Start routines by new tid, until the thread exits (Spec.Pending). A
 * thread that outlives 16384 newer ones loses its entry, and stops without
 * its routine: counted as a part lost (Spec.PendingPartial). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} routines SEC(".maps");

SEC("uprobe")
int uthreads_pthread(struct uregs *ctx)
{
	__u32 tid = bpf_get_current_pid_tgid();
	__u64 args[8] = {};

	if (!owl_task_wanted())
		return 0;
	/* pthread_create(thread, attr, start_routine, arg) */
	ureg_c_args(ctx, args);
	bpf_map_update_elem(&creating, &tid, &args[2], BPF_ANY);
	return 0;
}

/* task:task_newtask as tracefs lays it out (checked by probe.CheckLayout). */
struct newtask_ctx {
	__u64 common;
	__s32 pid;
	char comm[16];
	__u64 clone_flags;
};

SEC("tracepoint/task/task_newtask")
int uthreads_newtask(struct newtask_ctx *ctx)
{
	__u32 tid = bpf_get_current_pid_tgid(), child;
	struct event *e;
	__u64 *r, routine;

	if (!(ctx->clone_flags & OWL_CLONE_THREAD))
		return 0;
	r = bpf_map_lookup_elem(&creating, &tid);
	if (!r)
		return 0;
	routine = *r;
	bpf_map_delete_elem(&creating, &tid);
	child = ctx->pid;
	owl_pending_put(&routines, &child, &routine);
	e = owl_reserve(sizeof(*e));
	if (!e)
		return 0;
	owl_task_fill(&e->task);
	e->role = ROLE_START;
	e->ids[0] = routine;
	e->ids[1] = child;
	owl_submit(e, sizeof(*e));
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int uthreads_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = id;
	struct event *e;
	__u64 *r;

	/* The main thread's exit is the process's, not a thread stop. */
	if (tid == id >> 32 || !owl_task_wanted())
		return 0;
	e = owl_reserve(sizeof(*e));
	if (!e)
		return 0;
	owl_task_fill(&e->task);
	e->role = ROLE_STOP;
	r = bpf_map_lookup_elem(&routines, &tid);
	if (r) {
		e->ids[0] = *r;
		owl_pending_taken(&routines, &tid);
	}
	e->ids[1] = tid;
	bpf_get_current_comm(e->name, sizeof(e->name));
	owl_submit(e, sizeof(*e));
	return 0;
}
