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

/* The socket behind a file descriptor, for tools that find one in a task's
 * file table (execsnoop's stdio). CO-RE reads: task_struct, files_struct,
 * fdtable, file, inode, socket. */
#define OWL_S_IFMT 00170000
#define OWL_S_IFSOCK 0140000

/* The socket of a socket file, NULL for any other file. The file may be
 * closed and its number reused while this runs: a socket's private_data is
 * its struct socket, which points back to the file. */
static __always_inline struct sock *owl_file_sock(struct file *file)
{
	struct socket *sock;

	if ((BPF_CORE_READ(file, f_inode, i_mode) & OWL_S_IFMT) != OWL_S_IFSOCK)
		return NULL;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return NULL;
	return BPF_CORE_READ(sock, sk);
}

/* The socket of fd in task's file table, NULL when fd is not open or not
 * a socket. */
static __always_inline struct sock *owl_fd_sock(struct task_struct *task, unsigned int fd)
{
	struct file **fds, *file = NULL;

	if (fd >= BPF_CORE_READ(task, files, fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (!fds || bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	return owl_file_sock(file);
}

/* Family, ports and addresses of a TCP (or MPTCP) stream or UDP datagram
 * socket over IPv4 or IPv6, and its protocol (IPPROTO_TCP, IPPROTO_UDP;
 * MPTCP as TCP: it holds its first subflow's endpoints). False for any
 * other socket (unix, raw, ping, UDP-Lite, SCTP...). An unconnected UDP
 * socket has a zero remote address and port. */
static __always_inline bool owl_sock_inet(struct sock *sk, struct owl_endpoints *ep, __u8 *proto)
{
	__u16 p = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	__u16 type = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_type);

	if (type == SOCK_STREAM && (p == IPPROTO_TCP || p == OWL_IPPROTO_MPTCP))
		*proto = IPPROTO_TCP;
	else if (type == SOCK_DGRAM && p == IPPROTO_UDP)
		*proto = IPPROTO_UDP;
	else
		return false;
	ep->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	ep->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
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
