//go:build ignore

/* tcpaccept: passive TCP and MPTCP accepts. At the exit of
 * accept(2)/accept4(2) the task is the server and the return value is the
 * new fd: walk current->files to its socket. Unlike a hook on
 * inet_csk_accept's entry, this also sees an accept that was already
 * blocked when tracing began. io_uring accepts make no syscall: their
 * completions are hooked too (below). */
#include "owl.h"
#include "sock.h"

struct event {
	struct owl_task task;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u16 pad;
	__u8 laddr[16];
	__u8 raddr[16];
};

/* The stable layout of every syscalls:sys_exit_* tracepoint. */
struct syscall_exit {
	__u64 common;
	long nr;
	long ret;
};

static __always_inline void emit_accept(struct sock *sk)
{
	struct owl_endpoints ep = {};
	struct event *e;

	if (!owl_sock_endpoints(sk, &ep))
		return;
	/* -4/-6 and -P (local ports). */
	if (!owl_endpoint_wanted(ep.family, ep.lport))
		return;
	e = owl_reserve(sizeof(*e));
	if (!e)
		return;
	owl_task_fill(&e->task);
	e->family = ep.family;
	e->lport = ep.lport;
	e->rport = ep.rport;
	__builtin_memcpy(e->laddr, ep.laddr, 16);
	__builtin_memcpy(e->raddr, ep.raddr, 16);
	owl_submit(e, sizeof(*e));
}

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/* The socket of a socket file. Another thread may have closed the new fd
 * and reused its number by the time this runs: check it is still a socket
 * (its private_data is then its struct socket, which points back). */
static __always_inline struct sock *file_sock(struct file *file)
{
	struct socket *sock;

	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

/* The socket of fd in the current task's file table. io_uring's worker and
 * SQ-poll threads share their process's table, so this also serves
 * completions they run. */
static __always_inline struct sock *fd_sock(long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds, *file;
	unsigned int max;

	max = BPF_CORE_READ(task, files, fdt, max_fds);
	if ((unsigned long)fd >= max)
		return NULL;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	return file_sock(file);
}

static __always_inline int accept_exit(long fd)
{
	struct sock *sk;

	if (fd < 0 || !owl_task_wanted())
		return 0;
	sk = fd_sock(fd);
	if (sk)
		emit_accept(sk);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tp_exit_accept4(struct syscall_exit *ctx)
{
	return accept_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tp_exit_accept(struct syscall_exit *ctx)
{
	return accept_exit(ctx->ret);
}

/* io_uring: an IORING_OP_ACCEPT completes without any accept syscall; its
 * completion (io_uring:io_uring_complete) carries the new fd as its result,
 * in the submitting thread (inline or task work), an io-wq worker
 * ("iou-wrk-N") or the SQ-poll thread ("iou-sqp-N") of the same process.
 * The request's opcode is in struct io_kiocb. A multishot accept posts all
 * but its last completion without the request (req is NULL): those are
 * recognized by ring and user_data, remembered when the accept is submitted
 * or, if it was armed before tracing began, when a connection wakes it. */
struct uring_key {
	__u64 ring;
	__u64 user_data;
};

struct uring_accept {
	__u32 inflight;	 /* accepts submitted with this key, not yet finished */
	__u32 file_slot; /* io_accept.file_slot: 0 for the fd table */
};

/* LRU: an accept that never posts its last completion (IOSQE_CQE_SKIP_SUCCESS,
 * a ring torn down) must not fill it. An evicted accept is still reported
 * (Spec.PendingPartial): a single-shot one from its completion's request,
 * a multishot one learned again by io_uring_task_add when a connection
 * wakes it, before it completes. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 2048);
	__type(key, struct uring_key);
	__type(value, struct uring_accept);
} uring_accepts SEC(".maps");

#define FILE_INDEX_ALLOC 0xffffffffu /* IORING_FILE_INDEX_ALLOC */

/* Before 6.13 a ring's fixed files were an array of io_fixed_file. */
struct io_fixed_file___old {
	unsigned long file_ptr;
};

struct io_file_table___old {
	struct io_fixed_file___old *files;
};

struct io_ring_ctx___old {
	struct io_file_table___old file_table;
	unsigned int nr_user_files;
};

/* The file in slot of a ring's fixed-file table (direct descriptors). Its
 * low bits are io_uring's flags (FFS_*); files are aligned further. */
static __always_inline struct file *uring_fixed_file(struct io_ring_ctx *ring, __u32 slot)
{
	unsigned long ptr = 0;

	if (bpf_core_field_exists(ring->file_table.data)) {
		struct io_rsrc_node **nodes = BPF_CORE_READ(ring, file_table.data.nodes);
		struct io_rsrc_node *node = NULL;

		if (slot >= BPF_CORE_READ(ring, file_table.data.nr))
			return NULL;
		bpf_probe_read_kernel(&node, sizeof(node), &nodes[slot]);
		if (node)
			ptr = BPF_CORE_READ(node, file_ptr);
	} else {
		struct io_ring_ctx___old *old = (void *)ring;
		struct io_fixed_file___old *files = BPF_CORE_READ(old, file_table.files);

		if (slot >= BPF_CORE_READ(old, nr_user_files))
			return NULL;
		bpf_core_read(&ptr, sizeof(ptr), &files[slot].file_ptr);
	}
	return (struct file *)(ptr & ~7ul);
}

/* An accept's new socket: an fd in the task's table or, for a direct
 * descriptor, a slot in the ring's (res is the slot it chose, or 0 when
 * the slot was given as file_slot - 1). */
static __always_inline struct sock *uring_accepted(void *ring, __u32 file_slot, int res)
{
	struct file *file;

	if (!file_slot)
		return fd_sock(res);
	file = uring_fixed_file(ring, file_slot == FILE_INDEX_ALLOC ? res : file_slot - 1);
	return file ? file_sock(file) : NULL;
}

/* The first fields of io_uring:io_uring_submit_req (named
 * io_uring_submit_sqe before 6.3: two names, two BTF types) and of
 * io_uring:io_uring_task_add, the same since 5.18. Read without CO-RE; the
 * hook's Check compares the layouts with tracefs. */
struct uring_req_args {
	__u64 common;
	__u64 ring;
	__u64 req;
	__u64 user_data;
	__u8 opcode;
};

/* Remembers an accept request; submitted counts it as one more in flight,
 * else it is only learned (already known is fine). */
static __always_inline void uring_accept_seen(struct uring_req_args *ctx, bool submitted)
{
	/* Outside BPF_CORE_READ: uring_req_args is no kernel type. */
	struct io_accept *acc = (void *)ctx->req;
	struct uring_key k = {};
	struct uring_accept a = {}, *old;

	k.ring = ctx->ring;
	k.user_data = ctx->user_data;
	old = bpf_map_lookup_elem(&uring_accepts, &k);
	if (old) {
		if (submitted)
			__sync_fetch_and_add(&old->inflight, 1);
		return;
	}
	a.inflight = 1;
	/* Prepared by now: the request holds its io_accept. */
	a.file_slot = BPF_CORE_READ(acc, file_slot);
	owl_pending_put(&uring_accepts, &k, &a);
}

SEC("tracepoint/io_uring/io_uring_submit_req")
int tp_uring_submit(struct uring_req_args *ctx)
{
	if (ctx->opcode == IORING_OP_ACCEPT && owl_task_wanted())
		uring_accept_seen(ctx, true);
	return 0;
}

/* An accept armed before tracing began (a server's multishot accept, from
 * its start) is learned when a connection wakes it: the poll wakeup queues
 * task work (traced) before the accept runs and completes. This runs in
 * whatever task the wakeup interrupted (softirq): no task filter here; the
 * completion filters. */
SEC("tracepoint/io_uring/io_uring_task_add")
int tp_uring_task_add(struct uring_req_args *ctx)
{
	if (ctx->opcode == IORING_OP_ACCEPT)
		uring_accept_seen(ctx, false);
	return 0;
}

/* The request's last completion: forget it once no accept with its key
 * is left in flight. */
static __always_inline void uring_accept_done(struct uring_key *k)
{
	struct uring_accept *a = bpf_map_lookup_elem(&uring_accepts, k);

	if (!a)
		return;
	/* Built for -mcpu=v1, which cannot use an atomic's old value; a race
	 * between two requests of one key costs at most an early forget. */
	if (a->inflight <= 1)
		owl_pending_taken(&uring_accepts, k);
	else
		__sync_fetch_and_add(&a->inflight, -1);
}

SEC("tracepoint/io_uring/io_uring_complete")
int tp_uring_complete(struct trace_event_raw_io_uring_complete *ctx)
{
	struct io_kiocb *req = ctx->req;
	struct uring_key k = {};
	struct uring_accept *a;
	__u32 file_slot;
	struct sock *sk;
	int res = ctx->res;

	k.ring = (__u64)ctx->ctx;
	k.user_data = ctx->user_data;
	if (req) {
		if (BPF_CORE_READ(req, opcode) != IORING_OP_ACCEPT)
			return 0;
		uring_accept_done(&k);
		file_slot = BPF_CORE_READ((struct io_accept *)req, file_slot);
	} else {
		a = bpf_map_lookup_elem(&uring_accepts, &k);
		if (!a)
			return 0;
		file_slot = a->file_slot;
	}
	if (res < 0 || !owl_task_wanted())
		return 0;
	sk = uring_accepted(ctx->ctx, file_slot, res);
	if (sk)
		emit_accept(sk);
	return 0;
}

/* Fallback where the syscall tracepoints are missing (no FTRACE_SYSCALLS). */
SEC("kretprobe/inet_csk_accept")
int BPF_KRETPROBE(krp_accept, struct sock *sk)
{
	if (sk && owl_task_wanted())
		emit_accept(sk);
	return 0;
}

/* inet_csk_accept's arguments changed in 6.10; the return value is read the
 * same way on all versions. */
SEC("fexit/inet_csk_accept")
int BPF_PROG(fexit_accept)
{
	__u64 sk = 0;

	bpf_get_func_ret(ctx, &sk);
	if (sk && owl_task_wanted())
		emit_accept((struct sock *)sk);
	return 0;
}

const struct event *unused_event __attribute__((unused));
