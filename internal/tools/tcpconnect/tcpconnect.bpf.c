//go:build ignore

/* tcpconnect: active TCP connects. The tracepoint sock:inet_sock_set_state
 * sees CLOSE->SYN_SENT in the connecting task (pid, uid, comm are right) but
 * before the local port is chosen; SYN_SENT->ESTABLISHED/CLOSE gives the port
 * and the outcome, often in softirq. So with -L or --outcome the event waits
 * in `pending`, keyed by socket, for the handshake to end.
 *
 * Whoever deletes a pending entry delivers it, exactly once: the end of its
 * handshake here, or user space at the end of a run (outcome pending). */
#include "owl.h"
#include "python.h"
#include "sock.h"

#define OUTCOME_NONE 0
#define OUTCOME_ESTABLISHED 1
#define OUTCOME_REFUSED 2
#define OUTCOME_TIMEOUT 3
#define OUTCOME_ERROR 4	  /* sk_err says which */
#define OUTCOME_ABORTED 5 /* given up on this host, with no error: closed, disconnected */
#define OUTCOME_PENDING 6 /* still waiting at the end of the run (set by user space) */
#define OUTCOME_UNTRACKED 7 /* `pending` was full: delivered at once, without its end */

#define ECONNREFUSED 111
#define ETIMEDOUT 110

struct event {
	struct owl_task task;
	__u64 latency_ns;
	__u16 family;
	__u16 sport;
	__u16 dport;
	__u8 outcome;
	__u8 pad;
	__s32 err; /* sk_err when the handshake failed */
	__u8 saddr[16];
	__u8 daddr[16];
	struct owl_ustack ustack; /* --ustack; native -1 when not taken */
};

/* -c: connects counted in the kernel per source, destination and port. */
struct count_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 family;
	__u16 dport;
	__u32 pad;
};
/* -L: the local port is wanted; on the tracepoint path it is known only when
 * the handshake ends. --outcome: the result of the handshake is wanted. */
const volatile bool want_lport = false;
const volatile bool want_outcome = false;
const volatile bool count_only = false;
const volatile bool want_ustack = false; /* --ustack: the connecting task's user stack */

/* Not preallocated: creating 10k preallocated entries at every start cost
 * more than the rest of start-up (bench/startup). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct count_key);
	__type(value, __u64);
} counts SEC(".maps");

/* A plain hash, not an LRU one: an LRU table evicts silently, and the
 * evicted event is lost with it; a full hash refuses the new one, which is
 * then delivered at once (OUTCOME_UNTRACKED). Not preallocated: creating it
 * costs only its 64k buckets (1 MiB, ~2 ms, less than the 8k preallocated
 * LRU entries it replaces); entries are allocated as connects wait. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct event);
} pending SEC(".maps");

/* kprobe path: the socket of each thread inside tcp_v{4,6}_connect. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} connecting SEC(".maps");

/* sock:inet_sock_set_state as laid out since Linux 4.16; the hook's Check
 * compares it with tracefs before attaching. Deliberately not CO-RE:
 * parsing the kernel's BTF would cost more than all the rest of startup. */
struct set_state_args {
	__u64 common;
	__u64 skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

static __always_inline void count(struct event *e)
{
	struct count_key k = {};
	__u64 one = 1, *n;

	__builtin_memcpy(k.saddr, e->saddr, 16);
	__builtin_memcpy(k.daddr, e->daddr, 16);
	k.family = e->family;
	k.dport = e->dport;
	n = bpf_map_lookup_elem(&counts, &k);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	/* A full table must not lose counts silently. */
	if (bpf_map_update_elem(&counts, &k, &one, BPF_NOEXIST)) {
		n = bpf_map_lookup_elem(&counts, &k);
		if (n)
			__sync_fetch_and_add(n, 1);
		else
			owl_count(OWL_DROP_MAP_FULL);
	}
}

/* The connect has started, in the connecting task: count it, emit it now,
 * or keep it until the handshake ends when what is wanted is only known
 * then. With the table full it is emitted now, without its end: a connect
 * is never dropped for want of room to wait. */
static __always_inline void connect_started(__u64 sk, struct event *e, bool lport_known)
{
	bool hold = want_outcome || (want_lport && !lport_known);

	if (count_only) {
		count(e);
		return;
	}
	if (hold) {
		if (!bpf_map_update_elem(&pending, &sk, e, BPF_ANY))
			return;
		e->outcome = OUTCOME_UNTRACKED;
	}
	owl_emit(e, sizeof(*e));
}

/* The socket left SYN_SENT (or SYN_RECV, after a simultaneous open).
 * with_err reads sk_err to tell refused from timed out; only --outcome
 * needs it, and it is the one CO-RE read of the tracepoint path. */
static __always_inline void handshake_done(struct set_state_args *ctx, bool with_err)
{
	__u64 sk = ctx->skaddr;
	struct event *held, e;
	int err;

	/* A simultaneous open (both ends sent a SYN; a socket connecting to
	 * its own address) goes SYN_SENT -> SYN_RECV -> ESTABLISHED. */
	if (ctx->newstate == TCP_SYN_RECV)
		return;
	held = bpf_map_lookup_elem(&pending, &sk);
	if (!held)
		return;
	__builtin_memcpy(&e, held, sizeof(e));
	/* Taken by user space meanwhile: it delivers the event. */
	if (bpf_map_delete_elem(&pending, &sk))
		return;
	e.sport = ctx->sport;
	e.latency_ns = bpf_ktime_get_ns() - e.task.ts_ns;
	if (ctx->newstate == TCP_ESTABLISHED) {
		e.outcome = OUTCOME_ESTABLISHED;
	} else if (with_err) {
		struct sock *s = (struct sock *)sk;

		/* sk_err is 0 when nothing failed: the owner closed the
		 * socket (close(2), its own connect timeout), disconnected it
		 * (connect(AF_UNSPEC), which sets ECONNRESET only after this
		 * tracepoint), or connect(2) failed before sending anything. */
		err = BPF_CORE_READ(s, sk_err);
		e.err = err;
		if (err == ECONNREFUSED)
			e.outcome = OUTCOME_REFUSED;
		else if (err == ETIMEDOUT)
			e.outcome = OUTCOME_TIMEOUT;
		else if (err == 0)
			e.outcome = OUTCOME_ABORTED;
		else
			e.outcome = OUTCOME_ERROR;
	} else {
		e.outcome = OUTCOME_ERROR;
	}
	owl_emit(&e, sizeof(e));
}

static __always_inline int set_state(struct set_state_args *ctx, bool with_err)
{
	struct event e = {};

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->oldstate == TCP_SYN_SENT || ctx->oldstate == TCP_SYN_RECV) {
		handshake_done(ctx, with_err);
		return 0;
	}
	if (ctx->oldstate != TCP_CLOSE || ctx->newstate != TCP_SYN_SENT)
		return 0;
	if (!owl_task_wanted() || !owl_endpoint_wanted(ctx->family, ctx->dport))
		return 0;
	owl_task_fill(&e.task);
	e.ustack.native = -1;
	if (want_ustack)
		owl_user_stack(ctx, &e.ustack);
	e.family = ctx->family;
	e.dport = ctx->dport;
	/* Copied with probe reads: the verifier refuses loads through a
	 * pointer derived from ctx. */
	if (e.family == AF_INET) {
		bpf_probe_read_kernel(e.saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(e.daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e.saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e.daddr, 16, ctx->daddr_v6);
	}
	connect_started(ctx->skaddr, &e, false);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int tp_state(struct set_state_args *ctx)
{
	return set_state(ctx, false);
}

SEC("tracepoint/sock/inet_sock_set_state")
int tp_state_outcome(struct set_state_args *ctx)
{
	return set_state(ctx, true);
}

/* Kernels without the tracepoint (< 4.16) or where it cannot attach. */
SEC("kprobe/tcp_v4_connect")
int BPF_KPROBE(kp_connect, struct sock *sk)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 skp = (__u64)sk;

	if (owl_task_wanted())
		bpf_map_update_elem(&connecting, &tid, &skp, BPF_ANY);
	return 0;
}

/* tcp_v{4,6}_connect returned: the local port is bound by now. */
static __always_inline void connect_returned(void *ctx, __u64 sk, int ret)
{
	struct owl_endpoints ep = {};
	struct event e = {};

	if (ret != 0 || !owl_sock_endpoints((struct sock *)sk, &ep))
		return;
	if (!owl_endpoint_wanted(ep.family, ep.rport))
		return;
	owl_task_fill(&e.task);
	e.ustack.native = -1;
	if (want_ustack)
		owl_user_stack(ctx, &e.ustack);
	e.family = ep.family;
	e.sport = ep.lport;
	e.dport = ep.rport;
	__builtin_memcpy(e.saddr, ep.laddr, 16);
	__builtin_memcpy(e.daddr, ep.raddr, 16);
	connect_started(sk, &e, true);
}

SEC("kretprobe/tcp_v4_connect")
int BPF_KRETPROBE(krp_connect, int ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *skp = bpf_map_lookup_elem(&connecting, &tid);
	__u64 sk;

	if (!skp)
		return 0;
	sk = *skp;
	bpf_map_delete_elem(&connecting, &tid);
	connect_returned(ctx, sk, ret);
	return 0;
}

/* fexit sees the socket and the result at once: cheaper than a kprobe pair
 * where the kernel has BPF trampolines (5.5+). */
SEC("fexit/tcp_v4_connect")
int BPF_PROG(fexit_v4_connect, struct sock *sk)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	if (owl_task_wanted())
		connect_returned(ctx, (__u64)sk, (int)ret);
	return 0;
}

SEC("fexit/tcp_v6_connect")
int BPF_PROG(fexit_v6_connect, struct sock *sk)
{
	__u64 ret = 0;

	bpf_get_func_ret(ctx, &ret);
	if (owl_task_wanted())
		connect_returned(ctx, (__u64)sk, (int)ret);
	return 0;
}

/* With the kprobe and fexit paths, only the end of the handshake comes from the
 * tracepoint (when it exists) for --outcome. */
SEC("tracepoint/sock/inet_sock_set_state")
int tp_state_done(struct set_state_args *ctx)
{
	if (ctx->protocol == IPPROTO_TCP &&
	    (ctx->oldstate == TCP_SYN_SENT || ctx->oldstate == TCP_SYN_RECV))
		handshake_done(ctx, true);
	return 0;
}

/* Keeps `struct event` in BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));
