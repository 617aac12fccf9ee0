//go:build ignore

/* eperm: syscalls failing with EPERM or EACCES, from raw_syscalls:sys_exit.
 * By default counted in the kernel per process, syscall and errno; with
 * -e each failure is streamed. A 32-bit syscall of x86-64 (int $0x80, a
 * 32-bit process) has a number from the i386 table: it is marked ia32, and
 * counted apart from the native syscall of the same number. */
#include "owl.h"

#define EPERM 1
#define EACCES 13

struct event {
	struct owl_task task;
	__s32 nr;
	__s32 err; /* EPERM or EACCES */
	__u8 ia32; /* nr is the i386 table's */
};

struct fail_key {
	__u32 pid;
	__s32 nr;
	__s32 err;
	__u32 ia32; /* nr is the i386 table's; a __u32 leaves no padding in the key */
};

struct fail_count {
	__u64 n;
	__u8 comm[16];
};

/* -e: stream events instead of counting. */
const volatile bool stream = false;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, struct fail_key);
	__type(value, struct fail_count);
} counts SEC(".maps");

/* The syscall number in the registers raw_syscalls:sys_exit gets, where
 * the kernel's syscall_get_nr() reads it. Flavours of pt_regs, relocated by
 * CO-RE against the kernel's own. */
struct pt_regs___nr_x86 {
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

struct pt_regs___nr_arm64 {
	int syscallno;
} __attribute__((preserve_access_index));

static __always_inline long syscall_nr(void *regs)
{
#if defined(__TARGET_ARCH_x86)
	return BPF_CORE_READ((struct pt_regs___nr_x86 *)regs, orig_ax);
#else
	return BPF_CORE_READ((struct pt_regs___nr_arm64 *)regs, syscallno);
#endif
}

/* raw_syscalls:sys_exit(struct pt_regs *regs, long ret), as a raw
 * tracepoint: it runs for every syscall of the machine, and unlike a
 * tracepoint program it costs no record copied first. */
SEC("raw_tracepoint/sys_exit")
int tp_sys_exit(struct bpf_raw_tracepoint_args *ctx)
{
	long ret = ctx->args[1], id;
	struct event *e;
	struct fail_count *c, zero = {};
	struct fail_key k;

	if (ret != -EPERM && ret != -EACCES)
		return 0;
	/* id -1 is no syscall: rt_sigreturn clears it and returns the
	 * interrupted context's rax, so a signal handled right after a failed
	 * call would count that failure a second time. */
	id = syscall_nr((void *)ctx->args[0]);
	if (id < 0)
		return 0;
	if (!owl_task_wanted())
		return 0;
	if (stream) {
		e = owl_reserve(sizeof(*e));
		if (!e)
			return 0;
		owl_task_fill(&e->task);
		e->nr = id;
		e->err = -ret;
		e->ia32 = owl_in_compat_syscall();
		owl_submit(e, sizeof(*e));
		return 0;
	}
	k.pid = bpf_get_current_pid_tgid() >> 32;
	k.nr = id;
	k.err = -ret;
	k.ia32 = owl_in_compat_syscall();
	c = bpf_map_lookup_elem(&counts, &k);
	if (!c) {
		bpf_get_current_comm(zero.comm, sizeof(zero.comm));
		/* A full table must not lose counts silently. */
		if (bpf_map_update_elem(&counts, &k, &zero, BPF_NOEXIST) && !bpf_map_lookup_elem(&counts, &k)) {
			owl_count(OWL_DROP_MAP_FULL);
			return 0;
		}
		c = bpf_map_lookup_elem(&counts, &k);
		if (!c)
			return 0;
	}
	__sync_fetch_and_add(&c->n, 1);
	return 0;
}

/* Keeps `struct event` in BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));
