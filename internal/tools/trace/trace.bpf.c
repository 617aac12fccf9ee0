//go:build ignore

/* trace: calls of user functions with their arguments and return values,
 * as BCC's trace prints them.
 *
 * Each (probe, function) pair has an id, the attach cookie, and a
 * descriptor in `funcs` made in Go: what to do at entry (emit, or save the
 * arguments for the return), which words hold strings, and the filter as a
 * small postfix program evaluated here, so that filtered calls never cost
 * ring space. Values are raw register words: arguments at entry, results
 * at return; user space formats them.
 *
 * Returns come from uretprobes for native code and, for Go, from uprobes on
 * every RET instruction (a uretprobe corrupts goroutine stacks). An r:
 * probe that prints arguments saves them at entry in an LRU table keyed
 * like funclatency's: thread or goroutine, stack position, function id. */
#include "owl.h"
#include "python.h"
#include "uregs.h"

#define NWORDS (2 * UREG_WORDS) /* arguments, then results */
#define NSTR 4
#define STR_MAX 128
#define MAX_OPS 32
#define STACK_DEPTH 8

enum { TF_EMIT_ENTRY = 1, TF_SAVE = 2, TF_USTACK = 4 };
enum { TS_NONE, TS_CSTR, TS_GOSTR, TS_GOERR };
enum { TS_TRUNC = 1, TS_FAULT = 2 };
enum { TOP_WORD = 1, TOP_CONST, TOP_EQ, TOP_NE, TOP_LT, TOP_LE, TOP_GT, TOP_GE, TOP_AND, TOP_OR, TOP_NOT };

struct op {
	__u8 code;
	__u8 idx;	/* TOP_WORD: index into the words */
	__u8 pad[6];
	__s64 imm;	/* TOP_CONST */
};

struct str_desc {
	__u8 kind;	/* S_* */
	__u8 idx;	/* first word: char*, Go string (ptr, len) or error (itab, data) */
	__u8 pad[2];
};

struct func_desc {
	__u32 flags;	/* F_* */
	__u32 nops;
	struct str_desc strs[NSTR];
	struct op ops[MAX_OPS];
};

struct str {
	__u64 aux;	/* TS_GOERR: the dynamic type (itab._type) */
	__u32 len;	/* bytes in data */
	__u32 flags;	/* TS_TRUNC, TS_FAULT */
	__u8 data[STR_MAX + 8]; /* a C string is read up to STR_MAX + 1 bytes to tell a cut */
};

struct event {
	struct owl_task task;
	__u32 fid;
	__s32 ustack;	/* stack id, negative when not taken */
	__u64 pystack;	/* Python frames (bpf/python.h), 0 when none */
	__u64 words[NWORDS];
	struct str strs[NSTR];
};

struct words {
	__u64 w[NWORDS];
};

struct entry_key {
	__u64 id;    /* thread (pid_tgid), or goroutine (goid, or g's address) */
	__u64 depth; /* the frame's stack position */
	__u32 tgid;
	__u32 fid;
};

/* Offset of goid in runtime.g, 0 when unknown (g's address then). */
const volatile __u32 goid_off = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1); /* the number of function ids, set from Go */
	__type(key, __u32);
	__type(value, struct func_desc);
} funcs SEC(".maps");

/* Arguments saved at entry for r: probes that print or filter on them. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct entry_key);
	__type(value, struct words);
} entries SEC(".maps");

/* Returns whose entry was not in `entries` (the call began before tracing,
 * or its entry was evicted): per-CPU count. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} misses SEC(".maps");

/* User stacks as build-id and file offset (-U); one entry without -U. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 2048);
	__uint(map_flags, BPF_F_STACK_BUILD_ID);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(struct bpf_stack_build_id));
} ustacks SEC(".maps");

/* The filter: a postfix program over the words, run by bpf_loop so that
 * the verifier checks one step rather than every path through 32. */
struct filter_run {
	struct func_desc *d;
	struct words *w;
	__s64 st[STACK_DEPTH];
	__u32 sp;
	bool bad;
};

static long filter_step(__u64 i, void *arg)
{
	struct filter_run *f = arg;
	struct op *o;
	__s64 a, b, r;
	__u32 sp = f->sp;

	if (i >= MAX_OPS || i >= f->d->nops)
		return 1;
	o = &f->d->ops[i];
	switch (o->code) {
	case TOP_WORD:
		if (o->idx >= NWORDS || sp >= STACK_DEPTH)
			goto bad;
		f->st[sp] = f->w->w[o->idx];
		f->sp = sp + 1;
		return 0;
	case TOP_CONST:
		if (sp >= STACK_DEPTH)
			goto bad;
		f->st[sp] = o->imm;
		f->sp = sp + 1;
		return 0;
	case TOP_NOT:
		if (sp < 1 || sp > STACK_DEPTH)
			goto bad;
		f->st[sp - 1] = !f->st[sp - 1];
		return 0;
	}
	if (sp < 2 || sp > STACK_DEPTH)
		goto bad;
	a = f->st[sp - 2];
	b = f->st[sp - 1];
	switch (o->code) {
	case TOP_EQ: r = a == b; break;
	case TOP_NE: r = a != b; break;
	case TOP_LT: r = a < b; break;
	case TOP_LE: r = a <= b; break;
	case TOP_GT: r = a > b; break;
	case TOP_GE: r = a >= b; break;
	case TOP_AND: r = a && b; break;
	case TOP_OR: r = a || b; break;
	default: goto bad;
	}
	f->st[sp - 2] = r;
	f->sp = sp - 1;
	return 0;
bad:
	f->bad = true;
	return 1;
}

static __always_inline bool wanted(struct func_desc *d, struct words *w)
{
	struct filter_run f = {.d = d, .w = w};

	if (!d->nops)
		return true;
	bpf_loop(MAX_OPS, filter_step, &f, 0);
	return !f.bad && f.sp == 1 && f.st[0] != 0;
}

/* Reads n (at most STR_MAX) bytes at ptr: a Go string's bytes. */
static __always_inline void read_bytes(struct str *s, __u64 ptr, __u64 len)
{
	__u32 n = STR_MAX;

	if (len > STR_MAX)
		s->flags |= TS_TRUNC;
	else
		n = len;
	if (!n)
		return;
	if (bpf_probe_read_user(s->data, n, (void *)ptr)) {
		s->flags |= TS_FAULT;
		return;
	}
	s->len = n;
}

static __always_inline void read_str(struct str *s, struct str_desc *sd, __u64 *w)
{
	__u32 i = sd->idx;
	__u64 p, pair[2];
	long got;

	if (i >= NWORDS - 1)
		return;
	p = w[i];
	switch (sd->kind) {
	case TS_CSTR:
		if (!p)
			return;
		got = bpf_probe_read_user_str(s->data, STR_MAX + 1, (void *)p);
		if (got < 0) {
			s->flags |= TS_FAULT;
		} else if (got == STR_MAX + 1) {
			s->flags |= TS_TRUNC;
			s->len = STR_MAX;
		} else if (got > 0) {
			s->len = got - 1;
		}
		return;
	case TS_GOSTR:
		read_bytes(s, p, w[i + 1]);
		return;
	case TS_GOERR:
		if (!p)
			return; /* nil */
		/* itab._type, then the first word pair of the dynamic value:
		 * the message of *errors.errorString and of fmt's wrappers. */
		if (bpf_probe_read_user(&s->aux, sizeof(s->aux), (void *)(p + 8)) ||
		    bpf_probe_read_user(pair, sizeof(pair), (void *)w[i + 1])) {
			s->flags |= TS_FAULT;
			return;
		}
		read_bytes(s, pair[0], pair[1]);
		return;
	}
}

static __always_inline void emit(void *ctx, struct func_desc *d, __u32 fid, struct words *w)
{
	struct event *e = owl_reserve(sizeof(*e));

	if (!e)
		return;
	owl_task_fill(&e->task);
	e->fid = fid;
	__builtin_memcpy(e->words, w->w, sizeof(e->words));
#pragma clang loop unroll(full)
	for (int i = 0; i < NSTR; i++)
		if (d->strs[i].kind)
			read_str(&e->strs[i], &d->strs[i], e->words);
	e->ustack = -1;
	if (d->flags & TF_USTACK) {
		long id = bpf_get_stackid(ctx, &ustacks, BPF_F_USER_STACK);

		/* -EFAULT: no user stack to walk, not a loss. */
		if (id < 0 && id != -14)
			owl_count(OWL_DROP_STACK);
		e->ustack = id;
		e->pystack = owl_py_stack();
	}
	owl_submit(e, sizeof(*e));
}

static __always_inline void c_key(struct entry_key *k, struct uregs *r, __u64 sp_adjust, __u32 fid)
{
	__u64 id = bpf_get_current_pid_tgid();

	k->id = id;
	k->tgid = id >> 32;
	k->depth = UREG_SP(r) - sp_adjust;
	k->fid = fid;
}

/* The goroutine and its frame's distance from the top of its stack,
 * which stack copying preserves; SP at a RET is SP at entry. */
static __always_inline bool go_key(struct entry_key *k, struct uregs *r, __u32 fid)
{
	__u64 g = UREG_GO_G(r), hi = 0;

	if (!g)
		return false;
	/* g.stack.hi: g starts with struct stack { lo, hi }, in every version. */
	if (bpf_probe_read_user(&hi, sizeof(hi), (void *)(g + 8)))
		return false;
	k->id = g;
	if (goid_off && bpf_probe_read_user(&k->id, sizeof(k->id), (void *)(g + goid_off)))
		return false;
	k->tgid = bpf_get_current_pid_tgid() >> 32;
	k->depth = hi - UREG_SP(r);
	k->fid = fid;
	return true;
}

/* Saves the arguments of a call for its return. The same key again (Go's
 * morestack restarts a prologue; a C call whose return was never seen,
 * left by longjmp) replaces the entry without counting a put: no call's
 * return is lost by it, so the evictions derived from the counts stay
 * true. */
static __always_inline void save(struct entry_key *k, struct words *w)
{
	bool had = bpf_map_lookup_elem(&entries, k) != NULL;

	if (bpf_map_update_elem(&entries, k, w, BPF_ANY))
		owl_count(OWL_DROP_MAP_FULL);
	else if (!had)
		owl_count(OWL_PENDING_PUT);
}

static __always_inline int on_entry(struct uregs *ctx, bool go)
{
	__u32 fid = bpf_get_attach_cookie(ctx);
	struct entry_key k = {};
	struct func_desc *d;
	struct words w = {};

	if (!owl_task_wanted())
		return 0;
	d = bpf_map_lookup_elem(&funcs, &fid);
	if (!d)
		return 0;
	if (go)
		ureg_go_words(ctx, w.w);
	else
		ureg_c_args(ctx, w.w);
	if (d->flags & TF_SAVE) {
		if (go ? go_key(&k, ctx, fid) : (c_key(&k, ctx, 0, fid), true))
			save(&k, &w);
		return 0;
	}
	if ((d->flags & TF_EMIT_ENTRY) && wanted(d, &w))
		emit(ctx, d, fid, &w);
	return 0;
}

static __always_inline int on_return(struct uregs *ctx, bool go)
{
	__u32 fid = bpf_get_attach_cookie(ctx), zero = 0;
	struct entry_key k = {};
	struct func_desc *d;
	struct words w = {}, *saved;
	__u64 *miss;

	if (!owl_task_wanted())
		return 0;
	d = bpf_map_lookup_elem(&funcs, &fid);
	if (!d)
		return 0;
	if (go)
		ureg_go_words(ctx, &w.w[UREG_WORDS]);
	else
		ureg_c_rets(ctx, &w.w[UREG_WORDS]);
	if (d->flags & TF_SAVE) {
		if (go ? !go_key(&k, ctx, fid) : (c_key(&k, ctx, URET_SP_ADJUST, fid), false))
			return 0;
		saved = bpf_map_lookup_elem(&entries, &k);
		if (!saved) {
			miss = bpf_map_lookup_elem(&misses, &zero);
			if (miss)
				*miss += 1;
			return 0;
		}
		__builtin_memcpy(w.w, saved->w, UREG_WORDS * sizeof(__u64));
		owl_pending_taken(&entries, &k);
	}
	if (wanted(d, &w))
		emit(ctx, d, fid, &w);
	return 0;
}

SEC("uprobe")
int native_entry(struct uregs *ctx) { return on_entry(ctx, false); }

SEC("uretprobe")
int native_return(struct uregs *ctx) { return on_return(ctx, false); }

SEC("uprobe")
int go_entry(struct uregs *ctx) { return on_entry(ctx, true); }

/* At a RET instruction SP is back where it was at entry. */
SEC("uprobe")
int go_return(struct uregs *ctx) { return on_return(ctx, true); }

/* Keep the record types in BTF for bpf2go -type. */
const struct event *unused_event __attribute__((unused));
const struct func_desc *unused_func_desc __attribute__((unused));
