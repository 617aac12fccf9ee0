//go:build ignore

/* pamsnoop: PAM calls of applications, by uprobes in libpam.
 *
 * One entry program and one return program serve every function; the
 * attach cookie says which (enum fn). An entry keeps what the return
 * needs in `calls`, keyed by thread and function (a module's
 * pam_get_item runs inside pam_authenticate). A handle's service, user,
 * remote host and tty live in `handles`, keyed by process and handle
 * pointer: filled when pam_start returns *pamh, updated by pam_set_item
 * and pam_get_item, forgotten at pam_end. So pam_authenticate, which gets
 * only the handle, shows who is authenticating. struct pam_handle itself
 * is private to libpam and is not read. */
#include "owl.h"

/* Function ids: the attach cookies, and Event.Func in Go (same order). */
enum fn {
	FN_START,
	FN_START_CONFDIR,
	FN_AUTHENTICATE,
	FN_ACCT_MGMT,
	FN_OPEN_SESSION,
	FN_CLOSE_SESSION,
	FN_SET_ITEM,
	FN_GET_ITEM,
	FN_END,
};

/* Item types of pam_set_item and pam_get_item (_pam_types.h). */
#define PAM_SERVICE 1
#define PAM_USER 2
#define PAM_TTY 3
#define PAM_RHOST 4

struct pam_state {
	char service[32];
	char user[64];
	char rhost[64];
	char tty[32];
};

struct event {
	struct owl_task task;
	__u64 pamh;
	__s32 ret;
	__u32 fn;
	struct pam_state st;
};

/* What an entry hands to its return. */
struct call {
	__u64 pamh;  /* the handle, or for pam_start the pam_handle_t ** */
	__u64 item;  /* pam_get_item: the const void ** it fills */
	__u32 type;  /* pam_get_item: the item type */
	struct pam_state st; /* pam_start: service and user, read at entry */
};

struct call_key {
	__u64 pid_tgid;
	__u32 fn;
	__u32 pad;
};

struct handle_key {
	__u64 pamh;
	__u32 tgid;
	__u32 pad;
};

/* Calls in progress; puts and takes are counted, so evictions (a call
 * whose return never came, pushed out) show in the stats. */
/* LRU maps are preallocated whole: at 10240 entries each of the two cost
 * ~25 ms of CPU at every start (bpf_lru_populate). A thread is in one PAM
 * call at a time (two when a module calls back). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 2048);
	__type(key, struct call_key);
	__type(value, struct call);
} calls SEC(".maps");

/* Open handles. A process that exits without pam_end leaves its handles
 * here until the LRU drops them: later events of a dropped handle show
 * no service or user, nothing is lost. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct handle_key);
	__type(value, struct pam_state);
} handles SEC(".maps");

/* Registers as the uprobe context holds them (UAPI layouts). */
#if defined(__TARGET_ARCH_x86)
struct uregs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	__u64 orig_ax, ip, cs, flags, sp, ss;
};
#define ARG0(r) ((r)->di)
#define ARG1(r) ((r)->si)
#define ARG2(r) ((r)->dx)
#define ARG3(r) ((r)->cx)
#define ARG4(r) ((r)->r8)
#define RET(r) ((r)->ax)
#elif defined(__TARGET_ARCH_arm64)
#define uregs user_pt_regs
#define ARG0(r) ((r)->regs[0])
#define ARG1(r) ((r)->regs[1])
#define ARG2(r) ((r)->regs[2])
#define ARG3(r) ((r)->regs[3])
#define ARG4(r) ((r)->regs[4])
#define RET(r) ((r)->regs[0])
#endif

static __always_inline struct pam_state *handle_state(__u64 pamh, bool create)
{
	struct handle_key k = {.pamh = pamh, .tgid = bpf_get_current_pid_tgid() >> 32};
	static const struct pam_state empty = {};
	struct pam_state *st = bpf_map_lookup_elem(&handles, &k);

	if (st || !create || !pamh)
		return st;
	bpf_map_update_elem(&handles, &k, &empty, BPF_NOEXIST);
	return bpf_map_lookup_elem(&handles, &k);
}

/* Copies a string item into the handle's state. */
static __always_inline void set_item(__u64 pamh, __u32 type, const void *s)
{
	struct pam_state *st;

	if (type < PAM_SERVICE || type > PAM_RHOST || !s)
		return;
	st = handle_state(pamh, true);
	if (!st)
		return;
	switch (type) {
	case PAM_SERVICE:
		bpf_probe_read_user_str(st->service, sizeof(st->service), s);
		break;
	case PAM_USER:
		bpf_probe_read_user_str(st->user, sizeof(st->user), s);
		break;
	case PAM_TTY:
		bpf_probe_read_user_str(st->tty, sizeof(st->tty), s);
		break;
	case PAM_RHOST:
		bpf_probe_read_user_str(st->rhost, sizeof(st->rhost), s);
		break;
	}
}

/* pam_start's service and user, read at entry (the caller's strings). */
static __always_inline void start_args(struct call *c, struct uregs *ctx)
{
	const void *service = (const void *)ARG0(ctx), *user = (const void *)ARG1(ctx);

	bpf_probe_read_user_str(c->st.service, sizeof(c->st.service), service);
	if (user)
		bpf_probe_read_user_str(c->st.user, sizeof(c->st.user), user);
}

SEC("uprobe")
int pam_entry(struct uregs *ctx)
{
	__u32 fn = bpf_get_attach_cookie(ctx);
	struct call_key k = {.pid_tgid = bpf_get_current_pid_tgid(), .fn = fn};
	struct call c = {};

	if (!owl_task_wanted())
		return 0;
	switch (fn) {
	case FN_SET_ITEM:
		set_item(ARG0(ctx), ARG1(ctx), (const void *)ARG2(ctx));
		return 0;
	case FN_END: {
		struct handle_key hk = {.pamh = ARG0(ctx), .tgid = k.pid_tgid >> 32};

		bpf_map_delete_elem(&handles, &hk);
		return 0;
	}
	case FN_START:
		/* pam_start(service, user, conv, pamh) */
		c.pamh = ARG3(ctx);
		start_args(&c, ctx);
		break;
	case FN_START_CONFDIR:
		/* pam_start_confdir(service, user, conv, confdir, pamh) */
		c.pamh = ARG4(ctx);
		start_args(&c, ctx);
		break;
	case FN_GET_ITEM:
		c.type = ARG1(ctx);
		if (c.type < PAM_SERVICE || c.type > PAM_RHOST)
			return 0;
		c.pamh = ARG0(ctx);
		c.item = ARG2(ctx);
		break;
	default:
		c.pamh = ARG0(ctx);
	}
	owl_pending_put(&calls, &k, &c);
	return 0;
}

SEC("uretprobe")
int pam_return(struct uregs *ctx)
{
	__u32 fn = bpf_get_attach_cookie(ctx);
	struct call_key k = {.pid_tgid = bpf_get_current_pid_tgid(), .fn = fn};
	struct call *c = bpf_map_lookup_elem(&calls, &k);
	__s32 ret = RET(ctx);
	struct pam_state *st;
	struct event *e;
	__u64 pamh;

	if (!c)
		return 0; /* entered before attach, or not wanted */
	pamh = c->pamh;
	if (fn == FN_GET_ITEM) {
		const void *item = NULL;

		if (ret == 0 && !bpf_probe_read_user(&item, sizeof(item), (void *)c->item))
			set_item(pamh, c->type, item);
		owl_pending_taken(&calls, &k);
		return 0;
	}
	e = owl_reserve(sizeof(*e));
	if (!e) {
		owl_pending_taken(&calls, &k);
		return 0;
	}
	owl_task_fill(&e->task);
	e->ret = ret;
	e->fn = fn;
	if (fn == FN_START || fn == FN_START_CONFDIR) {
		/* *pamh is set on success (and NULL on most failures). */
		__u64 h = 0;

		if (pamh)
			bpf_probe_read_user(&h, sizeof(h), (void *)pamh);
		e->pamh = h;
		e->st = c->st;
		if (ret == 0 && h) {
			struct handle_key hk = {.pamh = h, .tgid = k.pid_tgid >> 32};

			bpf_map_update_elem(&handles, &hk, &c->st, BPF_ANY);
		}
	} else {
		e->pamh = pamh;
		st = handle_state(pamh, false);
		if (st)
			e->st = *st;
	}
	owl_pending_taken(&calls, &k);
	owl_submit(e, sizeof(*e));
	return 0;
}

/* Keeps `struct event` in BTF for bpf2go -type event. */
const struct event *unused_event __attribute__((unused));
