//go:build ignore

/* opensnoop: open(2), openat(2) and openat2(2) with path, flags, mode and
 * result. The entry keeps each thread's call (task, flags, the path read
 * then) in a table; the exit emits it with the result. A path whose page
 * was not yet faulted in cannot be read at entry: it is read at exit, once
 * the kernel has copied it (and so faulted it in). */
#include "owl.h"
#include "python.h"

#define PATH_CAP 4096 /* PATH_MAX */
#define AT_FDCWD -100

/* A record is this header, then path_size bytes of path (NUL included). */
struct event {
	struct owl_task task; /* at entry */
	__s64 ret;	      /* fd, or -errno */
	__s32 flags;
	__u32 mode;
	__s32 dfd;	      /* AT_FDCWD (-100) for open(2) */
	__u32 path_size;
	__u8 syscall;	      /* SC_* */
	__u8 path_at_exit;    /* not readable at entry: read at exit */
	__u8 pad[6];
	struct owl_ustack ustack; /* --ustack, at entry; native -1 when not taken */
};

enum { SC_OPEN, SC_OPENAT, SC_OPENAT2 };

/* A call in progress: the record to emit at exit, and where the path is
 * in the caller's memory. */
struct start {
	__u64 filename;
	struct event e;
	__u8 path[PATH_CAP];
};

/* Allocated per call (no preallocation: ~4 KiB an entry); a failed put
 * is counted as a full table. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct start);
} starts SEC(".maps");

/* Where an entry is built: too big for the stack. Tracepoint programs do
 * not nest on a CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* set from Go: one per possible CPU */
	__type(key, __u32);
	__type(value, struct start);
} bufs SEC(".maps");

const volatile __u32 targ_tid = 0;	/* -t: 0 = any thread */
const volatile __u8 targ_failed = 0;	/* -x */
/* -f: wanted when the access mode's bit (1 << (flags & 3)) is in
 * targ_accmodes or flags share a bit with targ_flags; both 0 = all. */
const volatile __u32 targ_accmodes = 0;
const volatile __u32 targ_flags = 0;
const volatile bool want_ustack = false; /* --ustack */

/* The stable layouts of the syscalls:* tracepoints (struct open_how, a
 * UAPI struct, comes from vmlinux.h). */
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

static __always_inline bool flags_wanted(__u32 flags)
{
	if (!targ_accmodes && !targ_flags)
		return true;
	return (targ_accmodes & (1 << (flags & 3))) || (flags & targ_flags);
}

static __always_inline int on_enter(void *ctx, __u8 sc, long dfd, unsigned long filename, __u32 flags, __u32 mode)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id, cpu = bpf_get_smp_processor_id();
	struct start *s;
	long n;

	if (!owl_task_wanted() || (targ_tid && targ_tid != tid) || !flags_wanted(flags))
		return 0;
	s = bpf_map_lookup_elem(&bufs, &cpu);
	if (!s)
		return 0;
	__builtin_memset(&s->e, 0, sizeof(s->e));
	owl_task_fill(&s->e.task);
	s->filename = filename;
	s->e.flags = flags;
	s->e.mode = mode;
	s->e.dfd = dfd;
	s->e.syscall = sc;
	s->e.ustack.native = -1;
	if (want_ustack)
		owl_user_stack(ctx, &s->e.ustack);
	n = bpf_probe_read_user_str(s->path, PATH_CAP, (void *)filename);
	s->e.path_size = n > 0 ? n : 0;
	owl_pending_put(&starts, &tid, s);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int tp_enter_open(struct syscall_enter *ctx)
{
	return on_enter(ctx, SC_OPEN, AT_FDCWD, ctx->args[0], ctx->args[1], ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int tp_enter_openat(struct syscall_enter *ctx)
{
	return on_enter(ctx, SC_OPENAT, (int)ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int tp_enter_openat2(struct syscall_enter *ctx)
{
	struct open_how how = {};

	/* A bad pointer leaves flags and mode 0; the call then fails. */
	bpf_probe_read_user(&how, sizeof(how), (void *)ctx->args[2]);
	return on_enter(ctx, SC_OPENAT2, (int)ctx->args[0], ctx->args[1], how.flags, how.mode);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int tp_exit(struct syscall_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start *s = bpf_map_lookup_elem(&starts, &tid);
	__u64 size;

	if (!s)
		return 0;
	if (!targ_failed || ctx->ret < 0) {
		s->e.ret = ctx->ret;
		if (!s->e.path_size) {
			long n = bpf_probe_read_user_str(s->path, PATH_CAP, (void *)s->filename);

			s->e.path_size = n > 0 ? n : 0;
			s->e.path_at_exit = 1;
		}
		size = s->e.path_size;
		/* Clamped where the verifier sees it. */
		barrier_var(size);
		if (size > PATH_CAP)
			size = PATH_CAP;
		owl_emit(&s->e, sizeof(s->e) + size);
	}
	owl_pending_taken(&starts, &tid);
	return 0;
}

/* Keeps `struct event` in BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));
