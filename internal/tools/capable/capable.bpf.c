//go:build ignore

/* capable: security capability checks, with the verdict, optionally the
 * kernel and user stacks and the syscall in progress (ia32 ones too). The
 * ring's size is set from Go (Spec.RingBytes): a loop can make 300k checks
 * a second. */
#include "owl.h"
#include "python.h"

#define CAP_OPT_NOAUDIT (1 << 1)
#define CAP_OPT_INSETID (1 << 2)
#define UNKNOWN 2 /* audit/insetid when the hook has no opts */

enum kind { KIND_CHECK, KIND_EXEC };

struct event {
	struct owl_task task;
	__u32 kind;	/* KIND_CHECK */
	__s32 cap;
	__s32 ret;	/* 0 = allowed, else -errno */
	__s32 syscall;	/* number, -1 when not tracked */
	__s32 kstack;	/* stack ids, negative when not taken */
	__s32 ustack;
	__u64 pystack;	/* Python frames (bpf/python.h), 0 when none */
	__u8 audit;	/* 0, 1 or UNKNOWN */
	__u8 insetid;	/* 0, 1 or UNKNOWN */
	__u8 ia32;	/* the check ran in an ia32 (compat) syscall */
	__u8 syscall_ia32; /* syscall is a number of the i386 table */
};

/* With -U: a process exec'd a file. User space notes the path, so that the
 * process's user stacks can be named after it exited. */
struct exec_event {
	struct owl_task task;
	__u32 kind;	/* KIND_EXEC */
	__u8 filename[256]; /* as given to execve, NUL-terminated */
};

const volatile bool verbose = false; /* -v: also checks that do not audit */
const volatile bool want_kstack = false;
const volatile bool want_ustack = false;
const volatile bool want_syscall = false;

/* Both stack maps are sized from Go at load: one entry when the stack is
 * not asked for. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 10240);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} kstacks SEC(".maps");

/* User stacks as build-id and file offset: named after the process exited
 * from the file alone, where an address needs the process's mappings. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 2048);
	__uint(map_flags, BPF_F_STACK_BUILD_ID);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(struct bpf_stack_build_id));
} ustacks SEC(".maps");

/* -S: the syscall each thread is in, from raw_syscalls:sys_enter. */
struct syscall {
	__s32 nr;
	__u32 ia32;	/* numbered from the i386 table */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct syscall);
} in_syscall SEC(".maps");

/* kprobe path: the check each thread is in, from entry to return. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* allocated as used: cheap starts */
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

/* sched:sched_process_exec, checked against tracefs. */
struct exec_args {
	__u64 common;
	__u32 filename;	/* __data_loc: offset in the low 16 bits */
};

/* A stack id, or a negative error when the stack could not be taken: the
 * event goes out without that stack, and the loss is counted. */
static __always_inline __s32 stack_id(void *ctx, void *map, __u64 flags)
{
	long id = bpf_get_stackid(ctx, map, flags);

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
	struct syscall *sc;

	owl_task_fill(&e->task);
	e->kind = KIND_CHECK;
	e->cap = cap;
	e->ia32 = owl_in_compat_syscall();
	e->syscall = -1;
	if (want_syscall) {
		sc = bpf_map_lookup_elem(&in_syscall, &tid);
		if (sc) {
			e->syscall = sc->nr;
			e->syscall_ia32 = sc->ia32;
		}
	}
	e->kstack = want_kstack ? stack_id(ctx, &kstacks, 0) : -1;
	e->ustack = want_ustack ? stack_id(ctx, &ustacks, BPF_F_USER_STACK) : -1;
	if (want_ustack)
		e->pystack = owl_py_stack();
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
	owl_submit(e, sizeof(*e));
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
	owl_submit(e, sizeof(*e));
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int tp_sys_enter(struct sys_enter_args *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	/* An ia32 syscall's number is of the i386 table (int $0x80 from a
	 * 64-bit process too): kept with it, or setuid32 would read as
	 * epoll_create. */
	struct syscall sc = {.nr = ctx->id, .ia32 = owl_in_compat_syscall()};

	bpf_map_update_elem(&in_syscall, &tid, &sc, BPF_ANY);
	return 0;
}

SEC("tracepoint/sched/sched_process_exec")
int tp_exec(struct exec_args *ctx)
{
	struct exec_event *e;

	if (!owl_task_wanted())
		return 0;
	e = owl_reserve(sizeof(*e));
	if (!e)
		return 0;
	owl_task_fill(&e->task);
	e->kind = KIND_EXEC;
	bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), (void *)ctx + (ctx->filename & 0xffff));
	owl_submit(e, sizeof(*e));
	return 0;
}

/* Keep the record types in BTF for bpf2go -type. */
const struct event *unused_event __attribute__((unused));
const struct exec_event *unused_exec_event __attribute__((unused));
