//go:build ignore

/* funccount: calls of user functions (uprobes) and hits of kernel
 * tracepoints, counted in the kernel. Every probe runs the same program;
 * its attach cookie is the index of what it counts. The counts are per CPU,
 * so no two CPUs ever write one counter: no atomic operation, no lost
 * increment. Nothing is streamed. */
#include "owl.h"

/* counts[cookie]: its size, one per function and tracepoint, is set at
 * load. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline int count(void *ctx)
{
	__u32 k = bpf_get_attach_cookie(ctx);
	__u64 *n;

	if (!owl_task_wanted())
		return 0;
	n = bpf_map_lookup_elem(&counts, &k);
	if (n)
		*n += 1;
	return 0;
}

SEC("uprobe")
int count_uprobe(struct pt_regs *ctx)
{
	return count(ctx);
}

SEC("tracepoint")
int count_tracepoint(void *ctx)
{
	return count(ctx);
}
