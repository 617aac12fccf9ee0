//go:build ignore

/* seccount: calls of the kernel's security_* functions (or of the LSM
 * hooks they call), counted in the kernel. Every attachment runs the same
 * code; its attach cookie is the index of the function it counts, except
 * count_fentry_ip's (below). The counts are per CPU: no atomic operation,
 * no lost increment. Nothing is streamed. */
#include "owl.h"

/* counts[index]: its size, one per function, is set at load. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* func_index[address] = index, for count_fentry_ip: Go fills it at load
 * with the kallsyms address of each function (of every symbol of that
 * name), and sizes it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u64);
	__type(value, __u32);
} func_index SEC(".maps");

static __always_inline void add(__u32 k)
{
	__u64 *n = bpf_map_lookup_elem(&counts, &k);

	if (n)
		*n += 1;
}

static __always_inline void count(void *ctx)
{
	if (owl_task_wanted())
		add(bpf_get_attach_cookie(ctx));
}

/* fentry and LSM programs are bound to their target at load: Go loads a
 * copy per function (probe.TracingEachAt); the targets named here are
 * the template's, present on every kernel with LSM support. */
SEC("fentry/security_file_open")
int count_fentry(void *ctx)
{
	count(ctx);
	return 0;
}

/* For kernels whose fentry links take no cookie (Debian's 6.1): the
 * function's address, which the trampoline hands to bpf_get_func_ip
 * (Linux 5.15+), finds its index. */
SEC("fentry/security_file_open")
int count_fentry_ip(void *ctx)
{
	__u64 ip;
	__u32 *k;

	if (!owl_task_wanted())
		return 0;
	ip = bpf_get_func_ip(ctx);
	k = bpf_map_lookup_elem(&func_index, &ip);
	if (k)
		add(*k);
	return 0;
}

/* 0: this program never denies anything. */
SEC("lsm/file_open")
int count_lsm(void *ctx)
{
	count(ctx);
	return 0;
}

SEC("kprobe.multi")
int count_kprobe_multi(struct pt_regs *ctx)
{
	count(ctx);
	return 0;
}

SEC("kprobe")
int count_kprobe(struct pt_regs *ctx)
{
	count(ctx);
	return 0;
}
