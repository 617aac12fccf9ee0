//go:build ignore

/* capable: security capability checks, with the verdict, optionally the
 * kernel and user stacks and the syscall in progress. The ring's size is
 * set from Go (Spec.RingBytes): a loop can make 300k checks a second. */
#include "owl.h"

#define CAP_OPT_NOAUDIT (1 << 1)
#define CAP_OPT_INSETID (1 << 2)
#define UNKNOWN 2 /* audit/insetid when the hook has no opts */

struct event {
	struct owl_task task;
	__s32 cap;
	__s32 ret;	/* 0 = allowed, else -errno */
	__s32 syscall;	/* number, -1 when not tracked */
	__s32 kstack;	/* stack ids, negative when not taken */
	__s32 ustack;
	__u8 audit;	/* 0, 1 or UNKNOWN */
	__u8 insetid;	/* 0, 1 or UNKNOWN */
	__u8 pad[2];
};

const volatile bool verbose = false; /* -v: also checks that do not audit */
const volatile bool want_kstack = false;
const volatile bool want_ustack = false;
const volatile bool want_syscall = false;

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 10240);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} stacks SEC(".maps");

/* -S: the syscall each thread is in, from raw_syscalls:sys_enter. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __s32);
} in_syscall SEC(".maps");

/* kprobe path: the check each thread is in, from entry to return. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct event);
} checks SEC(".maps");

/* capability:cap_capable (Linux 6.14+), checked against tracefs. */
struct cap_capable_args {
	__u64 common;
	__u64 cred;
	__u64 target_ns;
	__u64 capable_ns;
	int cap;
	int ret;
};

struct sys_enter_args {
	__u64 common;
	long id;
};

/* A stack id, or a negative error when the stack could not be taken: the
 * event goes out without that stack, and the loss is counted. */
static __always_inline __s32 stack_id(void *ctx, __u64 flags)
{
	long id = bpf_get_stackid(ctx, &stacks, flags);

	/* -EFAULT: nothing to walk (a kernel thread has no user stack), not a
	 * loss; anything else (table full, hash collision) is. */
	if (id < 0 && id != -14)
		owl_count(OWL_DROP_STACK);
	return id;
}

/* Fills everything but ret, audit and insetid, on a zeroed event. */
static __always_inline void fill(void *ctx, struct event *e, int cap)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__s32 *nr;

	owl_task_fill(&e->task);
	e->cap = cap;
	e->syscall = -1;
	if (want_syscall) {
		nr = bpf_map_lookup_elem(&in_syscall, &tid);
		if (nr)
			e->syscall = *nr;
	}
	e->kstack = want_kstack ? stack_id(ctx, 0) : -1;
	e->ustack = want_ustack ? stack_id(ctx, BPF_F_USER_STACK) : -1;
}

SEC("tracepoint/capability/cap_capable")
int tp_cap_capable(struct cap_capable_args *ctx)
{
	struct event *e;

	if (!owl_task_wanted())
		return 0;
	e = owl_reserve(sizeof(*e));
	if (!e)
		return 0;
	fill(ctx, e, ctx->cap);
	e->ret = ctx->ret;
	/* The tracepoint has no opts: whether the check audits is unknown. */
	e->audit = UNKNOWN;
	e->insetid = UNKNOWN;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("kprobe/cap_capable")
int BPF_KPROBE(kp_cap_capable, const struct cred *cred, struct user_namespace *ns, int cap, unsigned int opts)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct event e = {};

	if (!owl_task_wanted())
		return 0;
	if (!verbose && (opts & CAP_OPT_NOAUDIT))
		return 0;
	fill(ctx, &e, cap);
	e.audit = !(opts & CAP_OPT_NOAUDIT);
	e.insetid = !!(opts & CAP_OPT_INSETID);
	if (bpf_map_update_elem(&checks, &tid, &e, BPF_ANY))
		owl_count(OWL_DROP_MAP_FULL);
	return 0;
}

SEC("kretprobe/cap_capable")
int BPF_KRETPROBE(krp_cap_capable, int ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct event *e = bpf_map_lookup_elem(&checks, &tid);

	if (!e)
		return 0;
	e->ret = ret;
	owl_emit(e, sizeof(*e));
	bpf_map_delete_elem(&checks, &tid);
	return 0;
}

/* fexit has the arguments, opts included, and the result in one program. */
SEC("fexit/cap_capable")
int BPF_PROG(fexit_cap_capable, const struct cred *cred, struct user_namespace *ns, int cap, unsigned int opts)
{
	__u64 ret = 0;
	struct event *e;

	if (!owl_task_wanted())
		return 0;
	if (!verbose && (opts & CAP_OPT_NOAUDIT))
		return 0;
	e = owl_reserve(sizeof(*e));
	if (!e)
		return 0;
	bpf_get_func_ret(ctx, &ret);
	fill(ctx, e, cap);
	e->ret = (int)ret;
	e->audit = !(opts & CAP_OPT_NOAUDIT);
	e->insetid = !!(opts & CAP_OPT_INSETID);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int tp_sys_enter(struct sys_enter_args *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__s32 nr = ctx->id;

	bpf_map_update_elem(&in_syscall, &tid, &nr, BPF_ANY);
	return 0;
}

/* Keeps `struct event` in BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));
