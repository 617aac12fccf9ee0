//go:build ignore

/* execwatch: the exec of one process (target_tgid) by a thread that does
 * not lead it. Each such exec puts that thread's former id in the ring. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* sched:sched_process_exec, checked against tracefs from Go. pid is the
 * process after the exec (the thread took its leader's id), old_pid the
 * thread's id before it. */
struct exec_args {
	__u64 common;
	__u32 filename;
	__s32 pid;
	__s32 old_pid;
};

const volatile __s32 target_tgid = 0;

/* A full ring loses nothing that matters: its unread records already say
 * the process exec'd. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} execs SEC(".maps");

SEC("tracepoint/sched/sched_process_exec")
int owl_execwatch(struct exec_args *ctx)
{
	__s32 *tid;

	if (ctx->pid != target_tgid || ctx->old_pid == ctx->pid)
		return 0;
	tid = bpf_ringbuf_reserve(&execs, sizeof(*tid), 0);
	if (!tid)
		return 0;
	*tid = ctx->old_pid;
	bpf_ringbuf_submit(tid, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
