//go:build ignore

/* tcpreset: TCP resets sent by this host. A burst of them to one remote
 * address over many local ports is the signature of a port scan. A reset is
 * sent by the kernel (often in softirq), not by a task that means anything,
 * so events have no task header and no task filter applies. */
#include "owl.h"
#include "sock.h"

struct event {
	__u64 ts_ns;
	__u16 family;
	__u16 lport;
	__u16 rport;
	__u8 state;	 /* TCP state of the socket; 0 when there is none */
	__u8 has_reason; /* the kernel gave a reason (6.10+ tracepoint) */
	__u32 reason;	 /* enum sk_rst_reason */
	__u8 laddr[16];
	__u8 raddr[16];
};

/* -s: resets counted in the kernel per remote address, family and local
 * port; nothing goes to the ring. Counts are cumulative: user space diffs
 * them between reports and never deletes a key. */
struct reset_key {
	__u8 raddr[16];
	__u16 family;
	__u16 lport;
	__u32 pad;
};

const volatile bool count_only = false;

/* Allocated as used: preallocating 64k entries cost 6 MB and ~10 ms of
 * CPU at every start, for a table -s mode rarely fills. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct reset_key);
	__type(value, __u64);
} resets SEC(".maps");

static __always_inline void count(const struct event *e)
{
	struct reset_key k = {};
	__u64 one = 1, *n;

	__builtin_memcpy(k.raddr, e->raddr, 16);
	k.family = e->family;
	k.lport = e->lport;
	n = bpf_map_lookup_elem(&resets, &k);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return;
	}
	/* Another CPU may have added the key meanwhile; a full table must not
	 * lose counts silently. */
	if (bpf_map_update_elem(&resets, &k, &one, BPF_NOEXIST)) {
		n = bpf_map_lookup_elem(&resets, &k);
		if (n)
			__sync_fetch_and_add(n, 1);
		else
			owl_count(OWL_DROP_MAP_FULL);
	}
}

/* Zeroes an event on the stack, padding included: it goes to user space
 * whole, and a field added later must never carry stale bytes. */
static __always_inline void zero(struct event *e)
{
	__builtin_memset(e, 0, sizeof(*e));
}

/* Hands a filled event over: counts it (-s) or sends it to the ring. The
 * event is built on the stack and copied to the ring, so that count-only
 * mode never reserves ring space. */
static __always_inline void submit(const struct event *e)
{
	if (!owl_endpoint_wanted(e->family, e->lport)) /* -4, -6, -P */
		return;
	if (count_only)
		count(e);
	else
		owl_emit(e, sizeof(*e));
}

/* The tracepoint before Linux 6.10 (commit 19822a980e19 changed it): an
 * event of the class tcp_event_sk_skb, so its record is that class's
 * struct; separate ports and addresses, no reason, and not fired for resets
 * to closed ports because it was only called with a socket. */
struct trace_event_raw_tcp_event_sk_skb {
	const void *skaddr;
	int state;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
} __attribute__((preserve_access_index));

/* Reads a struct sockaddr_in or sockaddr_in6 as the tracepoint stores it. */
static __always_inline void read_sockaddr(const __u8 *sa, __u16 *family, __u16 *port, __u8 *addr)
{
	struct sockaddr_in6 in6 = {};

	bpf_probe_read_kernel(&in6, sizeof(in6), sa);
	*family = in6.sin6_family;
	*port = bpf_ntohs(in6.sin6_port);
	if (in6.sin6_family == AF_INET)
		__builtin_memcpy(addr, &((struct sockaddr_in *)&in6)->sin_addr, 4);
	else
		__builtin_memcpy(addr, &in6.sin6_addr, 16);
}

SEC("tracepoint/tcp/tcp_send_reset")
int tp_send_reset(struct trace_event_raw_tcp_send_reset *ctx)
{
	struct event e;
	__u16 family;

	zero(&e);
	e.ts_ns = bpf_ktime_get_ns();
	if (bpf_core_field_exists(ctx->reason)) {
		/* saddr is the host sending the reset, daddr its peer. */
		e.state = ctx->state;
		e.reason = ctx->reason;
		e.has_reason = 1;
		read_sockaddr(ctx->saddr, &e.family, &e.lport, e.laddr);
		read_sockaddr(ctx->daddr, &family, &e.rport, e.raddr);
	} else {
		struct trace_event_raw_tcp_event_sk_skb *old = (void *)ctx;

		if (bpf_core_field_exists(old->state))
			e.state = BPF_CORE_READ(old, state);
		e.family = BPF_CORE_READ(old, family);
		e.lport = BPF_CORE_READ(old, sport);
		e.rport = BPF_CORE_READ(old, dport);
		if (e.family == AF_INET) {
			bpf_core_read(e.laddr, 4, &old->saddr);
			bpf_core_read(e.raddr, 4, &old->daddr);
		} else {
			bpf_core_read(e.laddr, 16, &old->saddr_v6);
			bpf_core_read(e.raddr, 16, &old->daddr_v6);
		}
	}
	submit(&e);
	return 0;
}

/* kprobe path: the reset answers skb, so the skb's destination is local. */
static __always_inline void reset_from_skb(struct sock *sk, struct sk_buff *skb, __u16 family)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__u16 th = BPF_CORE_READ(skb, transport_header);
	__u8 tcp[20];
	struct event e;

	if (bpf_probe_read_kernel(tcp, sizeof(tcp), head + th))
		return;
	if (tcp[13] & 0x04) /* no reset is sent in answer to a reset */
		return;
	zero(&e);
	e.ts_ns = bpf_ktime_get_ns();
	e.family = family;
	e.rport = ((__u16)tcp[0] << 8) | tcp[1];
	e.lport = ((__u16)tcp[2] << 8) | tcp[3];
	if (sk)
		e.state = BPF_CORE_READ(sk, __sk_common.skc_state);
	if (family == AF_INET) {
		struct iphdr *ip = (void *)(head + nh);

		bpf_core_read(e.raddr, 4, &ip->saddr);
		bpf_core_read(e.laddr, 4, &ip->daddr);
	} else {
		struct ipv6hdr *ip6 = (void *)(head + nh);

		bpf_core_read(e.raddr, 16, &ip6->saddr);
		bpf_core_read(e.laddr, 16, &ip6->daddr);
	}
	submit(&e);
}

SEC("kprobe/tcp_v4_send_reset")
int BPF_KPROBE(kp_v4_send_reset, struct sock *sk, struct sk_buff *skb)
{
	reset_from_skb(sk, skb, AF_INET);
	return 0;
}

SEC("kprobe/tcp_v6_send_reset")
int BPF_KPROBE(kp_v6_send_reset, struct sock *sk, struct sk_buff *skb)
{
	reset_from_skb(sk, skb, AF_INET6);
	return 0;
}

/* Resets a socket sends on its own (close with unread data or linger 0,
 * aborts): tcp_send_active_reset. The tracepoint covers these; the kprobe
 * and fentry hooks need this second function. */
static __always_inline void reset_from_sock(struct sock *sk)
{
	struct owl_endpoints ep = {};
	struct event e;

	if (!owl_sock_endpoints(sk, &ep))
		return;
	zero(&e);
	e.ts_ns = bpf_ktime_get_ns();
	e.family = ep.family;
	e.lport = ep.lport;
	e.rport = ep.rport;
	e.state = BPF_CORE_READ(sk, __sk_common.skc_state);
	__builtin_memcpy(e.laddr, ep.laddr, 16);
	__builtin_memcpy(e.raddr, ep.raddr, 16);
	submit(&e);
}

SEC("kprobe/tcp_send_active_reset")
int BPF_KPROBE(kp_active_reset, struct sock *sk)
{
	reset_from_sock(sk);
	return 0;
}

SEC("fentry/tcp_send_active_reset")
int BPF_PROG(fentry_active_reset, struct sock *sk)
{
	reset_from_sock(sk);
	return 0;
}

/* The first two arguments are the same on every version. */
SEC("fentry/tcp_v4_send_reset")
int BPF_PROG(fentry_v4_send_reset, struct sock *sk, struct sk_buff *skb)
{
	reset_from_skb(sk, skb, AF_INET);
	return 0;
}

SEC("fentry/tcp_v6_send_reset")
int BPF_PROG(fentry_v6_send_reset, struct sock *sk, struct sk_buff *skb)
{
	reset_from_skb(sk, skb, AF_INET6);
	return 0;
}

const struct event *unused_event __attribute__((unused));
