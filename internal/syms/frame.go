// Package syms turns the instruction addresses of stack traces into
// symbols: kernel addresses through /proc/kallsyms, user addresses through
// the target's mappings, the ELF symbol tables (or the Go pclntab) of the
// mapped files and the perf maps of JIT compilers. It knows nothing of BPF:
// tools collect the addresses, this package names them.
package syms

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/owlbpf/owl/internal/event"
)

// Unknown is the symbol of an address nothing names, as BCC prints it.
const Unknown = "[unknown]"

// Frame is one symbolized address of a stack. Module is the kernel module,
// the mapped file's base name or the perf map the symbol came from; it is
// empty for the core kernel. Offset is the distance from the symbol's start
// (zero when the symbol is unknown).
//
// Symbol and Module come from files a user may write (symbol tables, file
// names): String and JSON escape them as event.AppendEscaped does. JSON
// writes Addr as a hex string ("0xffffffff81234567"): kernel and most user
// addresses are above 2^53, which JSON tools that read numbers as float64
// (jq 1.6, JavaScript) would round.
//
// A frame of an interpreted language (Lang "python") names the function
// the interpreter ran: Symbol is its qualified name, File and Line where
// it was, Addr the code object; Offset and Module are empty.
type Frame struct {
	Addr   uint64 `json:"addr"`
	Symbol string `json:"symbol"`
	Offset uint64 `json:"offset"`
	Module string `json:"module"`
	Lang   string `json:"lang,omitempty"`
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
}

// String prints "func+0x1a", or "[unknown] (module)" when only the module
// is known, so an unresolved frame still says where it was; an interpreted
// frame prints "func (file:line)".
func (f Frame) String() string {
	if f.Lang != "" && f.File == "" {
		return Unknown + " (" + f.Lang + ")"
	}
	if f.Lang != "" {
		return fmt.Sprintf("%s (%s:%d)", escape(f.Symbol), escape(f.File), f.Line)
	}
	if f.Symbol == "" || f.Symbol == Unknown {
		if f.Module != "" {
			return Unknown + " (" + escape(f.Module) + ")"
		}
		return Unknown
	}
	return fmt.Sprintf("%s+0x%x", escape(f.Symbol), f.Offset)
}

func escape(s string) string { return string(event.AppendEscaped(nil, []byte(s))) }

// frameJSON is Frame as JSON writes it.
type frameJSON struct {
	Addr   string `json:"addr"`
	Symbol string `json:"symbol"`
	Offset uint64 `json:"offset"`
	Module string `json:"module"`
	Lang   string `json:"lang,omitempty"`
	File   string `json:"file,omitempty"`
	Line   int    `json:"line,omitempty"`
}

// MarshalJSON writes the address as a hex string and the names escaped.
func (f Frame) MarshalJSON() ([]byte, error) {
	return json.Marshal(frameJSON{
		Addr:   "0x" + strconv.FormatUint(f.Addr, 16),
		Symbol: escape(f.Symbol),
		Offset: f.Offset,
		Module: escape(f.Module),
		Lang:   f.Lang,
		File:   escape(f.File),
		Line:   f.Line,
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (f *Frame) UnmarshalJSON(b []byte) error {
	var j frameJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	hex, ok := strings.CutPrefix(j.Addr, "0x")
	if !ok {
		return fmt.Errorf("frame address %q: want 0x and hex digits", j.Addr)
	}
	addr, err := strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return fmt.Errorf("frame address %q: %w", j.Addr, err)
	}
	sym, err := event.Unescape(nil, []byte(j.Symbol))
	if err != nil {
		return fmt.Errorf("frame symbol: %w", err)
	}
	mod, err := event.Unescape(nil, []byte(j.Module))
	if err != nil {
		return fmt.Errorf("frame module: %w", err)
	}
	file, err := event.Unescape(nil, []byte(j.File))
	if err != nil {
		return fmt.Errorf("frame file: %w", err)
	}
	*f = Frame{Addr: addr, Symbol: string(sym), Offset: j.Offset, Module: string(mod), Lang: j.Lang, File: string(file), Line: j.Line}
	return nil
}
