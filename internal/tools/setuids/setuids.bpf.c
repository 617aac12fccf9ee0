//go:build ignore

/* setuids: the privilege-changing syscalls (set*uid, set*gid, setfs*). The
 * entry program keeps, per thread, the caller's uid before the call and the
 * arguments; the exit program emits them with the task header and the
 * return value. Native calls come from the syscalls:sys_{enter,exit}_set*id
 * tracepoints, which fire only for them; 32-bit (ia32) calls of x86-64
 * (int $0x80, 32-bit processes) only reach the raw_syscalls tracepoints,
 * which fire for every syscall: raw tracepoint programs there (no record
 * is copied for them, unlike a tracepoint program) return at once for all
 * but the ia32 set*id numbers. */
#include "owl.h"

struct event {
	struct owl_task task; /* at exit, but uid is the caller's before the call */
	__s64 ret;
	__s32 nr; /* syscall number: the i386 table's when ia32 */
	__u32 args[3];
	__u8 ia32; /* a 32-bit syscall of x86-64 */
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

/* What a thread's entry saw, for its exit. */
struct start {
	__u32 uid; /* before the call */
	__s32 nr;
	__u32 args[3];
	__u8 armed; /* an entry waits for its exit */
	__u8 ia32;
};

/* Per thread, in the task's own storage rather than a hash keyed by tid:
 * made once for a thread, then one lookup at entry and one at exit, where
 * a hash took an update, a lookup and a delete per call (most of the cost
 * of a traced call). It goes away with the thread. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct start);
} starts SEC(".maps");

/* The ia32 set*id numbers, from Go (the i386 table), as a bitmap: bit n
 * set for number n. These programs run for every syscall, so the test is
 * a shift and a mask rather than sixteen comparisons. */
#define IA32_MAX_NR 256
const volatile __u64 ia32_setid_nrs[IA32_MAX_NR / 64] = {};

#if defined(__TARGET_ARCH_x86)
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
#endif

/* Remembers an entry; the caller has read the arguments. */
static __always_inline void on_enter(long nr, const unsigned long *args, bool ia32)
{
	struct start *s;

	s = bpf_task_storage_get(&starts, bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s) {
		/* No memory for this thread's storage: counted, not silent. */
		owl_count(OWL_DROP_MAP_FULL);
		return;
	}
	s->uid = (__u32)bpf_get_current_uid_gid();
	s->nr = nr;
	s->args[0] = args[0];
	s->args[1] = args[1];
	s->args[2] = args[2];
	s->ia32 = ia32;
	s->armed = 1;
}

/* The current thread's entry waiting for its exit, or NULL. */
static __always_inline struct start *waiting(void)
{
	struct start *s = bpf_task_storage_get(&starts, bpf_get_current_task_btf(), 0, 0);

	if (!s || !s->armed)
		return NULL;
	return s;
}

static __always_inline void on_exit(struct start *s, long ret)
{
	struct event *e;

	s->armed = 0;
	e = owl_reserve(sizeof(*e));
	if (!e)
		return;
	owl_task_fill(&e->task);
	e->task.uid = s->uid;
	e->ret = ret;
	e->nr = s->nr;
	e->args[0] = s->args[0];
	e->args[1] = s->args[1];
	e->args[2] = s->args[2];
	e->ia32 = s->ia32;
	owl_submit(e, sizeof(*e));
}

SEC("tracepoint/syscalls/sys_enter_setuid")
int tp_enter(struct syscall_enter *ctx)
{
	unsigned long args[3];

	if (!owl_task_wanted())
		return 0;
	/* A probe read, not ctx loads: the kernel refuses to attach a program
	 * whose ctx loads reach past the record, and setuid has one argument
	 * where setresuid has three. Unused slots are ignored in user space. */
	bpf_probe_read_kernel(args, sizeof(args), ctx->args);
	on_enter(ctx->nr, args, false);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_setuid")
int tp_exit(struct syscall_exit *ctx)
{
	struct start *s = waiting();

	if (s)
		on_exit(s, ctx->ret);
	return 0;
}

/* raw_syscalls:sys_enter(struct pt_regs *regs, long id) and
 * sys_exit(struct pt_regs *regs, long ret), as raw tracepoints. Attached on
 * x86-64 only (setuids.go); elsewhere they do nothing. */
SEC("raw_tracepoint/sys_enter")
int tp_raw_enter(struct bpf_raw_tracepoint_args *ctx)
{
#if defined(__TARGET_ARCH_x86)
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	long nr = ctx->args[1];
	unsigned long args[3];

	if (!ia32_setid(nr) || !owl_task_wanted())
		return 0;
	/* The i386 calling convention: arguments in bx, cx, dx (a layout
	 * fixed by the ptrace ABI). */
	bpf_probe_read_kernel(&args[0], sizeof(args[0]), &regs->bx);
	bpf_probe_read_kernel(&args[1], 2 * sizeof(args[0]), &regs->cx);
	on_enter(nr, args, true);
#endif
	return 0;
}

SEC("raw_tracepoint/sys_exit")
int tp_raw_exit(struct bpf_raw_tracepoint_args *ctx)
{
	/* Every syscall's exit: a thread that never made a traced call has
	 * no storage, and the lookup says so at once. */
	struct start *s = waiting();

	if (s && s->ia32)
		on_exit(s, ctx->args[1]);
	return 0;
}

/* Keeps `struct event` in BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));
