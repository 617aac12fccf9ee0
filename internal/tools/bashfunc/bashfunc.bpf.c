//go:build ignore

/* bashfunc and bashfunclat: the shell functions bash runs, from two of
 * its exported functions, so that a stripped bash (Debian's) is enough.
 *
 * Call: execute_function (static) calls find_function_def(var->name) once
 * per call, right after it set this_shell_function = var and incremented
 * funcnest. find_function_def is also called to define functions and by
 * `declare -F`, with other name pointers: a call is one whose argument is
 * this_shell_function->name (the name is SHELL_VAR's first field).
 *
 * Return: the function's unwind frame (or, in a subshell, execute_function
 * itself) calls restore_funcarray_state before funcnest is restored, so
 * (process, funcnest) pairs a return with its call, recursion included.
 * `source` calls it too, at the same funcnest but with sourcenest one
 * higher than any function it runs in: a return must find the sourcenest
 * of its call. A call whose return never came (the shell longjmp'd past
 * it) is overwritten by the next call at its depth and counted as evicted
 * from the pending table.
 *
 * Bash's globals (this_shell_function, funcnest, sourcenest) are dynamic
 * symbols too: their addresses are the probed function's address minus
 * its symbol value (the load bias of this process's bash) plus theirs. */
#include "owl.h"
#include "uregs.h"

#define NAME_LEN 64
#define MAX_SLOTS 64

#if defined(__TARGET_ARCH_x86)
#define UREG_IP(r) ((r)->ip)
#define UREG_ARG0(r) ((r)->di)
#elif defined(__TARGET_ARCH_arm64)
#define UREG_IP(r) ((r)->pc)
#define UREG_ARG0(r) ((r)->regs[0])
#endif

struct event {
	struct owl_task task;
	__u32 depth; /* funcnest: 1 for a function called from the top level */
	__u32 pad;
	__u8 name[NAME_LEN];
};

struct call_key {
	__u32 tgid;
	__u32 depth;
};

struct call {
	__u64 ts;
	__s32 sourcenest;
	__u32 pad;
	__u8 name[NAME_LEN];
};

struct name_key {
	__u8 name[NAME_LEN];
};

struct hist {
	__u64 slots[MAX_SLOTS]; /* slot i: floor(log2(duration in units)) == i, 0 also in slot 0 */
	__u64 total_ns;
};

/* Symbol values (st_value) in the traced bash, set from Go. */
const volatile __u64 call_sym = 0;	 /* find_function_def */
const volatile __u64 return_sym = 0;	 /* restore_funcarray_state */
const volatile __u64 this_function_sym = 0; /* this_shell_function */
const volatile __u64 funcnest_sym = 0;
const volatile __u64 sourcenest_sym = 0;

const volatile bool want_events = false; /* bashfunc: an event per call */
const volatile bool want_times = false;	 /* bashfunclat: pair calls and returns */
const volatile __u64 unit_ns = 1000000;	 /* histogram unit */

/* Calls waiting for their return. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct call_key);
	__type(value, struct call);
} calls SEC(".maps");

/* One histogram per function name; max_entries set from Go. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct name_key);
	__type(value, struct hist);
} hists SEC(".maps");

/* A zero histogram to insert (too big for the BPF stack). */
static const struct hist zero_hist;

const struct event *unused_event __attribute__((unused));

static __always_inline __u64 log2_u32(__u32 v)
{
	__u32 r, shift;

	r = (v > 0xFFFF) << 4;
	v >>= r;
	shift = (v > 0xFF) << 3;
	v >>= shift;
	r |= shift;
	shift = (v > 0xF) << 2;
	v >>= shift;
	r |= shift;
	shift = (v > 0x3) << 1;
	v >>= shift;
	r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline __u64 log2_u64(__u64 v)
{
	__u32 hi = v >> 32;

	return hi ? log2_u32(hi) + 32 : log2_u32(v);
}

/* Reads an int global of bash at symbol value sym, given the load bias. */
static __always_inline __s32 read_int(__u64 bias, __u64 sym)
{
	__s32 v = -1;

	bpf_probe_read_user(&v, sizeof(v), (void *)(bias + sym));
	return v;
}

SEC("uprobe")
int func_call(struct uregs *ctx)
{
	__u64 bias = UREG_IP(ctx) - call_sym, name = UREG_ARG0(ctx), var = 0, var_name = 0;
	struct call_key k = {};
	struct call c = {};
	struct event *e;
	__s32 depth;

	if (!owl_task_wanted())
		return 0;
	if (bpf_probe_read_user(&var, sizeof(var), (void *)(bias + this_function_sym)) || !var)
		return 0;
	if (bpf_probe_read_user(&var_name, sizeof(var_name), (void *)var) || var_name != name)
		return 0; /* defining a function, or declare -F: not a call */
	depth = read_int(bias, funcnest_sym);
	if (depth < 0)
		return 0;
	if (want_times) {
		k.tgid = bpf_get_current_pid_tgid() >> 32;
		k.depth = depth;
		c.ts = bpf_ktime_get_ns();
		c.sourcenest = read_int(bias, sourcenest_sym);
		bpf_probe_read_user_str(c.name, sizeof(c.name), (void *)name);
		owl_pending_put(&calls, &k, &c);
	}
	if (want_events) {
		e = owl_reserve(sizeof(*e));
		if (!e)
			return 0;
		owl_task_fill(&e->task);
		e->depth = depth;
		bpf_probe_read_user_str(e->name, sizeof(e->name), (void *)name);
		owl_submit(e, sizeof(*e));
	}
	return 0;
}

SEC("uprobe")
int func_return(struct uregs *ctx)
{
	__u64 bias = UREG_IP(ctx) - return_sym, delta, slot;
	struct call_key k = {};
	struct call *c;
	struct hist *h;
	__s32 depth;

	depth = read_int(bias, funcnest_sym);
	if (depth <= 0)
		return 0; /* `source` at the top level */
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	k.depth = depth;
	c = bpf_map_lookup_elem(&calls, &k);
	if (!c)
		return 0; /* called before tracing began, or not traced (-p) */
	if (c->sourcenest != read_int(bias, sourcenest_sym))
		return 0; /* the end of a `source` inside the function */
	delta = bpf_ktime_get_ns() - c->ts;
	h = bpf_map_lookup_elem(&hists, c->name);
	if (!h) {
		/* EEXIST when another CPU inserted it first: fine. */
		bpf_map_update_elem(&hists, c->name, &zero_hist, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, c->name);
	}
	if (h) {
		slot = log2_u64(delta / unit_ns);
		if (slot >= MAX_SLOTS)
			slot = MAX_SLOTS - 1;
		__sync_fetch_and_add(&h->slots[slot], 1);
		__sync_fetch_and_add(&h->total_ns, delta);
	} else {
		owl_count(OWL_DROP_MAP_FULL); /* no room for another name */
	}
	owl_pending_taken(&calls, &k);
	return 0;
}
