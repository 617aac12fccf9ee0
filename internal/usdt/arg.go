package usdt

import (
	"debug/elf"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ArgKind is where an argument's value is.
type ArgKind uint8

const (
	ArgConst ArgKind = iota + 1 // the value itself: 4@$5 (x86), 4@5 (arm64)
	ArgReg                      // a register: 8@%rax, -4@%eax, 8@x0
	ArgMem                      // memory at an address: 8@-8(%rbp), 8@(%rax,%rdx,8), 8@[sp, 16], 4@sym(%rip)
)

// MaxArgs is the most arguments a probe has: sys/sdt.h defines probes of
// up to 12.
const MaxArgs = 12

// ArgSpec is one argument of a probe as the compiler described it: its
// size and signedness and where its value is at the probe.
type ArgSpec struct {
	Size   int  // bytes: 1, 2, 4 or 8
	Signed bool // a negative size in the note
	Kind   ArgKind
	// Reg is the register (ArgReg) or the base register of the address
	// (ArgMem), by its 64-bit name ("rax", "r12", "x0", "sp"); "" for a
	// constant and for an address without base.
	Reg string
	// Shift is 8 for x86's %ah, %bh, %ch and %dh, the second byte of the
	// register; else 0.
	Shift uint8
	// Index and Scale are x86's (%base,%index,scale): address = base +
	// index*scale + Off. Index "" when none; Scale is then 1.
	Index string
	Scale int
	// Off is the constant (ArgConst) or the displacement (ArgMem).
	Off int64
	// Symbol is a displacement given as a symbol (x86: counter(%rip),
	// table+8(,%rax,8)): the address is Symbol's plus Off (then the
	// addend). Reading a file's probes looks the symbol up in the file's
	// symbol tables into SymbolAddr, its link-time address; the fetcher
	// adds the file's load bias (the probe's runtime address minus its
	// link-time one), so PIE executables and libraries work. With a
	// symbol, Reg "rip" only says the address is position-independent.
	Symbol     string
	SymbolAddr uint64
}

// String writes the spec back in the note's syntax for x86-64.
func (a ArgSpec) String() string {
	size := strconv.Itoa(a.Size)
	if a.Signed {
		size = "-" + size
	}
	switch a.Kind {
	case ArgConst:
		return size + "@$" + strconv.FormatInt(a.Off, 10)
	case ArgReg:
		if a.Shift == 8 {
			return size + "@%" + a.Reg[1:2] + "h" // %ah
		}
		return size + "@%" + a.Reg
	}
	var b strings.Builder
	b.WriteString(size + "@")
	if a.Symbol != "" {
		b.WriteString(a.Symbol)
		if a.Off > 0 {
			b.WriteByte('+')
		}
	}
	if a.Off != 0 || (a.Symbol == "" && a.Reg == "" && a.Index == "") {
		b.WriteString(strconv.FormatInt(a.Off, 10))
	}
	if a.Reg != "" || a.Index != "" {
		b.WriteString("(")
		if a.Reg != "" {
			b.WriteString("%" + a.Reg)
		}
		if a.Index != "" {
			fmt.Fprintf(&b, ",%%%s,%d", a.Index, a.Scale)
		}
		b.WriteString(")")
	}
	return b.String()
}

// Describe says what the spec means, as BCC's tplist -vv does: "8
// unsigned bytes @ register rbp".
func (a ArgSpec) Describe() string {
	sign := "unsigned"
	if a.Signed {
		sign = "signed"
	}
	head := fmt.Sprintf("%d %s bytes @ ", a.Size, sign)
	switch a.Kind {
	case ArgConst:
		return head + "constant " + strconv.FormatInt(a.Off, 10)
	case ArgReg:
		if a.Shift != 0 {
			return head + fmt.Sprintf("register %s >> %d", a.Reg, a.Shift)
		}
		return head + "register " + a.Reg
	}
	var parts []string
	if a.Reg != "" {
		parts = append(parts, a.Reg)
	}
	if a.Index != "" {
		parts = append(parts, fmt.Sprintf("%s*%d", a.Index, a.Scale))
	}
	if a.Symbol != "" {
		parts = parts[:0] // %rip only made the symbol's address
		if a.Index != "" {
			parts = append(parts, fmt.Sprintf("%s*%d", a.Index, a.Scale))
		}
		parts = append(parts, fmt.Sprintf("%s (%#x)", a.Symbol, a.SymbolAddr))
	}
	if a.Off != 0 || len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("%#x", a.Off))
	}
	return head + "memory at " + strings.ReplaceAll(strings.Join(parts, " + "), "+ -", "- ")
}

// maxArgsLen bounds an argument string: 12 specs of a few dozen bytes.
const maxArgsLen = 2048

// ParseArgs reads a probe's argument string ("-4@%esi 8@-24(%rbp)") for
// machine (elf.EM_X86_64 or elf.EM_AARCH64). Specs are separated by
// spaces (arm64's "[sp, 16]" holds one inside brackets).
func ParseArgs(s string, machine elf.Machine) ([]ArgSpec, error) {
	if len(s) > maxArgsLen {
		return nil, fmt.Errorf("argument string of %d bytes: at most %d", len(s), maxArgsLen)
	}
	var args []ArgSpec
	for _, f := range splitArgs(s) {
		if len(args) == MaxArgs {
			return nil, fmt.Errorf("more than %d arguments", MaxArgs)
		}
		a, err := ParseArg(f, machine)
		if err != nil {
			return nil, fmt.Errorf("argument %d %q: %w", len(args), f, err)
		}
		args = append(args, a)
	}
	return args, nil
}

// splitArgs splits at spaces outside brackets.
func splitArgs(s string) []string {
	var out []string
	depth, start := 0, -1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '[':
			depth++
		case c == ']' && depth > 0:
			depth--
		}
		space := (c == ' ' || c == '\t') && depth == 0
		if space && start >= 0 {
			out = append(out, s[start:i])
			start = -1
		} else if !space && start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, s[start:])
	}
	return out
}

// ParseArg reads one spec, SIZE@OPERAND.
func ParseArg(s string, machine elf.Machine) (ArgSpec, error) {
	sizeStr, op, ok := strings.Cut(s, "@")
	if !ok {
		return ArgSpec{}, errors.New("no SIZE@ in front")
	}
	var a ArgSpec
	if rest, neg := strings.CutPrefix(sizeStr, "-"); neg {
		a.Signed = true
		sizeStr = rest
	}
	switch sizeStr {
	case "1", "2", "4", "8":
		a.Size = int(sizeStr[0] - '0')
	default:
		return ArgSpec{}, fmt.Errorf("size %q: want 1, 2, 4 or 8, negative when signed", sizeStr)
	}
	if op == "" {
		return ArgSpec{}, errors.New("no operand after @")
	}
	a.Scale = 1
	var err error
	switch machine {
	case elf.EM_X86_64:
		err = parseX86(&a, op)
	case elf.EM_AARCH64:
		err = parseARM64(&a, op)
	default:
		err = fmt.Errorf("arguments of %v probes are not supported", machine)
	}
	if err != nil {
		return ArgSpec{}, err
	}
	return a, nil
}

// x86Regs maps every x86-64 register name an argument can use to its
// 64-bit register; the high-byte registers carry a shift.
var x86Regs = func() map[string]x86Reg {
	m := map[string]x86Reg{"rip": {"rip", 0}}
	for _, r := range []string{"ax", "bx", "cx", "dx"} {
		m["r"+r] = x86Reg{"r" + r, 0}
		m["e"+r] = x86Reg{"r" + r, 0}
		m[r] = x86Reg{"r" + r, 0}
		m[r[:1]+"l"] = x86Reg{"r" + r, 0}
		m[r[:1]+"h"] = x86Reg{"r" + r, 8}
	}
	for _, r := range []string{"si", "di", "bp", "sp"} {
		m["r"+r] = x86Reg{"r" + r, 0}
		m["e"+r] = x86Reg{"r" + r, 0}
		m[r] = x86Reg{"r" + r, 0}
		m[r+"l"] = x86Reg{"r" + r, 0}
	}
	for i := 8; i <= 15; i++ {
		r := "r" + strconv.Itoa(i)
		for _, sfx := range []string{"", "d", "w", "b"} {
			m[r+sfx] = x86Reg{r, 0}
		}
	}
	return m
}()

type x86Reg struct {
	name  string
	shift uint8
}

// x86Register reads "%name".
func x86Register(s string) (x86Reg, error) {
	name, ok := strings.CutPrefix(s, "%")
	if !ok {
		return x86Reg{}, fmt.Errorf("%q is not a register (no %%)", s)
	}
	r, ok := x86Regs[name]
	if !ok {
		return x86Reg{}, fmt.Errorf("unknown register %%%s", name)
	}
	return r, nil
}

// parseX86 reads an AT&T operand: %reg, $imm, or
// [disp](base[,index[,scale]]) where disp is a number, a symbol or
// symbol±number, and base may be empty.
func parseX86(a *ArgSpec, op string) error {
	switch {
	case strings.HasPrefix(op, "%"):
		r, err := x86Register(op)
		if err != nil {
			return err
		}
		if r.name == "rip" {
			return errors.New("%rip as a value")
		}
		a.Kind, a.Reg, a.Shift = ArgReg, r.name, r.shift
		return nil
	case strings.HasPrefix(op, "$"):
		v, err := parseInt(op[1:])
		if err != nil {
			return fmt.Errorf("constant: %w", err)
		}
		a.Kind, a.Off = ArgConst, v
		return nil
	}
	a.Kind = ArgMem
	disp, regs, hasRegs := strings.Cut(op, "(")
	if hasRegs {
		inner, ok := strings.CutSuffix(regs, ")")
		if !ok || strings.ContainsAny(inner, "()") {
			return errors.New("unbalanced parentheses")
		}
		parts := strings.Split(inner, ",")
		if len(parts) > 3 {
			return errors.New("more than base, index and scale")
		}
		if parts[0] != "" {
			r, err := x86Register(parts[0])
			if err != nil {
				return err
			}
			if r.shift != 0 {
				return fmt.Errorf("%s as an address", parts[0])
			}
			a.Reg = r.name
		}
		if len(parts) >= 2 {
			r, err := x86Register(parts[1])
			if err != nil {
				return err
			}
			if r.shift != 0 || r.name == "rip" || r.name == "rsp" {
				return fmt.Errorf("%s as an index", parts[1])
			}
			a.Index = r.name
		}
		if len(parts) == 3 {
			switch parts[2] {
			case "1", "2", "4", "8":
				a.Scale = int(parts[2][0] - '0')
			default:
				return fmt.Errorf("scale %q: want 1, 2, 4 or 8", parts[2])
			}
		}
		if a.Reg == "" && a.Index == "" {
			return errors.New("no base or index register in ()")
		}
		if a.Reg == "rip" && a.Index != "" {
			return errors.New("%rip with an index")
		}
	}
	if err := parseDisp(a, disp); err != nil {
		return err
	}
	if a.Reg == "rip" && a.Symbol == "" {
		// N(%rip) is relative to the next instruction, whose address the
		// note does not give; assemblers write sym(%rip).
		return errors.New("a %rip-relative address without a symbol")
	}
	if !hasRegs && a.Symbol == "" {
		return fmt.Errorf("operand %q: not a register, constant or memory reference", disp)
	}
	return nil
}

// parseDisp reads a displacement: "", N, sym, sym+N or sym-N.
func parseDisp(a *ArgSpec, d string) error {
	if d == "" {
		return nil
	}
	if c := d[0]; c == '-' || c == '+' || (c >= '0' && c <= '9') {
		v, err := parseInt(d)
		if err != nil {
			return fmt.Errorf("displacement: %w", err)
		}
		a.Off = v
		return nil
	}
	sym, num := d, ""
	if i := strings.IndexAny(d, "+-"); i > 0 {
		sym, num = d[:i], d[i:]
	}
	for i := 0; i < len(sym); i++ {
		c := sym[i]
		if !(c == '_' || c == '.' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Errorf("displacement %q: not a number or symbol", d)
		}
	}
	a.Symbol = sym
	if num != "" {
		v, err := parseInt(num)
		if err != nil {
			return fmt.Errorf("displacement: %w", err)
		}
		a.Off = v
	}
	return nil
}

// parseInt reads a decimal or 0x hexadecimal integer, signed; a value
// that only fits unsigned (0xffffffffffffffff) wraps, as the assembler
// wrote it.
func parseInt(s string) (int64, error) {
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	if s == "" || s[0] == '-' || s[0] == '+' {
		return 0, errors.New("no number")
	}
	u, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	v := int64(u)
	if neg {
		v = -v
	}
	return v, nil
}

// arm64Register reads xN, wN (its low half) or sp.
func arm64Register(s string) (string, error) {
	if s == "sp" {
		return "sp", nil
	}
	if len(s) >= 2 && (s[0] == 'x' || s[0] == 'w') {
		n, err := strconv.Atoi(s[1:])
		if err == nil && n >= 0 && n <= 30 && strconv.Itoa(n) == s[1:] {
			return "x" + s[1:], nil
		}
	}
	return "", fmt.Errorf("unknown register %q", s)
}

// parseARM64 reads xN, wN, sp, [reg], [reg, N] (N or #N) and constants
// (N or #N).
func parseARM64(a *ArgSpec, op string) error {
	if inner, ok := strings.CutPrefix(op, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		if !ok {
			return errors.New("unbalanced brackets")
		}
		reg, off, hasOff := strings.Cut(inner, ",")
		r, err := arm64Register(strings.TrimSpace(reg))
		if err != nil {
			return err
		}
		a.Kind, a.Reg = ArgMem, r
		if hasOff {
			v, err := parseInt(strings.TrimPrefix(strings.TrimSpace(off), "#"))
			if err != nil {
				return fmt.Errorf("offset: %w", err)
			}
			a.Off = v
		}
		return nil
	}
	if c := strings.TrimPrefix(op, "#"); c != "" && (c[0] == '-' || c[0] >= '0' && c[0] <= '9') {
		v, err := parseInt(c)
		if err != nil {
			return fmt.Errorf("constant: %w", err)
		}
		a.Kind, a.Off = ArgConst, v
		return nil
	}
	r, err := arm64Register(op)
	if err != nil {
		return err
	}
	a.Kind, a.Reg = ArgReg, r
	return nil
}

// regOffset is the byte offset of register name in the register set a
// uprobe program gets: struct pt_regs on x86-64, struct user_pt_regs on
// arm64 (both UAPI layouts).
func regOffset(machine elf.Machine, name string) (uint16, bool) {
	switch machine {
	case elf.EM_X86_64:
		for i, r := range x86PtRegs {
			if r == name {
				return uint16(8 * i), true
			}
		}
	case elf.EM_AARCH64:
		if name == "sp" {
			return 31 * 8, true
		}
		if n, err := strconv.Atoi(strings.TrimPrefix(name, "x")); err == nil && n >= 0 && n <= 30 {
			return uint16(8 * n), true
		}
	}
	return 0, false
}

// x86PtRegs is struct pt_regs of x86-64, in order.
var x86PtRegs = []string{"r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8",
	"rax", "rcx", "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss"}
