/* The Python frames of a thread, walked in BPF: the interpreter's frame
 * chain from the thread's PyThreadState, kept as (code object, instruction)
 * pairs in a table by hash, like the kernel's stack maps keep stacks by id.
 * Go names the frames (internal/pyframes): it finds the Python processes,
 * fills owl_py_procs with each one's offsets and reads the code objects.
 *
 * Include it after owl.h. A tool calls owl_py_stack() (current task) or
 * owl_py_stack_task(task, tgid) where it takes its user stack and stores
 * the id in its record; 0 means no Python frames. Go sets owl_py_enabled
 * and owl_py_off_tp before load (pyframes.Configure). */
#pragma once

#define OWL_PY_MAX_FRAMES 64	/* kept per stack; deeper stacks are cut (truncated) */
#define OWL_PY_MAX_WALK 80	/* frames looked at, shims of 3.12+ included */
#define OWL_PY_CHUNK 128	/* bytes of a frame read at once: every field is in them */

/* How the frame chain marks where a C-level eval call started, which is
 * what ties Python frames to the interpreter's native frames. */
enum owl_py_kind {
	OWL_PY_FRAMEOBJ = 1,	/* ≤ 3.10: PyFrameObject, one eval call per frame */
	OWL_PY_ISENTRY = 2,	/* 3.11: _PyInterpreterFrame.is_entry */
	OWL_PY_SHIM = 3,	/* 3.12+: an entry shim frame owned by the C stack */
};

#define OWL_PY_OWNED_BY_CSTACK 3

/* One Python process: where its thread state is and the offsets of its
 * version (filled by Go, keyed by tgid). */
struct owl_py_proc {
	__u64 tss_key;		/* address of the pthread_key_t of the thread-state TSS */
	__u32 kind;		/* enum owl_py_kind */
	__u32 tsd_first;	/* thread pointer + tsd_first + key*tsd_size: key < 32 */
	__u32 tsd_second;	/* thread pointer + tsd_second + key/32*8: 2nd-level block */
	__u32 tsd_size;		/* struct pthread_key_data: size */
	__u32 tsd_data;		/* and offset of .data */
	__u32 ts_frame;		/* PyThreadState: cframe, current_frame or frame */
	__s32 cf_frame;		/* _PyCFrame.current_frame; -1: ts_frame is the frame */
	__u32 f_code;		/* frame: code object (8-aligned, < OWL_PY_CHUNK) */
	__u32 f_back;		/* previous frame */
	__u32 f_ip;		/* prev_instr / instr_ptr, or int f_lasti */
	__u32 f_flag;		/* byte: is_entry (3.11) or owner (3.12+) */
	__u32 f_size;		/* bytes to read of a frame, ≤ OWL_PY_CHUNK */
};

struct owl_py_frame {
	__u64 code;	/* PyCodeObject * */
	__u64 ip;	/* instruction pointer, or f_lasti (≤ 3.10) */
};

/* Innermost frame first. Bit i of entry: frame i is the first one its
 * C-level eval call ran, i.e. the last of the frames that one native
 * _PyEval_EvalFrameDefault frame stands for. */
struct owl_py_stack {
	__u32 n;
	__u32 truncated;
	__u64 entry;
	struct owl_py_frame f[OWL_PY_MAX_FRAMES];
};

const volatile bool owl_py_enabled = false;
/* task_struct.thread.fsbase (x86-64) or .thread.uw.tp_value (arm64): the
 * thread pointer glibc's thread-specific data hangs off. */
const volatile __u32 owl_py_off_tp = 0;

/* Sized from Go: one entry each when Python frames are not asked for. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct owl_py_proc);
} owl_py_procs SEC(".maps");

/* By hash: an LRU, so that a long run never fills it; an event's stack is
 * read by Go soon after it was put. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, __u64);
	__type(value, struct owl_py_stack);
} owl_py_stacks SEC(".maps");

struct owl_py_scratch {
	struct owl_py_stack st;
	__u8 chunk[OWL_PY_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct owl_py_scratch);
} owl_py_scratch SEC(".maps");

static __always_inline __u64 owl_py_u64(const __u8 *chunk, __u32 off)
{
	return *(const __u64 *)(chunk + (off & (OWL_PY_CHUNK - 8)));
}

/* The state of one walk, on the stack of the program that walks. */
struct owl_py_walk {
	struct owl_py_proc p;	/* a copy: the callback sees scalars only */
	__u64 frame;
	__u64 hash;
	__u32 n;
};

/* One frame of the walk (a bpf_loop callback, verified once however many
 * frames it runs for): 1 stops the walk. */
static long owl_py_step(__u64 i, void *arg)
{
	struct owl_py_walk *w = arg;
	struct owl_py_scratch *sc;
	__u32 zero = 0, size = w->p.f_size & (OWL_PY_CHUNK - 1), n = w->n;
	__u64 code, ip;
	__u8 flag;

	sc = bpf_map_lookup_elem(&owl_py_scratch, &zero);
	if (!sc || !w->frame || !size)
		return 1;
	if (bpf_probe_read_user(sc->chunk, size, (void *)w->frame))
		return 1;
	code = owl_py_u64(sc->chunk, w->p.f_code);
	ip = owl_py_u64(sc->chunk, w->p.f_ip);
	flag = sc->chunk[w->p.f_flag & (OWL_PY_CHUNK - 1)];
	w->frame = owl_py_u64(sc->chunk, w->p.f_back);
	if (w->p.kind == OWL_PY_SHIM && flag == OWL_PY_OWNED_BY_CSTACK) {
		/* Not Python code: it marks the frame before it as the first
		 * of its eval call. */
		if (n > 0)
			sc->st.entry |= 1ULL << ((n - 1) & 63);
		return 0;
	}
	if (!code)
		return 0;
	if (n >= OWL_PY_MAX_FRAMES) {
		sc->st.truncated = 1;
		return 1;
	}
	if (w->p.kind == OWL_PY_FRAMEOBJ || (w->p.kind == OWL_PY_ISENTRY && flag))
		sc->st.entry |= 1ULL << (n & 63);
	sc->st.f[n & (OWL_PY_MAX_FRAMES - 1)].code = code;
	sc->st.f[n & (OWL_PY_MAX_FRAMES - 1)].ip = ip;
	w->hash = (w->hash ^ code) * 0x100000001b3ULL;
	w->hash = (w->hash ^ ip) * 0x100000001b3ULL;
	w->n = n + 1;
	return 0;
}

/* The Python stack of thread task of process tgid: the id of its frames in
 * owl_py_stacks, 0 when it has none (not a Python process, no thread state,
 * no frame). A stack that could not be stored is counted as
 * OWL_DROP_STACK. */
static __always_inline __u64 owl_py_stack_task(void *task, __u32 tgid)
{
	struct owl_py_walk w = {.hash = 0xcbf29ce484222325ULL};
	struct owl_py_scratch *sc;
	struct owl_py_proc *p;
	__u64 tp = 0, slot, block = 0, ts = 0, frame = 0;
	__u32 key = 0, zero = 0;

	if (!owl_py_enabled)
		return 0;
	p = bpf_map_lookup_elem(&owl_py_procs, &tgid);
	if (!p)
		return 0;
	w.p = *p;
	sc = bpf_map_lookup_elem(&owl_py_scratch, &zero);
	if (!sc)
		return 0;
	if (bpf_probe_read_kernel(&tp, sizeof(tp), task + owl_py_off_tp) || !tp)
		return 0;
	/* pthread_getspecific(key), as libc's own code does it (Go decoded it). */
	if (bpf_probe_read_user(&key, sizeof(key), (void *)w.p.tss_key))
		return 0;
	if (key < 32) {
		slot = tp + w.p.tsd_first + (__u64)key * w.p.tsd_size;
	} else {
		if (key >= 1024)
			return 0;
		if (bpf_probe_read_user(&block, sizeof(block), (void *)(tp + w.p.tsd_second + (key / 32) * 8)) || !block)
			return 0;
		slot = block + (__u64)(key % 32) * w.p.tsd_size;
	}
	if (bpf_probe_read_user(&ts, sizeof(ts), (void *)(slot + w.p.tsd_data)) || !ts)
		return 0;
	if (bpf_probe_read_user(&frame, sizeof(frame), (void *)(ts + w.p.ts_frame)) || !frame)
		return 0;
	if (w.p.cf_frame >= 0 && (bpf_probe_read_user(&frame, sizeof(frame), (void *)(frame + w.p.cf_frame)) || !frame))
		return 0;

	sc->st.entry = 0;
	sc->st.truncated = 0;
	w.frame = frame;
	bpf_loop(OWL_PY_MAX_WALK, owl_py_step, &w, 0);
	if (!w.n)
		return 0;
	sc->st.n = w.n;
	w.hash = (w.hash ^ sc->st.entry) * 0x100000001b3ULL;
	if (!w.hash)
		w.hash = 1;
	if (bpf_map_lookup_elem(&owl_py_stacks, &w.hash))
		return w.hash;
	if (bpf_map_update_elem(&owl_py_stacks, &w.hash, &sc->st, BPF_ANY)) {
		owl_count(OWL_DROP_STACK);
		return 0;
	}
	return w.hash;
}

/* The Python stack of the current thread. */
static __always_inline __u64 owl_py_stack(void)
{
	return owl_py_stack_task((void *)bpf_get_current_task(), bpf_get_current_pid_tgid() >> 32);
}

/* A whole user stack, as the tools that had none take it (opensnoop,
 * tcpconnect): the native frames as build-id and file offset (named after
 * the process exited, from the file) and the Python frames. Go reads both
 * with pyframes.UserStacks. */
struct owl_ustack {
	__s32 native;	/* id in owl_ustacks; negative when not taken */
	__u32 pad;
	__u64 python;	/* id in owl_py_stacks; 0 when none */
};

/* Sized from Go (pyframes.ConfigureUser): one entry when not asked for. */
struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_STACK_BUILD_ID);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, 127 * sizeof(struct bpf_stack_build_id));
} owl_ustacks SEC(".maps");

static __always_inline void owl_user_stack(void *ctx, struct owl_ustack *u)
{
	long id = bpf_get_stackid(ctx, &owl_ustacks, BPF_F_USER_STACK);

	/* -EFAULT: nothing to walk (a kernel thread), not a loss. */
	if (id < 0 && id != -14)
		owl_count(OWL_DROP_STACK);
	u->native = id;
	u->python = owl_py_stack();
}
