//go:build ignore

/* profile: timed samples of on-CPU stacks. A cpu-clock software perf event
 * on each CPU (no PMU needed: it works in VMs) runs sample() at -F Hz; each
 * sample adds one to the count of its (process, kernel stack, user stack)
 * in a kernel hash, read at the end. Nothing is streamed. A CPython
 * process's samples also carry its Python frames (bpf/python.h). */
#include "owl.h"
#include "python.h"

#define EFAULT 14
#define EEXIST 17
#define NO_STACK -1 /* not asked for */

/* A key of the counts table. Stack ids are negative when there is no stack:
 * NO_STACK, -EFAULT (nothing to walk: a kernel thread's user stack, the
 * kernel stack of a sample taken in user mode), or another -errno when it
 * could not be taken (counted as a loss). */
struct sample_key {
	__u32 pid; /* tgid: user frames are named from its mappings */
	__s32 kstack;
	__s32 ustack;
	__u8 comm[16];
	/* A sample in a function's prologue: its address and its caller's
	 * (the return address), which the frame-pointer walk missed; else 0. */
	__u64 ip;
	__u64 caller;
	/* The Python frames of the sampled thread (bpf/python.h): an id in
	 * owl_py_stacks, 0 when none; merged with the user stack in Go. */
	__u64 pystack;
};

const volatile bool want_kstack = true;
const volatile bool want_ustack = true;
const volatile bool include_idle = false;

/* Sized from Go at load. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 40960);
	__type(key, struct sample_key);
	__type(value, __u64);
} counts SEC(".maps");

/* Sized from Go at load (preallocated: one entry when not asked for). */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(__u64));
} kstacks SEC(".maps");

/* User stacks as build-id and file offset, as stackcount's and capable's:
 * the frames of processes that exited before the end are still named. */
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
	 * collision, or no free entry in the table) is: the sample is still
	 * counted, under a missed stack. */
	if (id < 0 && id != -EFAULT)
		owl_count(OWL_DROP_STACK);
	return id;
}

/* A sample that lands on a function's first instructions, before its frame
 * is set up, gets a frame-pointer walk that starts from the caller's frame
 * and so skips the caller (stackcount has the same at a uprobe). The code
 * at the sampled address tells where the return address is: at the stack
 * pointer before push %rbp, endbr64 or Go's stack-bound check, one word up
 * after push %rbp (at mov %rsp,%rbp). When the walk's second frame is not
 * that address, the key carries it and user space puts it back in. Only
 * for samples in user mode (a sample in the kernel has the user registers
 * of the system call), and only on x86-64. */
static __always_inline void missing_caller(struct bpf_perf_event_data *ctx, struct sample_key *k)
{
#if defined(__TARGET_ARCH_x86)
	struct pt_regs *regs = (struct pt_regs *)&ctx->regs;
	__u64 ip = PT_REGS_IP(regs), sp = PT_REGS_SP(regs), ret = 0, top[2] = {};
	__u8 code[4] = {};

	if (ip >> 63 || bpf_probe_read_user(code, sizeof(code), (void *)ip))
		return;
	if (code[0] == 0x48 && code[1] == 0x89 && code[2] == 0xe5) /* mov %rsp,%rbp */
		sp += 8;
	else if (!(code[0] == 0x55 ||						/* push %rbp */
		   (code[0] == 0xf3 && code[1] == 0x0f && code[2] == 0x1e && code[3] == 0xfa) || /* endbr64 */
		   (code[0] == 0x49 && code[1] == 0x3b && code[2] == 0x66)))		/* cmp N(%r14),%rsp */
		return;
	if (bpf_probe_read_user(&ret, sizeof(ret), (void *)sp))
		return;
	if (bpf_get_stack(ctx, top, sizeof(top), BPF_F_USER_STACK) == sizeof(top) && top[1] == ret)
		return;
	k->ip = ip;
	k->caller = ret;
#endif
}

SEC("perf_event")
int sample(struct bpf_perf_event_data *ctx)
{
	struct sample_key k = {};
	__u64 one = 1, *n;
	long err;

	k.pid = bpf_get_current_pid_tgid() >> 32;
	if (k.pid == 0 && !include_idle)
		return 0;
	if (!owl_task_wanted())
		return 0;
	bpf_get_current_comm(k.comm, sizeof(k.comm));
	k.kstack = want_kstack ? stack_id(ctx, &kstacks, 0) : NO_STACK;
	k.ustack = want_ustack ? stack_id(ctx, &ustacks, BPF_F_USER_STACK) : NO_STACK;
	if (k.ustack >= 0)
		missing_caller(ctx, &k);
	/* One hash lookup for a process that runs no Python; the walk
	 * (~1 µs) for one that does. */
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

const struct sample_key *unused_sample_key __attribute__((unused));
