//go:build ignore

/* stackcount: counts of distinct stacks leading to user functions (uprobes)
 * and kernel tracepoints, in the kernel: a hash from (process, kernel stack
 * id, user stack id) to a count. Nothing is streamed. */
#include "owl.h"
#include "python.h"

#define EFAULT 14
#define EEXIST 17
#define NO_STACK -1 /* not asked for */

/* A key of the counts table. Stack ids are negative when there is no stack:
 * NO_STACK, -EFAULT (nothing to walk: a kernel thread's user stack), or
 * another -errno when it could not be taken (counted as a loss). */
struct stack_key {
	__u32 pid;	/* tgid with -P or user stacks, else 0 */
	__s32 kstack;
	__s32 ustack;
	__u8 comm[16];	/* with -P, as BCC's stackcount */
	/* At a uprobe: the function's address and its caller's (the return
	 * address), when the kernel's walk missed the caller; else 0. */
	__u64 ip;
	__u64 caller;
	__u64 pystack;	/* Python frames (bpf/python.h), 0 when none */
};

const volatile bool want_kstack = false; /* tracepoints only: a uprobe has none */
const volatile bool want_ustack = false;
const volatile bool key_pid = false;
const volatile bool key_comm = false;

/* Sized from Go at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct stack_key);
	__type(value, __u64);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} kstacks SEC(".maps");

/* User stacks as build-id and file offset, as capable's: named from the
 * file after the process exited. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_STACK_BUILD_ID);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(struct bpf_stack_build_id));
} ustacks SEC(".maps");

static __always_inline __s32 stack_id(void *ctx, void *map, __u64 flags)
{
	long id = bpf_get_stackid(ctx, map, flags);

	/* -EFAULT: no such stack, not a loss. Anything else (a hash
	 * collision, or no free entry in the table) is: the call is still
	 * counted, under a missed stack. */
	if (id < 0 && id != -EFAULT)
		owl_count(OWL_DROP_STACK);
	return id;
}

/* At a function's first instruction its frame is not set up yet: a
 * frame-pointer walk starts from the caller's frame and so skips the
 * caller itself, whose return address is on the stack (x86) or in the link
 * register (arm64). Kernels from 6.11 put it in when the function starts
 * with push %rbp or endbr64 (not Go's prologue, nor gcc's frameless leaf
 * functions). The first two frames of a plain walk tell whether it is
 * there; when not, the key carries it and user space puts it back in. */
static __always_inline void missing_caller(struct pt_regs *ctx, struct stack_key *k)
{
	__u64 top[2] = {};
	__u64 ret = 0;

#if defined(__TARGET_ARCH_x86)
	if (bpf_probe_read_user(&ret, sizeof(ret), (void *)PT_REGS_SP(ctx)))
		return;
#else
	ret = PT_REGS_RET(ctx);
#endif
	if (bpf_get_stack(ctx, top, sizeof(top), BPF_F_USER_STACK) == sizeof(top) && top[1] == ret)
		return;
	k->ip = PT_REGS_IP(ctx);
	k->caller = ret;
}

static __always_inline int count(void *ctx, bool kernel)
{
	struct stack_key k = {};
	__u64 one = 1, *n;
	long err;

	if (!owl_task_wanted())
		return 0;
	if (key_pid)
		k.pid = bpf_get_current_pid_tgid() >> 32;
	if (key_comm)
		bpf_get_current_comm(k.comm, sizeof(k.comm));
	k.kstack = kernel && want_kstack ? stack_id(ctx, &kstacks, 0) : NO_STACK;
	k.ustack = want_ustack ? stack_id(ctx, &ustacks, BPF_F_USER_STACK) : NO_STACK;
	if (!kernel && k.ustack >= 0)
		missing_caller(ctx, &k);
	if (want_ustack)
		k.pystack = owl_py_stack();
	n = bpf_map_lookup_elem(&counts, &k);
	if (!n) {
		err = bpf_map_update_elem(&counts, &k, &one, BPF_NOEXIST);
		if (!err)
			return 0;
		if (err != -EEXIST) {
			owl_count(OWL_DROP_MAP_FULL);
			return 0;
		}
		/* Another CPU added it meanwhile. */
		n = bpf_map_lookup_elem(&counts, &k);
		if (!n)
			return 0;
	}
	__sync_fetch_and_add(n, 1);
	return 0;
}

SEC("uprobe")
int count_uprobe(struct pt_regs *ctx)
{
	return count(ctx, false);
}

SEC("tracepoint")
int count_tracepoint(void *ctx)
{
	return count(ctx, true);
}

/* Kernel stacks at syscall tracepoints (syscalls:sys_enter_NAME and
 * sys_exit_NAME). Kernels before 6.12 (Debian's 6.1) hand a BPF program
 * there the task's user registers, so the kernel stack it takes is empty
 * (-EFAULT). With -K those tracepoints are counted at the raw sys_enter and
 * sys_exit tracepoints instead, where the stack is walked from the program
 * itself, for the syscall numbers set from Go in this table (bit 0: enter,
 * bit 1: exit). */
#define MAX_SYSCALLS 1024
#define SYS_ENTER 1
#define SYS_EXIT 2

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_SYSCALLS);
	__type(key, __u32);
	__type(value, __u8);
} syscalls SEC(".maps");

/* The registers fields read, by name (CO-RE): their offsets differ
 * between architectures and vmlinux.h is x86's. */
struct pt_regs___sc_x86 {
	long orig_ax;
	unsigned long cs;
} __attribute__((preserve_access_index));

struct pt_regs___sc_arm64 {
	int syscallno;
} __attribute__((preserve_access_index));

/* x86's 32-bit code segment: a 32-bit process's syscalls are numbered
 * from the i386 table, and the syscall tracepoints leave them out. */
#define USER32_CS 0x23

static __always_inline bool syscall_wanted(void *regs, long nr, __u8 bit)
{
	__u32 key = nr;
	__u8 *want;

#if defined(__TARGET_ARCH_x86)
	if (BPF_CORE_READ((struct pt_regs___sc_x86 *)regs, cs) == USER32_CS)
		return false;
#endif
	if (nr < 0 || nr >= MAX_SYSCALLS)
		return false;
	want = bpf_map_lookup_elem(&syscalls, &key);
	return want && (*want & bit);
}

SEC("raw_tracepoint/sys_enter")
int count_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (!syscall_wanted((void *)ctx->args[0], ctx->args[1], SYS_ENTER))
		return 0;
	return count(ctx, true);
}

SEC("raw_tracepoint/sys_exit")
int count_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	void *regs = (void *)ctx->args[0];
	long nr;

#if defined(__TARGET_ARCH_x86)
	nr = BPF_CORE_READ((struct pt_regs___sc_x86 *)regs, orig_ax);
#else
	nr = BPF_CORE_READ((struct pt_regs___sc_arm64 *)regs, syscallno);
#endif
	if (!syscall_wanted(regs, nr, SYS_EXIT))
		return 0;
	return count(ctx, true);
}

const struct stack_key *unused_stack_key __attribute__((unused));
