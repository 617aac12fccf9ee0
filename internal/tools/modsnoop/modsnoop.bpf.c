//go:build ignore

/* modsnoop: kernel module loads, with the module's name, its taints and
 * the file finit_module read it from. The syscalls' entries note, per
 * thread, which fd is being loaded (or none, for init_module); the event
 * (module:module_load, do_init_module, or the syscall's successful exit)
 * walks that fd's path while the loading thread still holds it. */
#include "owl.h"
#include "path.h"

#define NAME_LEN 64 /* the kernel's MODULE_NAME_LEN is 56 */

struct event {
	struct owl_task task;
	__u64 taints;		/* TAINT_* bits of the module */
	__u8 name[NAME_LEN];	/* empty with the syscalls hook */
	__u8 has_taints;	/* 0: the hook does not give them */
	__u8 has_file;		/* 1: finit_module, file is set */
	__u8 pad[6];
	struct owl_path file;
};

/* The load each thread is in: the fd of finit_module, -1 for init_module. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __s32);
} loading SEC(".maps");

/* Zeros to clear a reserved event with: it is too big for owl_reserve's
 * __builtin_memset. Never written. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct event);
} zeros SEC(".maps");

/* Layouts of the tracepoints, checked against tracefs from Go. */
struct module_load_args {
	__u64 common;
	__u32 taints;
	__u32 name;	/* __data_loc: offset in the low 16 bits */
};

struct sys_enter_args {
	__u64 common;
	__s64 nr;
	__u64 args[6];
};

struct sys_exit_args {
	__u64 common;
	__s64 nr;
	__s64 ret;
};

/* Reserves an event of the current task with its file, or NULL. */
static __always_inline struct event *start(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct event *e, *zero;
	__u32 k = 0;
	__s32 *fd;
	struct file *f;

	if (!owl_task_wanted())
		return NULL;
	zero = bpf_map_lookup_elem(&zeros, &k);
	if (!zero)
		return NULL;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		owl_count(OWL_DROP_RING_FULL);
		return NULL;
	}
	bpf_probe_read_kernel(e, sizeof(*e), zero);
	owl_task_fill(&e->task);
	fd = bpf_map_lookup_elem(&loading, &tid);
	if (fd && *fd >= 0) {
		f = owl_fd_file(*fd);
		if (f) {
			owl_file_path(f, &e->file);
			e->has_file = 1;
		}
	}
	return e;
}

static __always_inline void enter(__s32 fd)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (owl_task_wanted())
		owl_pending_put(&loading, &tid, &fd);
}

SEC("tracepoint/syscalls/sys_enter_finit_module")
int tp_enter_finit(struct sys_enter_args *ctx)
{
	enter((__s32)ctx->args[0]);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_init_module")
int tp_enter_init(struct sys_enter_args *ctx)
{
	enter(-1);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_finit_module")
int tp_exit(struct sys_exit_args *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	owl_pending_taken(&loading, &tid);
	return 0;
}

/* The syscalls hook: a successful finit_module or init_module is a load;
 * the name is the file's (Go), the taints unknown. */
SEC("tracepoint/syscalls/sys_exit_finit_module")
int tp_exit_emit(struct sys_exit_args *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct event *e;

	if (ctx->ret == 0) {
		e = start();
		if (e)
			owl_submit(e, sizeof(*e));
	}
	owl_pending_taken(&loading, &tid);
	return 0;
}

SEC("tracepoint/module/module_load")
int tp_module_load(struct module_load_args *ctx)
{
	struct event *e = start();

	if (!e)
		return 0;
	e->taints = ctx->taints;
	e->has_taints = 1;
	bpf_probe_read_kernel_str(e->name, sizeof(e->name), (void *)ctx + (ctx->name & 0xffff));
	owl_submit(e, sizeof(*e));
	return 0;
}

static __always_inline void from_module(struct module *mod)
{
	struct event *e = start();

	if (!e)
		return;
	e->taints = BPF_CORE_READ(mod, taints);
	e->has_taints = 1;
	BPF_CORE_READ_STR_INTO(&e->name, mod, name);
	owl_submit(e, sizeof(*e));
}

SEC("fentry/do_init_module")
int BPF_PROG(fentry_do_init_module, struct module *mod)
{
	from_module(mod);
	return 0;
}

SEC("kprobe/do_init_module")
int BPF_KPROBE(kprobe_do_init_module, struct module *mod)
{
	from_module(mod);
	return 0;
}

const struct event *unused_event __attribute__((unused));
