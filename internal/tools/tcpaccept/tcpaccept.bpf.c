//go:build ignore

/* tcpaccept: passive TCP accepts. At the exit of accept(2)/accept4(2) the
 * task is the server and the return value is the new fd: walk
 * current->files to its socket. Unlike a hook on inet_csk_accept's entry,
 * this also sees an accept that was already blocked when tracing began. */
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
	bpf_ringbuf_submit(e, 0);
}

static __always_inline int accept_exit(long fd)
{
	struct task_struct *task;
	struct file **fds, *file;
	struct socket *sock;
	unsigned int max;

	if (fd < 0 || !owl_task_wanted())
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	max = BPF_CORE_READ(task, files, fdt, max_fds);
	if ((unsigned long)fd >= max)
		return 0;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	/* accept only returns socket fds, whose private_data is the socket. */
	sock = BPF_CORE_READ(file, private_data);
	if (!sock)
		return 0;
	emit_accept(BPF_CORE_READ(sock, sk));
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
