package uprobe

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// retsAMD64 decodes x86-64 code from its start and returns the offsets of
// its RET instructions. Go puts no data in its text, so a linear sweep
// sees every instruction; the INT3 padding after a function decodes too.
// An instruction that does not decode is an error: a return could hide
// behind it, and a probe in the middle of an instruction would corrupt it.
func retsAMD64(code []byte) ([]uint64, error) {
	var at []uint64
	for i := 0; i < len(code); {
		inst, err := x86asm.Decode(code[i:], 64)
		if err != nil {
			return nil, fmt.Errorf("decode at +%#x: %w", i, err)
		}
		if inst.Op == x86asm.RET {
			at = append(at, uint64(i))
		}
		i += inst.Len
	}
	return at, nil
}
