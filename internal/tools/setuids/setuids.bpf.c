//go:build ignore

/* setuids: the privilege-changing syscalls (set*uid, set*gid, setfs*). One
 * entry program keeps each thread's task header (the caller's uid before
 * the call) and arguments; one exit program emits them with the return
 * value. Native calls come from the syscalls:sys_{enter,exit}_set*id
 * tracepoints, which fire only for them; 32-bit (ia32) calls of x86-64
 * (int $0x80, 32-bit processes) only reach raw_syscalls:sys_{enter,exit},
 * which fire for every syscall and so return at once for all but the ia32
 * set*id numbers. */
#include "owl.h"

struct event {
	struct owl_task task; /* filled at entry: uid is the caller's before the call */
	__s64 ret;
	__s32 nr; /* syscall number: the i386 table's when ia32 */
	__u32 args[3];
	__u8 ia32; /* a 32-bit syscall of x86-64 */
};

/* The stable layout of syscalls:sys_enter_* and sys_exit_* tracepoints,
 * and of raw_syscalls:sys_enter and sys_exit. */
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
	__u8 ia32;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct start);
} starts SEC(".maps");

/* The ia32 set*id numbers, from Go (the i386 table), as a bitmap: bit n
 * set for number n. These programs run for every syscall, so the test is
 * a shift and a mask rather than sixteen comparisons. */
#define IA32_MAX_NR 256
const volatile __u64 ia32_setid_nrs[IA32_MAX_NR / 64] = {};

/* Whether the current syscall, numbered nr, is an ia32 set*id call. */
static __always_inline bool ia32_setid(long nr)
{
	if ((unsigned long)nr >= IA32_MAX_NR)
		return false;
	if (!((ia32_setid_nrs[nr / 64] >> (nr % 64)) & 1))
		return false;
	/* Checked last: it reads the task, and native syscalls share these
	 * numbers (ia32 setresuid32 is native io_getevents). */
	return owl_in_compat_syscall();
}

static __always_inline int on_enter(long nr, const unsigned long *ctx_args, bool ia32)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	unsigned long args[3];
	struct start s = {};

	if (!owl_task_wanted())
		return 0;
	/* A probe read, not ctx loads: the kernel refuses to attach a program
	 * whose ctx loads reach past the record, and setuid has one argument
	 * where setresuid has three. Unused slots are ignored in user space. */
	bpf_probe_read_kernel(args, sizeof(args), ctx_args);
	owl_task_fill(&s.task);
	s.nr = nr;
	s.args[0] = args[0];
	s.args[1] = args[1];
	s.args[2] = args[2];
	s.ia32 = ia32;
	/* A full table must not lose calls silently. */
	if (bpf_map_update_elem(&starts, &tid, &s, BPF_ANY))
		owl_count(OWL_DROP_MAP_FULL);
	return 0;
}

static __always_inline int on_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start *s = bpf_map_lookup_elem(&starts, &tid);
	struct event *e;

	if (!s)
		return 0;
	e = owl_reserve(sizeof(*e));
	if (e) {
		e->task = s->task;
		e->ret = ret;
		e->nr = s->nr;
		e->args[0] = s->args[0];
		e->args[1] = s->args[1];
		e->args[2] = s->args[2];
		e->ia32 = s->ia32;
		owl_submit(e, sizeof(*e));
	}
	bpf_map_delete_elem(&starts, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_setuid")
int tp_enter(struct syscall_enter *ctx)
{
	return on_enter(ctx->nr, ctx->args, false);
}

SEC("tracepoint/syscalls/sys_exit_setuid")
int tp_exit(struct syscall_exit *ctx)
{
	return on_exit(ctx->ret);
}

SEC("tracepoint/raw_syscalls/sys_enter")
int tp_raw_enter(struct syscall_enter *ctx)
{
	if (!ia32_setid(ctx->nr))
		return 0;
	return on_enter(ctx->nr, ctx->args, true);
}

SEC("tracepoint/raw_syscalls/sys_exit")
int tp_raw_exit(struct syscall_exit *ctx)
{
	if (!ia32_setid(ctx->nr))
		return 0;
	return on_exit(ctx->ret);
}

/* Keeps `struct event` in BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));
