/* Registers as a uprobe's context holds them, and where the C and Go
 * calling conventions put arguments and results. Plain structs (not
 * vmlinux.h's, which are CO-RE relocated) whose layouts are UAPI: struct
 * pt_regs on x86-64, struct user_pt_regs (owl.h) on arm64. */
#pragma once

#include "owl.h"

/* Words of arguments or results a probe reads: Go's ABIInternal passes
 * up to nine integer words in registers on amd64 (RAX RBX RCX RDI RSI R8
 * R9 R10 R11); C passes six (SysV) or eight (AAPCS64). */
#define UREG_WORDS 9

#if defined(__TARGET_ARCH_x86)
struct uregs {
	__u64 r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di;
	__u64 orig_ax, ip, cs, flags, sp, ss;
};
#define UREG_GO_G(r) ((r)->r14)	/* ABIInternal keeps the current g in R14 */
#define UREG_SP(r) ((r)->sp)
/* A uretprobe runs after ret popped the return address. */
#define URET_SP_ADJUST 8

static __always_inline void ureg_c_args(struct uregs *r, __u64 *w)
{
	w[0] = r->di; w[1] = r->si; w[2] = r->dx; w[3] = r->cx; w[4] = r->r8; w[5] = r->r9;
}

static __always_inline void ureg_c_rets(struct uregs *r, __u64 *w)
{
	w[0] = r->ax; w[1] = r->dx;
}

static __always_inline void ureg_go_words(struct uregs *r, __u64 *w)
{
	w[0] = r->ax; w[1] = r->bx; w[2] = r->cx; w[3] = r->di; w[4] = r->si;
	w[5] = r->r8; w[6] = r->r9; w[7] = r->r10; w[8] = r->r11;
}
#elif defined(__TARGET_ARCH_arm64)
#define uregs user_pt_regs
#define UREG_GO_G(r) ((r)->regs[28])	/* and in R28 on arm64 */
#define UREG_SP(r) ((r)->sp)
#define URET_SP_ADJUST 0	/* the return address is in LR, not on the stack */

static __always_inline void ureg_c_args(struct uregs *r, __u64 *w)
{
	for (int i = 0; i < 8; i++)
		w[i] = r->regs[i];
}

static __always_inline void ureg_c_rets(struct uregs *r, __u64 *w)
{
	w[0] = r->regs[0]; w[1] = r->regs[1];
}

/* Go on arm64 passes integers in R0..R15; the first nine are read. */
static __always_inline void ureg_go_words(struct uregs *r, __u64 *w)
{
	for (int i = 0; i < UREG_WORDS; i++)
		w[i] = r->regs[i];
}
#endif
