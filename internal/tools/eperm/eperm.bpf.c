//go:build ignore

/* eperm: syscalls failing with EPERM or EACCES, from raw_syscalls:sys_exit.
 * By default counted in the kernel per process, syscall and errno; with
 * -e each failure is streamed. */
/* Syscall rate: a loop can make 300k events a second. */
#define OWL_RINGBUF_BYTES (4 * 1024 * 1024)
#include "owl.h"

#define EPERM 1
#define EACCES 13

struct event {
	__u64 ts_ns;
	__u32 pid;
	__u32 tid;
	__s32 nr;
	__s32 err; /* EPERM or EACCES */
	__u8 comm[16];
};

struct fail_key {
	__u32 pid;
	__s32 nr;
	__s32 err;
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

/* The stable layout of raw_syscalls:sys_exit. */
struct sys_exit_args {
	__u64 common;
	long id;
	long ret;
};

SEC("tracepoint/raw_syscalls/sys_exit")
int tp_sys_exit(struct sys_exit_args *ctx)
{
	long ret = ctx->ret;
	__u64 id;
	struct event *e;
	struct fail_count *c, zero = {};
	struct fail_key k;

	if (ret != -EPERM && ret != -EACCES)
		return 0;
	id = bpf_get_current_pid_tgid();
	if (!owl_tgid_wanted(id >> 32))
		return 0;
	if (stream) {
		e = owl_reserve(sizeof(*e));
		if (!e)
			return 0;
		e->ts_ns = bpf_ktime_get_ns();
		e->pid = id >> 32;
		e->tid = (__u32)id;
		e->nr = ctx->id;
		e->err = -ret;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
		bpf_ringbuf_submit(e, 0);
		return 0;
	}
	k.pid = id >> 32;
	k.nr = ctx->id;
	k.err = -ret;
	c = bpf_map_lookup_elem(&counts, &k);
	if (!c) {
		bpf_get_current_comm(zero.comm, sizeof(zero.comm));
		/* A full map must not lose counts silently. */
		if (bpf_map_update_elem(&counts, &k, &zero, BPF_NOEXIST) && !bpf_map_lookup_elem(&counts, &k)) {
			__sync_fetch_and_add(&owl_lost, 1);
			return 0;
		}
		c = bpf_map_lookup_elem(&counts, &k);
		if (!c)
			return 0;
	}
	__sync_fetch_and_add(&c->n, 1);
	return 0;
}

const struct event *unused_event __attribute__((unused));
