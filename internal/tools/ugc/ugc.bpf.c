//go:build ignore

/* ugc: one event per garbage collection (or GC phase) of a language
 * runtime: its begin probe keeps the time and up to two arguments per
 * thread, its end probe emits the time taken with both probes' arguments
 * and up to two names. Each location's cookie (langs.Cookie) says begin
 * or end, the kind of GC, and which arguments to keep. */
#include "owl.h"
#include "usdt.h"

#define NAME_LEN 48

enum { ROLE_BEGIN = 1, ROLE_END = 2 };

struct event {
	struct owl_task task;
	__u64 elapsed_ns;
	__u64 begin[2];	/* the begin probe's arguments (cookie's values) */
	__u64 end[2];	/* the end probe's */
	__u32 kind;
	__u32 pad;
	char names[2][NAME_LEN];
};

struct start_key {
	__u32 tid;
	__u32 kind;
	__u64 which;	/* the second string's pointer: hotspot's pool */
};

struct start {
	__u64 ts;
	__u64 vals[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct start_key);
	__type(value, struct start);
} starts SEC(".maps");

/* GCs shorter than this are not reported (-M). */
const volatile __u64 min_ns = 0;

const struct event *unused_event __attribute__((unused));

static __always_inline void vals(void *ctx, const struct usdt_spec *spec, __u64 *v)
{
	__u8 a = usdt_cookie_byte(spec, 2), b = usdt_cookie_byte(spec, 3);

	if (a != USDT_NONE)
		usdt_arg(ctx, spec, a, &v[0]);
	if (b != USDT_NONE)
		usdt_arg(ctx, spec, b, &v[1]);
}

SEC("uprobe")
int ugc_hit(struct pt_regs *ctx)
{
	const struct usdt_spec *spec;
	struct start_key k = {};
	struct start s = {}, *b;
	struct event *e;
	__u64 now = bpf_ktime_get_ns(), elapsed;
	__u8 which;

	if (!owl_task_wanted())
		return 0;
	spec = usdt_spec(ctx);
	if (!spec)
		return 0;
	k.tid = bpf_get_current_pid_tgid();
	k.kind = usdt_cookie_byte(spec, 1);
	which = usdt_cookie_byte(spec, 6);
	if (which != USDT_NONE)
		usdt_arg(ctx, spec, which, &k.which);
	if (usdt_cookie_byte(spec, 0) == ROLE_BEGIN) {
		s.ts = now;
		vals(ctx, spec, s.vals);
		if (bpf_map_update_elem(&starts, &k, &s, BPF_ANY))
			owl_count(OWL_DROP_MAP_FULL);
		return 0;
	}
	b = bpf_map_lookup_elem(&starts, &k);
	if (!b)
		return 0;	/* began before owl attached */
	elapsed = now - b->ts;
	if (elapsed < min_ns) {
		bpf_map_delete_elem(&starts, &k);
		return 0;
	}
	e = owl_reserve(sizeof(*e));
	if (!e) {
		bpf_map_delete_elem(&starts, &k);
		return 0;
	}
	owl_task_fill(&e->task);
	e->elapsed_ns = elapsed;
	e->kind = k.kind;
	e->begin[0] = b->vals[0];
	e->begin[1] = b->vals[1];
	bpf_map_delete_elem(&starts, &k);
	vals(ctx, spec, e->end);
	usdt_str(ctx, spec, usdt_cookie_byte(spec, 4), usdt_cookie_byte(spec, 5), e->names[0], NAME_LEN);
	usdt_str(ctx, spec, usdt_cookie_byte(spec, 6), usdt_cookie_byte(spec, 7), e->names[1], NAME_LEN);
	owl_submit(e, sizeof(*e));
	return 0;
}
