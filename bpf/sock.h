/* TCP endpoints: the address-family and port filters (-4, -6, -P) every
 * network tool shares, and reading endpoints out of a struct sock with CO-RE
 * for the hooks that only have the socket (kprobes, accept's new fd). */
#pragma once

#include "owl.h"

/* -4/-6: AF_INET or AF_INET6, 0 for both. -P: owl_filter_ports and the
 * ports (host order) in owl_ports. Set from Go (probe.Net). */
const volatile __u16 owl_targ_family = 0;
const volatile bool owl_filter_ports = false;

/* Up to OWL_MAX_PORTS (probe.MaxPorts) ports; not preallocated. */
#define OWL_MAX_PORTS 1024
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OWL_MAX_PORTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u16);
	__type(value, __u8);
} owl_ports SEC(".maps");

static __always_inline bool owl_endpoint_wanted(__u16 family, __u16 port)
{
	if (owl_targ_family && owl_targ_family != family)
		return false;
	return !owl_filter_ports || bpf_map_lookup_elem(&owl_ports, &port);
}

struct owl_endpoints {
	__u16 family;
	__u16 lport; /* host order */
	__u16 rport; /* host order */
	__u8 laddr[16];
	__u8 raddr[16];
};

#define OWL_IPPROTO_MPTCP 262

/* Returns false for sockets that are not TCP or MPTCP over IPv4 or IPv6.
 * An MPTCP socket (what accept returns for socket(..., IPPROTO_MPTCP)
 * peers) holds the addresses and ports of its first subflow, a TCP socket
 * of its own that the TCP hooks see; only accept hands out the MPTCP one. */
static __always_inline bool owl_sock_endpoints(struct sock *sk, struct owl_endpoints *ep)
{
	__u16 proto = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);

	if (proto != IPPROTO_TCP && proto != OWL_IPPROTO_MPTCP)
		return false;
	ep->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	ep->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	/* A connection reset before it was accepted has released its port
	 * binding (skc_num is 0) but still has the port it used. */
	if (!ep->lport)
		ep->lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	ep->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (ep->family == AF_INET) {
		bpf_core_read(ep->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(ep->raddr, 4, &sk->__sk_common.skc_daddr);
		return true;
	}
	if (ep->family == AF_INET6) {
		bpf_core_read(ep->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(ep->raddr, 16, &sk->__sk_common.skc_v6_daddr);
		return true;
	}
	return false;
}
