#include "textflag.h"

// func Syscall32(nr, a1, a2, a3 uintptr) uintptr
//
// A 32-bit (ia32) syscall from this 64-bit process, through int $0x80: the
// kernel numbers it from the i386 table and marks the thread TS_COMPAT.
// Arguments go in BX, CX and DX; the result (or -errno) comes back in AX.
TEXT ·Syscall32(SB), NOSPLIT, $0-40
	MOVQ nr+0(FP), AX
	MOVQ a1+8(FP), BX
	MOVQ a2+16(FP), CX
	MOVQ a3+24(FP), DX
	INT  $0x80
	MOVQ AX, ret+32(FP)
	RET
