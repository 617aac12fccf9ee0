// Package syms turns the instruction addresses of stack traces into
// symbols: kernel addresses through /proc/kallsyms, user addresses through
// the target's mappings, the ELF symbol tables (or the Go pclntab) of the
// mapped files and the perf maps of JIT compilers. It knows nothing of BPF:
// tools collect the addresses, this package names them.
package syms

import "fmt"

// Unknown is the symbol of an address nothing names, as BCC prints it.
const Unknown = "[unknown]"

// Frame is one symbolized address of a stack. Module is the kernel module,
// the mapped file's base name or the perf map the symbol came from; it is
// empty for the core kernel. Offset is the distance from the symbol's start
// (zero when the symbol is unknown).
type Frame struct {
	Addr   uint64 `json:"addr"`
	Symbol string `json:"symbol"`
	Offset uint64 `json:"offset"`
	Module string `json:"module"`
}

// String prints "func+0x1a", or "[unknown] (module)" when only the module
// is known, so an unresolved frame still says where it was.
func (f Frame) String() string {
	if f.Symbol == "" || f.Symbol == Unknown {
		if f.Module != "" {
			return Unknown + " (" + f.Module + ")"
		}
		return Unknown
	}
	return fmt.Sprintf("%s+0x%x", f.Symbol, f.Offset)
}
