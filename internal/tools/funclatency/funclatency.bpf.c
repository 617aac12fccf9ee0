//go:build ignore

/* funclatency: time from entry to return of user functions, as a log2
 * histogram per function kept in the kernel (no ring).
 *
 * The entry probe's cookie is the function id. Returns come from a
 * uretprobe for C, C++ and Rust, and for Go from uprobes on every RET
 * instruction (a uretprobe rewrites the return address on the goroutine's
 * stack, which Go's stack copying and traceback do not expect).
 *
 * An entry is paired with its return by (thread or goroutine, function,
 * stack position of the frame) rather than by a per-thread depth count:
 * a depth count goes wrong for good once one return is missed (a C++
 * exception or longjmp unwinding through the function, a Go panic, a
 * call already running at attach), whereas a key that names the frame
 * makes recursion and nesting pair exactly and leaves a missed return as
 * one stale entry that the LRU table drops. For Go the position is
 * measured from the top of the goroutine's stack (g.stack.hi - SP), which
 * stack copying preserves; the morestack restart of a prologue enters the
 * function twice at the same position and the second entry's time wins.
 * The function id is in the key too: a C tail call enters another traced
 * function at the same stack position.
 *
 * A return that finds no start is a call not timed: one whose start the
 * LRU table evicted (more calls in flight than it holds) or, for Go, one
 * begun before the probes were attached (a uretprobe, set at entry, never
 * sees such a return). owl_unpaired counts them, per CPU, for the Lost
 * line (probe.Stats.UnpairedReturn). */
#include "owl.h"

#define MAX_SLOTS 64

/* Registers as the uprobe context holds them; plain structs (not
 * vmlinux.h's, which are CO-RE relocated) whose layouts are UAPI. */
#if defined(__TARGET_ARCH_x86)
struct uregs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	__u64 orig_ax, ip, cs, flags, sp, ss;
};
#define GO_G(r) ((r)->r14)	/* ABIInternal keeps the current g in R14 */
#define REG_SP(r) ((r)->sp)
/* A uretprobe runs after ret popped the return address. */
#define RET_SP_ADJUST 8
#elif defined(__TARGET_ARCH_arm64)
#define uregs user_pt_regs
#define GO_G(r) ((r)->regs[28])	/* and in R28 on arm64 */
#define REG_SP(r) ((r)->sp)
#define RET_SP_ADJUST 0	/* the return address is in LR, not on the stack */
#endif

struct hist {
	__u64 slots[MAX_SLOTS]; /* slot i: floor(log2(duration in units)) == i, 0 also in slot 0 */
	__u64 total_ns;
};

struct start_key {
	__u64 id;    /* thread (pid_tgid), or goroutine (goid, or g's address) */
	__u64 depth; /* the frame's stack position */
	__u32 tgid;  /* goids and g addresses are per process */
	__u32 fid;
};

/* Divisor from nanoseconds to the histogram's unit. */
const volatile __u64 unit_ns = 1;
/* Offset of goid in runtime.g, 0 when unknown (then g's address names the
 * goroutine: as unique among live goroutines, not stable across reuse). */
const volatile __u32 goid_off = 0;

/* One histogram per function id; max_entries is the number of functions,
 * set from Go. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hist);
} hists SEC(".maps");

/* Calls in flight; max_entries is set from Go (Config.starts, for tests). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct start_key);
	__type(value, __u64);
} starts SEC(".maps");

/* Returns of wanted tasks that found no start (probe.UnpairedMap). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} owl_unpaired SEC(".maps");

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

/* floor(log2(v)), 0 for 0. */
static __always_inline __u64 log2_u64(__u64 v)
{
	__u32 hi = v >> 32;

	return hi ? log2_u32(hi) + 32 : log2_u32(v);
}

static __always_inline void start(struct start_key *k)
{
	__u64 ts = bpf_ktime_get_ns();

	bpf_map_update_elem(&starts, k, &ts, BPF_ANY);
}

static __always_inline void finish(struct start_key *k)
{
	__u64 now = bpf_ktime_get_ns(), delta, slot, *ts;
	struct hist *h;

	ts = bpf_map_lookup_elem(&starts, k);
	if (!ts) {
		/* Evicted, or a Go call entered before attach. Entries are
		 * filtered by task, returns only here: another task's return
		 * is none of ours. */
		__u32 zero = 0;
		__u64 *n;

		if (owl_task_wanted() && (n = bpf_map_lookup_elem(&owl_unpaired, &zero)))
			*n += 1;
		return;
	}
	delta = now - *ts;
	bpf_map_delete_elem(&starts, k);
	h = bpf_map_lookup_elem(&hists, &k->fid);
	if (!h)
		return;
	slot = log2_u64(delta / unit_ns);
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->total_ns, delta);
}

static __always_inline void c_key(struct start_key *k, struct uregs *r, __u64 sp_adjust, void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();

	k->id = id;
	k->tgid = id >> 32;
	k->depth = REG_SP(r) - sp_adjust;
	k->fid = bpf_get_attach_cookie(ctx);
}

/* The goroutine and its frame's distance from the top of its stack. */
static __always_inline bool go_key(struct start_key *k, struct uregs *r, void *ctx)
{
	__u64 g = GO_G(r), hi = 0;

	if (!g)
		return false;
	/* g.stack.hi: g starts with struct stack { lo, hi }, in every version. */
	if (bpf_probe_read_user(&hi, sizeof(hi), (void *)(g + 8)))
		return false;
	k->id = g;
	if (goid_off && bpf_probe_read_user(&k->id, sizeof(k->id), (void *)(g + goid_off)))
		return false;
	k->tgid = bpf_get_current_pid_tgid() >> 32;
	k->depth = hi - REG_SP(r);
	k->fid = bpf_get_attach_cookie(ctx);
	return true;
}

SEC("uprobe")
int native_entry(struct uregs *ctx)
{
	struct start_key k = {};

	if (!owl_task_wanted())
		return 0;
	c_key(&k, ctx, 0, ctx);
	start(&k);
	return 0;
}

SEC("uretprobe")
int native_return(struct uregs *ctx)
{
	struct start_key k = {};

	c_key(&k, ctx, RET_SP_ADJUST, ctx);
	finish(&k);
	return 0;
}

SEC("uprobe")
int go_entry(struct uregs *ctx)
{
	struct start_key k = {};

	if (!owl_task_wanted())
		return 0;
	if (go_key(&k, ctx, ctx))
		start(&k);
	return 0;
}

/* At a RET instruction SP is back where it was at entry. */
SEC("uprobe")
int go_return(struct uregs *ctx)
{
	struct start_key k = {};

	if (go_key(&k, ctx, ctx))
		finish(&k);
	return 0;
}
