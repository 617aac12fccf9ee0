/* USDT arguments in BPF. Go (internal/usdt) reads each probe location's
 * argument specs from its ELF note and writes them to usdt_specs, one
 * entry per location attached; the uprobe's attach cookie is the entry's
 * index. A program then reads argument i with usdt_arg(ctx, spec, i, &v)
 * from the registers the uprobe saw, and usdt_cookie(spec) says which of
 * the tool's probes fired. Include after owl.h. */
#pragma once

#define USDT_MAX_ARGS 12

enum usdt_arg_kind {
	USDT_ARG_CONST = 1,	/* the value is val_off */
	USDT_ARG_REG = 2,	/* a register */
	USDT_ARG_MEM = 3,	/* memory at base + index << scale + val_off */
};

#define USDT_ARG_SIGNED 1	/* sign-extend from size bytes */
#define USDT_ARG_BASE 2		/* reg_off names the base register */
#define USDT_ARG_INDEX 4	/* idx_off names the index register */
#define USDT_ARG_BIAS 8		/* val_off is a link-time address: add the load bias */

/* One argument; internal/usdt mirrors it (argRecord). */
struct usdt_arg {
	__s64 val_off;		/* constant, or displacement */
	__u16 reg_off;		/* byte offset of the register in the uprobe's registers */
	__u16 idx_off;		/* same, of the index register */
	__u8 kind;		/* enum usdt_arg_kind */
	__u8 size;		/* 1, 2, 4 or 8 bytes */
	__u8 flags;		/* USDT_ARG_* */
	__u8 scale_shift;	/* index << scale_shift */
};

/* One probe location; internal/usdt mirrors it (specRecord). */
struct usdt_spec {
	struct usdt_arg args[USDT_MAX_ARGS];
	__u64 loc;		/* link-time address: load bias = IP - loc */
	__u64 cookie;		/* the tool's value for this location */
	__u32 nargs;
	__u32 pad;
};

/* Sized and filled from Go before the load (usdt.Configure). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct usdt_spec);
} usdt_specs SEC(".maps");

/* Offset of the instruction pointer in the uprobe's registers: struct
 * pt_regs (x86-64) and struct user_pt_regs (arm64), UAPI layouts. At a
 * uprobe it is the probe's own address. */
#if defined(__TARGET_ARCH_x86)
#define USDT_IP_OFF 128
#define USDT_REGS_SIZE 168
#elif defined(__TARGET_ARCH_arm64)
#define USDT_IP_OFF 256
#define USDT_REGS_SIZE 272
#endif

/* The spec of the location that fired, or NULL (not attached by usdt). */
static __always_inline const struct usdt_spec *usdt_spec(void *ctx)
{
	__u32 id = bpf_get_attach_cookie(ctx);

	return bpf_map_lookup_elem(&usdt_specs, &id);
}

static __always_inline __u64 usdt_cookie(const struct usdt_spec *spec)
{
	return spec->cookie;
}

/* A register, read through the context at a byte offset Go checked. */
static __always_inline int usdt_reg(void *ctx, __u16 off, __u64 *v)
{
	if (off > USDT_REGS_SIZE - sizeof(*v))
		return -1;
	return bpf_probe_read_kernel(v, sizeof(*v), ctx + off);
}

/* Reads argument i into *res, sign- or zero-extended to 64 bits. Returns
 * 0, or a negative value when there is no such argument or its memory
 * cannot be read (paged out, or a bad pointer). */
static __always_inline int usdt_arg(void *ctx, const struct usdt_spec *spec, __u32 i, __u64 *res)
{
	const struct usdt_arg *a;
	__u64 v = 0, r = 0, addr;
	__u32 n, shift;

	/* i as one 64-bit register from here: clang may otherwise
	 * bound-check a copy and index with the original, which the verifier
	 * rejects. */
	__u64 idx = i;

	asm volatile("" : "+r"(idx));
	if (idx >= USDT_MAX_ARGS || idx >= spec->nargs)
		return -1;
	a = &spec->args[idx];
	n = a->size;
	if (n == 0 || n > 8)
		return -1;
	switch (a->kind) {
	case USDT_ARG_CONST:
		v = a->val_off;
		break;
	case USDT_ARG_REG:
		if (usdt_reg(ctx, a->reg_off, &v))
			return -1;
		break;
	case USDT_ARG_MEM:
		addr = a->val_off;
		if (a->flags & USDT_ARG_BASE) {
			if (usdt_reg(ctx, a->reg_off, &r))
				return -1;
			addr += r;
		}
		if (a->flags & USDT_ARG_INDEX) {
			if (usdt_reg(ctx, a->idx_off, &r))
				return -1;
			addr += r << (a->scale_shift & 3);
		}
		if (a->flags & USDT_ARG_BIAS) {
			if (usdt_reg(ctx, USDT_IP_OFF, &r))
				return -1;
			addr += r - spec->loc;
		}
		/* Exactly size bytes: reading 8 could cross into an unmapped
		 * page. Little-endian: they land in the low bytes. */
		if (bpf_probe_read_user(&v, n, (void *)addr))
			return -1;
		break;
	default:
		return -1;
	}
	shift = 64 - 8 * n;
	if (shift) {
		v <<= shift;
		v = (a->flags & USDT_ARG_SIGNED) ? (__u64)((__s64)v >> shift) : v >> shift;
	}
	*res = v;
	return 0;
}

/* Byte i of a location's cookie: internal/langs packs a role, a kind and
 * argument numbers in it (langs.Cookie). */
#define USDT_NONE 0xff
static __always_inline __u8 usdt_cookie_byte(const struct usdt_spec *spec, int i)
{
	return spec->cookie >> (8 * i);
}

/* Reads into buf (size bytes, zeroed by the caller) the string argument
 * ptr_arg points to: NUL-terminated when len_arg is USDT_NONE, else
 * len_arg's value bytes (hotspot's pointer and length pairs), cut to
 * size - 1. Returns 0, or a negative value when unreadable. */
static __always_inline int usdt_str(void *ctx, const struct usdt_spec *spec, __u8 ptr_arg, __u8 len_arg,
				    char *buf, __u32 size)
{
	__u64 p, n;

	if (ptr_arg == USDT_NONE || usdt_arg(ctx, spec, ptr_arg, &p))
		return -1;
	if (len_arg == USDT_NONE)
		return bpf_probe_read_user_str(buf, size, (void *)p) < 0 ? -1 : 0;
	if (usdt_arg(ctx, spec, len_arg, &n))
		return -1;
	if (n > size - 1)
		n = size - 1;
	return bpf_probe_read_user(buf, n, (void *)p);
}
