package uprobe

import (
	"debug/elf"
	"encoding/binary"
	"io"

	"golang.org/x/arch/x86/x86asm"
)

// goPrologueBytes is how much of a Go function's start goEntry reads: the
// stack check is its first two or three instructions.
const goPrologueBytes = 48

// goEntry returns the file offset past the stack check that opens most Go
// functions, or off itself when it finds none. A call that must grow its
// goroutine's stack branches from that check to runtime.morestack, which
// then jumps back to the function's first instruction: an entry probe
// there fires twice for one call, while one placed after the check's
// branch fires once. Registers and the stack pointer are untouched by the
// check, so arguments and the return address read the same there.
func goEntry(f io.ReaderAt, machine elf.Machine, off uint64) uint64 {
	code := make([]byte, goPrologueBytes)
	n, _ := f.ReadAt(code, int64(off))
	code = code[:n]
	switch machine {
	case elf.EM_X86_64:
		return off + stackCheckAMD64(code)
	case elf.EM_AARCH64:
		return off + stackCheckARM64(code)
	}
	return off
}

// stackCheckAMD64 finds `CMP reg, 16(g)` (the stack guard; g is R14 in
// Go's register ABI, a register loaded from TLS before it) followed by
// the JBE to morestack within the first six instructions (frames over
// 4 KiB check for wrap-around first), and returns the
// offset after the JBE, or 0.
func stackCheckAMD64(code []byte) uint64 {
	var i int
	sawCmp := false
	for n := 0; n < 6 && i < len(code); n++ {
		inst, err := x86asm.Decode(code[i:], 64)
		if err != nil {
			return 0
		}
		i += inst.Len
		switch {
		case inst.Op == x86asm.CMP && guardOperand(inst):
			sawCmp = true
		case sawCmp && inst.Op == x86asm.JBE:
			if rel, ok := inst.Args[0].(x86asm.Rel); ok && rel > 0 {
				return uint64(i)
			}
			return 0
		case sawCmp:
			return 0
		}
	}
	return 0
}

// guardOperand reports whether a CMP reads 16(reg): g.stackguard0.
func guardOperand(inst x86asm.Inst) bool {
	for _, a := range inst.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Disp == 16 && m.Base != 0 && m.Index == 0 {
			return true
		}
	}
	return false
}

// stackCheckARM64 finds `LDR Rt, [x28, #16]` (g is x28) and the B.LS to
// morestack within the first five instructions, returning the offset
// after the B.LS, or 0. arm64 instructions are fixed-size words, so the
// two are matched by their encodings.
func stackCheckARM64(code []byte) uint64 {
	sawLoad := false
	for i := 0; i+4 <= len(code) && i < 5*4; i += 4 {
		w := binary.LittleEndian.Uint32(code[i:])
		switch {
		// LDR (immediate, unsigned offset, 64-bit), imm12 = 16/8, Rn = x28.
		case w&0xfffffc00 == 0xf9400800 && (w>>5)&0x1f == 28:
			sawLoad = true
		// B.cond with cond LS (9) and a forward offset (imm19 > 0).
		case sawLoad && w&0xff00001f == 0x54000009:
			if imm := int32(w<<8) >> 13; imm > 0 {
				return uint64(i + 4)
			}
			return 0
		}
	}
	return 0
}
