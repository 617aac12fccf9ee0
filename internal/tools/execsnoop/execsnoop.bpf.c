//go:build ignore

/* execsnoop: new programs. A successful exec is reported from
 * sched:sched_process_exec, in the new image, with its argv read from
 * mm->arg_start..arg_end: the kernel has just written those pages, so no
 * argument is lost to a page not yet faulted in (as reads of the caller's
 * argv at sys_enter_execve can be). Failed execs (-x) have no new image:
 * sys_enter_execve(at) keeps the caller's argv pointer per thread and
 * sys_exit_execve(at) reads it when the exec failed. A successful exec
 * also reports the TCP and UDP sockets behind fds 0, 1 and 2 of the new
 * image (close-on-exec files are closed by then): a shell whose stdio is a
 * socket is a reverse shell's signature. */
#include "owl.h"
#include "sock.h"

#define FNAME_CAP 4096	/* PATH_MAX: the exec'd file */
#define ARGS_CAP 32768	/* bytes of argv kept; more is cut and marked */
#define CHUNK 4096	/* argv is read from the new image in reads of this size */
#define FAIL_ARGS 256	/* arguments read from a failed exec's argv array */

/* A record is this header, then stdio_count struct stdio_sock, then
 * fname_size bytes of file name (NUL included), then args_size bytes of
 * NUL-separated arguments. */
struct event {
	struct owl_task task; /* the new program's (comm included) */
	__u32 ppid;
	__s32 ret;	   /* 0, or -errno of a failed exec */
	__u32 fname_size;
	__u32 args_size;
	__u8 truncated;	   /* argv was longer than ARGS_CAP bytes or FAIL_ARGS arguments */
	__u8 unreadable;   /* part of argv could not be read */
	__u8 stdio_count;  /* sockets after the header: 0 to 3 */
	__u8 pad[5];
};

/* A TCP or UDP socket on fd 0, 1 or 2. */
struct stdio_sock {
	__u8 fd;
	__u8 family;   /* AF_INET or AF_INET6 */
	__u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;
	__u16 lport;   /* host order */
	__u16 rport;   /* host order */
	__u8 laddr[16];
	__u8 raddr[16];
};

#define STDIO_CAP (3 * sizeof(struct stdio_sock))

/* One record being built per CPU: too big for the stack or for a per-CPU
 * array value (32 KiB at most); tracepoint programs do not nest on a CPU.
 * The slack after ARGS_CAP lets a string read start anywhere below it. */
struct buf {
	struct event e;
	__u8 data[STDIO_CAP + FNAME_CAP + 2 * ARGS_CAP];
};

/* Masks a record's size: above its largest, within struct buf. */
#define SIZE_MASK 0xffff
_Static_assert(sizeof(struct event) + STDIO_CAP + FNAME_CAP + ARGS_CAP <= SIZE_MASK &&
	       SIZE_MASK < sizeof(struct buf), "SIZE_MASK");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* set from Go: one per possible CPU */
	__type(key, __u32);
	__type(value, struct buf);
} bufs SEC(".maps");

/* -x: the argv and file name pointers of execs in progress, by thread.
 * Each is taken back by the exec's end (sched_process_exec or the syscall
 * exit); only an exec that fails after the point of no return (the process
 * is killed) leaves its entry, until its thread id is reused. A failed put
 * is counted as a full table. */
struct start {
	__u64 filename;
	__u64 argv;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* allocated as used: cheap starts */
	__type(key, __u32);
	__type(value, struct start);
} starts SEC(".maps");

const volatile __u32 targ_ppid = 0; /* -P: 0 = any parent */

/* The stable layouts of the syscalls:* tracepoints, and of
 * sched:sched_process_exec (checked against tracefs from Go). */
struct syscall_enter {
	__u64 common;
	long nr;
	unsigned long args[6];
};

struct syscall_exit {
	__u64 common;
	long nr;
	long ret;
};

struct exec_args {
	__u64 common;
	__u32 filename; /* __data_loc: offset in the low 16 bits */
	__s32 pid;
	__s32 old_pid;	/* the thread that called exec */
};

/* The scratch record of this CPU with its header zeroed and filled, or
 * NULL when the task is not wanted. */
static __always_inline struct buf *start_record(__s32 ret)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 ppid = BPF_CORE_READ(task, real_parent, tgid);
	struct buf *b;

	if (!owl_task_wanted() || (targ_ppid && targ_ppid != ppid))
		return NULL;
	b = bpf_map_lookup_elem(&bufs, &cpu);
	if (!b)
		return NULL;
	__builtin_memset(&b->e, 0, sizeof(b->e));
	owl_task_fill(&b->e.task);
	b->e.ppid = ppid;
	b->e.ret = ret;
	return b;
}

static __always_inline void send(struct buf *b, __u64 stdio, __u64 fname, __u64 args)
{
	__u64 size;

	/* Clamped where the verifier sees it: the compiler would otherwise
	 * test a copy and pass the unchecked value on. */
	barrier_var(fname);
	if (fname > FNAME_CAP)
		fname = FNAME_CAP;
	barrier_var(args);
	if (args > ARGS_CAP)
		args = ARGS_CAP;
	b->e.fname_size = fname;
	b->e.args_size = args;
	size = sizeof(b->e) + stdio + fname + args;
	/* 6.1's verifier keeps neither clamp's bound ("R3 min value is
	 * negative"); this mask is a no-op (size < SIZE_MASK) that bounds
	 * the size by the record buffer. */
	barrier_var(size);
	size &= SIZE_MASK;
	owl_emit(b, size);
}

/* Clamps a string read's result to a size in [0, cap]. */
static __always_inline __u64 str_size(long n, __u64 cap)
{
	if (n < 0)
		return 0;
	if (n > cap)
		return cap;
	return n;
}

/* Puts the TCP and UDP sockets on fds 0 to 2 of task after the record's
 * header, in fd order, and their number in stdio_count. The count is read
 * back from the record each time (barrier()): to the verifier it is then
 * one unknown in [0, 3], not one known value per path through the walk,
 * so it verifies each fd, and the rest of the program, once. */
static __always_inline void stdio_socks(struct task_struct *task, struct buf *b)
{
	struct stdio_sock *out = (struct stdio_sock *)b->data;

#pragma unroll
	for (int fd = 0; fd < 3; fd++) {
		struct owl_endpoints ep = {};
		struct sock *sk = owl_fd_sock(task, fd);
		struct stdio_sock *s;
		__u8 proto;

		if (!sk || !owl_sock_inet(sk, &ep, &proto))
			continue;
		barrier();
		s = &out[b->e.stdio_count & 3];
		s->fd = fd;
		s->family = ep.family;
		s->protocol = proto;
		s->lport = ep.lport;
		s->rport = ep.rport;
		__builtin_memcpy(s->laddr, ep.laddr, 16);
		__builtin_memcpy(s->raddr, ep.raddr, 16);
		b->e.stdio_count++;
	}
	barrier();
}

SEC("tracepoint/sched/sched_process_exec")
int tp_exec(struct exec_args *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 old = ctx->old_pid;
	unsigned long start, end, len;
	__u64 stdio, fname, got = 0;
	struct buf *b;
	__u8 *args;

	/* The exec succeeded: its entry (kept with -x) is done. */
	owl_pending_taken(&starts, &old);
	b = start_record(0);
	if (!b)
		return 0;
	stdio_socks(task, b);
	stdio = (b->e.stdio_count & 3) * sizeof(struct stdio_sock);
	fname = str_size(bpf_probe_read_kernel_str(b->data + stdio, FNAME_CAP, (void *)ctx + (ctx->filename & 0xffff)), FNAME_CAP);
	start = BPF_CORE_READ(task, mm, arg_start);
	end = BPF_CORE_READ(task, mm, arg_end);
	len = end > start ? end - start : 0;
	if (len > ARGS_CAP) {
		len = ARGS_CAP;
		b->e.truncated = 1;
	}
	args = b->data + stdio + fname;
#pragma unroll
	for (int i = 0; i < ARGS_CAP / CHUNK; i++) {
		__u64 off = i * CHUNK, n;

		if (off >= len)
			break;
		n = len - off > CHUNK ? CHUNK : len - off;
		/* 6.1's verifier loses the clamp's bound on the way to the
		 * call ("R2 min value is negative"); a mask, kept by the
		 * barrier and a no-op here, gives it [0, 2 * CHUNK). */
		barrier_var(n);
		n &= 2 * CHUNK - 1;
		if (bpf_probe_read_user(args + off, n, (void *)(start + off))) {
			b->e.unreadable = 1;
			break;
		}
		got = off + n;
	}
	send(b, stdio, fname, got);
	return 0;
}

static __always_inline int on_enter(unsigned long filename, unsigned long argv)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start s = {.filename = filename, .argv = argv};

	if (!owl_task_wanted())
		return 0;
	owl_pending_put(&starts, &tid, &s);
	return 0;
}

static __always_inline int on_exit(long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start *sp = bpf_map_lookup_elem(&starts, &tid);
	struct start s;
	__u64 fname, off = 0;
	struct buf *b;
	__u8 *args;
	int i;

	if (!sp)
		return 0;
	s = *sp;
	owl_pending_taken(&starts, &tid);
	/* A successful exec was reported from its new image. */
	if (ret == 0)
		return 0;
	b = start_record(ret);
	if (!b)
		return 0;
	fname = str_size(bpf_probe_read_user_str(b->data, FNAME_CAP, (void *)s.filename), FNAME_CAP);
	args = b->data + fname;
	for (i = 0; i < FAIL_ARGS; i++) {
		unsigned long p = 0;
		long n;

		if (bpf_probe_read_user(&p, sizeof(p), (void *)(s.argv + i * sizeof(p)))) {
			b->e.unreadable = 1;
			break;
		}
		if (!p)
			break;
		if (off >= ARGS_CAP) {
			b->e.truncated = 1;
			break;
		}
		/* A no-op mask that shows the verifier off < ARGS_CAP. */
		barrier_var(off);
		off &= ARGS_CAP - 1;
		n = bpf_probe_read_user_str(args + off, ARGS_CAP, (void *)p);
		if (n <= 0) {
			b->e.unreadable = 1;
			break;
		}
		off += n;
	}
	if (i == FAIL_ARGS)
		b->e.truncated = 1;
	if (off > ARGS_CAP) {
		off = ARGS_CAP;
		b->e.truncated = 1;
	}
	send(b, 0, fname, off);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int tp_enter_execve(struct syscall_enter *ctx)
{
	return on_enter(ctx->args[0], ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int tp_enter_execveat(struct syscall_enter *ctx)
{
	return on_enter(ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_execve")
int tp_exit(struct syscall_exit *ctx)
{
	return on_exit(ctx->ret);
}

/* Keeps `struct event` in BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));
const struct stdio_sock *unused_stdio_sock __attribute__((unused));
