//go:build ignore

/* opensnoop: open(2), openat(2) and openat2(2) with path, flags, mode and
 * result. The entry keeps each thread's call (task, flags, the path read
 * then) in a table; the exit emits it with the result. A path whose page
 * was not yet faulted in cannot be read at entry: it is read at exit, once
 * the kernel has copied it (and so faulted it in).
 *
 * -F (targ_full_path): at exit, a relative path gets the names of the
 * directory it is relative to (the cwd for AT_FDCWD, else dfd's), walked up
 * to the mount namespace's root by path.h. */
#include "owl.h"
#include "path.h"
#include "python.h"

#define PATH_CAP 4096 /* PATH_MAX */
#define AT_FDCWD -100
#define DIR_CAP 4096  /* bytes of directory names (-F) */
#define DIR_DEPTH 32  /* directory names (-F) */
#define NAME_CAP 256  /* NAME_MAX and the NUL */

/* A record is this header, then path_size bytes of path (NUL included),
 * then dir_size bytes of the directory's names (-F), each with its NUL,
 * innermost first. */
struct event {
	struct owl_task task; /* at entry */
	__s64 ret;	      /* fd, or -errno */
	__s32 flags;
	__u32 mode;
	__s32 dfd;	      /* AT_FDCWD (-100) for open(2) */
	__u32 path_size;
	__u32 dir_size;
	__u8 syscall;	      /* SC_* */
	__u8 path_at_exit;    /* not readable at entry: read at exit */
	__u8 dir;	      /* DIR_* */
	__u8 pad[5];
	struct owl_ustack ustack; /* --ustack, at entry; native -1 when not taken */
};

enum { SC_OPEN, SC_OPENAT, SC_OPENAT2 };

/* What the names after the path are (-F). */
enum {
	DIR_NONE,     /* not asked for (no -F, an absolute or empty path) */
	DIR_COMPLETE, /* up to the root */
	DIR_CUT,      /* the innermost DIR_DEPTH names or DIR_CAP bytes */
	DIR_UNKNOWN,  /* no such dfd, or no cwd */
};

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

/* Where a record with a directory is built (-F): the header, the path
 * copied from the call's entry and the names after it. */
struct full {
	struct event e;
	__u8 text[PATH_CAP + DIR_CAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* with -F, set from Go: one per possible CPU */
	__type(key, __u32);
	__type(value, struct full);
} fulls SEC(".maps");

const volatile __u32 targ_tid = 0;	/* -t: 0 = any thread */
const volatile __u8 targ_failed = 0;	/* -x */
/* -f: wanted when the access mode's bit (1 << (flags & 3)) is in
 * targ_accmodes or flags share a bit with targ_flags; both 0 = all. */
const volatile __u32 targ_accmodes = 0;
const volatile __u32 targ_flags = 0;
const volatile __u8 targ_full_path = 0; /* -F */
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

/* A walk up from the directory of a relative path (-F), by bpf_loop so
 * that the verifier checks one step, not every path through 64. */
struct walk {
	struct full *o;
	struct mount *mnt;
	struct dentry *d;
	__u32 size; /* of the path in o->text; the names go after it */
	__u32 n;    /* bytes of names */
	__u32 depth;
};

/* Takes one name (and its NUL) or crosses one mount; 1 ends the walk. */
static long walk_step(__u64 i, void *arg)
{
	struct walk *w = arg;
	__u32 off = w->size + w->n;
	struct dentry *d;
	long r;

	switch (owl_path_up(&w->mnt, &w->d)) {
	case OWL_UP_ROOT:
		w->o->e.dir = DIR_COMPLETE;
		return 1;
	case OWL_UP_MOUNT:
		return 0;
	default:
		break;
	}
	if (w->depth >= DIR_DEPTH || w->n > DIR_CAP - NAME_CAP || off > PATH_CAP + DIR_CAP - NAME_CAP)
		return 1; /* cut */
	d = w->d; /* a local: CO-RE relocates against the kernel's types only */
	r = bpf_probe_read_kernel_str(w->o->text + off, NAME_CAP, BPF_CORE_READ(d, d_name.name));
	if (r <= 0)
		return 1;
	w->n += r;
	w->depth++;
	w->d = BPF_CORE_READ(d, d_parent);
	return 0;
}

/* Emits s (its path is size bytes) followed by the names of the directory
 * its relative path starts from, found now, at exit: the thread cannot
 * chdir in the call, and dfd stays open unless another thread closes it. */
static __always_inline void emit_full(struct start *s, __u64 size)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	__u32 cpu = bpf_get_smp_processor_id();
	struct walk w = {.o = bpf_map_lookup_elem(&fulls, &cpu), .size = size};
	struct file *f;
	__u64 total;

	if (!w.o)
		return;
	w.o->e = s->e;
	bpf_probe_read_kernel(w.o->text, size, s->path);
	if (s->e.dfd == AT_FDCWD) {
		w.mnt = owl_real_mount(BPF_CORE_READ(task, fs, pwd.mnt));
		w.d = BPF_CORE_READ(task, fs, pwd.dentry);
	} else if ((f = owl_fd_file(s->e.dfd))) {
		w.mnt = owl_real_mount(BPF_CORE_READ(f, f_path.mnt));
		w.d = BPF_CORE_READ(f, f_path.dentry);
	}
	w.o->e.dir = w.d ? DIR_CUT : DIR_UNKNOWN; /* DIR_COMPLETE at the root */
	if (w.d)
		bpf_loop(2 * DIR_DEPTH, walk_step, &w, 0);
	w.o->e.dir_size = w.n;
	total = sizeof(w.o->e) + size + w.n;
	/* Clamped where the verifier sees it (never needed). */
	barrier_var(total);
	if (total > sizeof(*w.o))
		total = sizeof(*w.o);
	owl_emit(w.o, total);
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
		if (targ_full_path && size > 1 && s->path[0] != '/')
			emit_full(s, size);
		else
			owl_emit(&s->e, sizeof(s->e) + size);
	}
	owl_pending_taken(&starts, &tid);
	return 0;
}

/* Keeps `struct event` in BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));
