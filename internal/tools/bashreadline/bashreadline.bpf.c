//go:build ignore

/* bashreadline: the lines interactive bash reads, by a uretprobe on
 * readline(): in bash itself where it is linked in statically (Debian),
 * or in libreadline where bash loads it. Other programs use libreadline
 * too (python, gdb, sqlite3): there only tasks named bash are traced,
 * as BCC does, unless all_comms. */
#include "owl.h"

#define MAX_LINE 512

struct event {
	struct owl_task task;
	__u32 len;	 /* bytes read, NUL included; MAX_LINE: maybe cut */
	__u8 line[MAX_LINE];
};

/* Set from Go: readline is in a shared library, keep bash's lines only. */
const volatile __u8 bash_only = 0;

#if defined(__TARGET_ARCH_x86)
struct uregs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	__u64 orig_ax, ip, cs, flags, sp, ss;
};
#define RET(r) ((r)->ax)
#elif defined(__TARGET_ARCH_arm64)
#define uregs user_pt_regs
#define RET(r) ((r)->regs[0])
#endif

static __always_inline bool is_bash(void)
{
	char comm[16];

	bpf_get_current_comm(comm, sizeof(comm));
	return comm[0] == 'b' && comm[1] == 'a' && comm[2] == 's' && comm[3] == 'h' && comm[4] == 0;
}

SEC("uretprobe")
int readline_return(struct uregs *ctx)
{
	const void *line = (const void *)RET(ctx);
	struct event *e;
	long n;

	if (!line) /* end of input */
		return 0;
	if (!owl_task_wanted())
		return 0;
	if (bash_only && !is_bash())
		return 0;
	e = owl_reserve(sizeof(*e));
	if (!e)
		return 0;
	owl_task_fill(&e->task);
	n = bpf_probe_read_user_str(e->line, sizeof(e->line), line);
	e->len = n > 0 ? n : 0;
	owl_submit(e, sizeof(*e));
	return 0;
}

/* Keeps `struct event` in BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));
