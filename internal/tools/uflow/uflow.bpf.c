//go:build ignore

/* uflow: one event per method entry and return of a language runtime,
 * with the thread's call depth and, at a return whose entry was seen, the
 * time since it. Entries are kept on a per-thread stack of method name
 * pointers (as ucalls'): a return pops its entry, and a return whose
 * entry was not seen (Python 3.11 fires entries only for generators)
 * leaves the depth alone. -C and -M (class and method prefixes) are
 * matched here, after the stack is kept: a filtered call still counts in
 * the depth, and takes no ring space. */
#include "owl.h"
#include "usdt.h"

#define NAME_LEN 80
#define MAX_DEPTH 64
#define SEARCH 4

enum { ROLE_ENTRY = 1, ROLE_RETURN = 2 };

struct event {
	struct owl_task task;
	__u64 elapsed_ns;	/* at a return paired with its entry, else 0 */
	__u32 depth;		/* entries on the thread's stack, this one included */
	__u8 role;
	__u8 paired;
	__u16 pad;
	char cls[NAME_LEN];
	char method[NAME_LEN];
};

struct uframe {
	__u64 method;
	__u64 ts;
};

struct ustack {
	__u32 depth;
	__u32 pad;
	struct uframe f[MAX_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct ustack);
} stacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ustack);
} empty SEC(".maps");

const struct event *unused_event __attribute__((unused));

/* Prefixes of the classes and methods to print (-C, -M); length 0: all. */
const volatile char class_prefix[NAME_LEN] = {};
const volatile __u32 class_prefix_len = 0;
const volatile char method_prefix[NAME_LEN] = {};
const volatile __u32 method_prefix_len = 0;

static __always_inline bool has_prefix(const char *s, const volatile char *p, __u32 n)
{
	for (__u32 i = 0; i < NAME_LEN; i++) {
		if (i >= n)
			return true;
		if (s[i] != p[i])
			return false;
	}
	return true;
}

static __always_inline struct ustack *stack(void)
{
	__u32 tid = bpf_get_current_pid_tgid(), zero = 0;
	struct ustack *st = bpf_map_lookup_elem(&stacks, &tid);
	void *e;

	if (st)
		return st;
	e = bpf_map_lookup_elem(&empty, &zero);
	if (!e)
		return 0;
	bpf_map_update_elem(&stacks, &tid, e, BPF_NOEXIST);
	return bpf_map_lookup_elem(&stacks, &tid);
}

SEC("uprobe")
int uflow_hit(struct pt_regs *ctx)
{
	const struct usdt_spec *spec;
	struct ustack *st;
	struct event *e;
	__u64 method = 0, now = bpf_ktime_get_ns();
	__u32 d, i;

	if (!owl_task_wanted())
		return 0;
	spec = usdt_spec(ctx);
	if (!spec)
		return 0;
	st = stack();
	if (!st)
		return 0;
	usdt_arg(ctx, spec, usdt_cookie_byte(spec, 6), &method);
	e = owl_reserve(sizeof(*e));
	if (!e)
		return 0;
	e->role = usdt_cookie_byte(spec, 0);
	d = st->depth;
	if (e->role == ROLE_ENTRY) {
		if (d < MAX_DEPTH) {
			st->f[d].method = method;
			st->f[d].ts = now;
		}
		st->depth = d + 1;
		e->depth = d + 1;
	} else {
		e->depth = d;
		if (d > MAX_DEPTH) {
			st->depth = d - 1;
		} else {
			for (i = 1; i <= SEARCH; i++) {
				__u32 j = d - i;

				if (i > d || j >= MAX_DEPTH)
					break;
				if (st->f[j].method == method) {
					e->elapsed_ns = now - st->f[j].ts;
					e->paired = 1;
					e->depth = j + 1;
					st->depth = j;
					break;
				}
			}
		}
	}
	owl_task_fill(&e->task);
	usdt_str(ctx, spec, usdt_cookie_byte(spec, 4), usdt_cookie_byte(spec, 5), e->cls, NAME_LEN);
	usdt_str(ctx, spec, usdt_cookie_byte(spec, 6), usdt_cookie_byte(spec, 7), e->method, NAME_LEN);
	if (!has_prefix(e->cls, class_prefix, class_prefix_len) ||
	    !has_prefix(e->method, method_prefix, method_prefix_len)) {
		bpf_ringbuf_discard(e, 0);
		return 0;
	}
	owl_submit(e, sizeof(*e));
	return 0;
}
