//go:build ignore

/* seccount: calls of the kernel's security_* functions (or of the LSM
 * hooks they call), counted in the kernel. Every attachment runs the same
 * code; its attach cookie is the index of the function it counts. The
 * counts are per CPU: no atomic operation, no lost increment. Nothing is
 * streamed. */
#include "owl.h"

/* counts[cookie]: its size, one per function, is set at load. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void count(void *ctx)
{
	__u32 k = bpf_get_attach_cookie(ctx);
	__u64 *n;

	if (!owl_task_wanted())
		return;
	n = bpf_map_lookup_elem(&counts, &k);
	if (n)
		*n += 1;
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
