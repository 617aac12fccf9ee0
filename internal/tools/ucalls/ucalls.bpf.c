//go:build ignore

/* ucalls: calls per method of a language runtime, counted at the method's
 * return probe (Python 3.11's entry probe fires only for generators), and
 * with -L the time since the matching entry, paired on a per-thread stack
 * of method name pointers (the same at entry and return; Ruby's class names
 * are built anew each time). Each location's cookie (langs.Cookie) says
 * whether it is an entry or a return and which arguments hold the names. */
#include "owl.h"
#include "usdt.h"

#define NAME_LEN 96
#define MAX_DEPTH 64
#define SEARCH 4	/* frames looked through for a return's entry */

enum { ROLE_ENTRY = 1, ROLE_RETURN = 2 };

struct mkey {
	__u32 kind;	/* the cookie's kind: 1 for Ruby's C methods */
	char cls[NAME_LEN];	/* class, or file for Python */
	char method[NAME_LEN];
};

struct minfo {
	__u64 calls;	/* returns seen */
	__u64 timed;	/* of which paired with their entry */
	__u64 ns;	/* total time of the timed ones */
};

struct uframe {
	__u64 method;	/* the method name's pointer */
	__u64 ts;
};

struct ustack {
	__u32 depth;	/* may exceed MAX_DEPTH: those frames are not kept */
	__u32 pad;
	struct uframe f[MAX_DEPTH];
};

/* Sized from Go (MaxEntries). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct mkey);
	__type(value, struct minfo);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct ustack);
} stacks SEC(".maps");

/* A zeroed stack to create entries from (too big for the BPF stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ustack);
} empty SEC(".maps");

const volatile bool latency = false;

const struct mkey *unused_key __attribute__((unused));
const struct minfo *unused_info __attribute__((unused));

static __always_inline void entry(__u64 method)
{
	__u32 tid = bpf_get_current_pid_tgid(), zero = 0;
	struct ustack *st = bpf_map_lookup_elem(&stacks, &tid);
	__u32 d;

	if (!st) {
		void *e = bpf_map_lookup_elem(&empty, &zero);

		if (!e)
			return;
		bpf_map_update_elem(&stacks, &tid, e, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&stacks, &tid);
		if (!st)
			return;
	}
	d = st->depth;
	if (d < MAX_DEPTH) {
		st->f[d].method = method;
		st->f[d].ts = bpf_ktime_get_ns();
	}
	st->depth = d + 1;
}

/* The time since the entry of this return, popping it (and frames whose
 * return was missed above it), or 0 when its entry was not seen. */
static __always_inline __u64 pop(__u64 method)
{
	__u32 tid = bpf_get_current_pid_tgid();
	struct ustack *st = bpf_map_lookup_elem(&stacks, &tid);
	__u32 d, i;

	if (!st || st->depth == 0)
		return 0;
	d = st->depth;
	if (d > MAX_DEPTH) {
		st->depth = d - 1;	/* a frame too deep to keep */
		return 0;
	}
	for (i = 1; i <= SEARCH; i++) {
		__u32 j = d - i;

		if (i > d || j >= MAX_DEPTH)
			break;
		if (st->f[j].method == method) {
			st->depth = j;
			return bpf_ktime_get_ns() - st->f[j].ts;
		}
	}
	return 0;
}

SEC("uprobe")
int ucalls_hit(struct pt_regs *ctx)
{
	const struct usdt_spec *spec;
	struct mkey k = {};
	struct minfo *info, zero = {};
	__u64 method = 0, ns = 0;
	__u8 role;

	if (!owl_task_wanted())
		return 0;
	spec = usdt_spec(ctx);
	if (!spec)
		return 0;
	role = usdt_cookie_byte(spec, 0);
	usdt_arg(ctx, spec, usdt_cookie_byte(spec, 6), &method);
	if (role == ROLE_ENTRY) {
		if (latency)
			entry(method);
		return 0;
	}
	if (latency)
		ns = pop(method);
	k.kind = usdt_cookie_byte(spec, 1);
	usdt_str(ctx, spec, usdt_cookie_byte(spec, 4), usdt_cookie_byte(spec, 5), k.cls, sizeof(k.cls));
	usdt_str(ctx, spec, usdt_cookie_byte(spec, 6), usdt_cookie_byte(spec, 7), k.method, sizeof(k.method));
	info = bpf_map_lookup_elem(&counts, &k);
	if (!info) {
		bpf_map_update_elem(&counts, &k, &zero, BPF_NOEXIST);
		info = bpf_map_lookup_elem(&counts, &k);
		if (!info) {
			owl_count(OWL_DROP_MAP_FULL);
			return 0;
		}
	}
	__sync_fetch_and_add(&info->calls, 1);
	if (ns) {
		__sync_fetch_and_add(&info->timed, 1);
		__sync_fetch_and_add(&info->ns, ns);
	}
	return 0;
}

