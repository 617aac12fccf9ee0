package trace

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/owlbpf/owl/internal/uprobe"
)

// Constants of trace.bpf.c.
const (
	uregWords = 9 // UREG_WORDS: words of arguments, then of results
	nWords    = 2 * uregWords
	maxOps    = 32 // MAX_OPS
	stackMax  = 8  // STACK_DEPTH
	strMax    = 128

	flagEmitEntry = 1
	flagSave      = 2
	flagUStack    = 4

	strC     = 1
	strGo    = 2
	strGoErr = 3

	strTrunc = 1
	strFault = 2
)

// Filter opcodes (TOP_* of trace.bpf.c).
const (
	opWord = iota + 1
	opConst
	opEQ
	opNE
	opLT
	opLE
	opGT
	opGE
	opAnd
	opOr
	opNot
)

// slot is where an operand's value is: its first word and how many.
type slot struct {
	idx   int // into the event's words: arguments from 0, results from uregWords
	words int
	kind  uprobe.GoKind // GoWord for C
	size  int64         // bytes of an integer (Go with DWARF), 0 when unknown
	typ   string        // Go type from DWARF, "" when unknown
}

// target is one function of one probe: what the BPF side is told
// (desc) and how user space formats its events.
type target struct {
	probe int // index of the probe argument
	p     *Probe
	fn    uprobe.Func
	desc  traceFuncDesc
	verbs []slot // where each verb's operand is
	strs  []int  // for each verb, its string slot in the event, or -1
	entry bool   // needs an entry uprobe (p:, or r: reading arguments)
}

// cArgWords is how many argument registers C's convention has here.
func cArgWords() int {
	if runtime.GOARCH == "arm64" {
		return 8
	}
	return 6
}

// layout says where operand o of function fn is: C arguments in their
// registers, Go's by the register ABI from the DWARF signature sig (nil
// when the binary has none: one word each, two for one formatted with %s
// or %e in wide).
func layout(fn uprobe.Func, sig *uprobe.GoSignature, wide map[Operand]bool, o Operand) (slot, error) {
	if !fn.Go {
		switch {
		case o.Ret && o.N > 1:
			return slot{}, fmt.Errorf("%s: a C function has one return value (retval)", o)
		case o.Ret:
			return slot{idx: uregWords, words: 1}, nil
		case o.N > cArgWords():
			return slot{}, fmt.Errorf("%s: C passes %d arguments in registers; later ones are on the stack, not read", o, cArgWords())
		}
		return slot{idx: o.N - 1, words: 1}, nil
	}
	base := 0
	if o.Ret {
		base = uregWords
	}
	if sig == nil {
		w := 0
		for n := 1; n < o.N; n++ {
			w += widthOf(wide, Operand{Ret: o.Ret, N: n})
		}
		s := slot{idx: base + w, words: widthOf(wide, o)}
		if s.words == 2 {
			s.kind = uprobe.GoString
		}
		if w+s.words > uregWords {
			return slot{}, fmt.Errorf("%s: in words %d..%d, beyond the %d integer registers", o, w+1, w+s.words, uregWords)
		}
		return s, nil
	}
	params, what := sig.Params, "parameters"
	if o.Ret {
		params, what = sig.Results, "results"
	}
	if o.N > len(params) {
		return slot{}, fmt.Errorf("%s: %s has %d %s", o, fn.Name, len(params), what)
	}
	w := 0
	for i, p := range params[:o.N] {
		if p.Words < 0 {
			if i == o.N-1 {
				return slot{}, fmt.Errorf("%s (%s %s): structs and arrays are not supported", o, p.Name, p.Type)
			}
			return slot{}, fmt.Errorf("%s: its register is unknown after %s %s (structs and arrays are not supported)", o, p.Name, p.Type)
		}
		if i < o.N-1 {
			w += p.Words
		}
	}
	p := params[o.N-1]
	if p.Kind == uprobe.GoFloat {
		return slot{}, fmt.Errorf("%s (%s %s): floats are passed in X registers, not supported", o, p.Name, p.Type)
	}
	if w+p.Words > uregWords {
		return slot{}, fmt.Errorf("%s (%s %s): in words %d..%d, beyond the %d integer registers", o, p.Name, p.Type, w+1, w+p.Words, uregWords)
	}
	return slot{idx: base + w, words: p.Words, kind: p.Kind, size: p.Size, typ: p.Type}, nil
}

func widthOf(wide map[Operand]bool, o Operand) int {
	if wide[o] {
		return 2
	}
	return 1
}

// plan makes the targets of probe p (index pi) for its resolved
// functions. sigs holds the DWARF signatures of Go functions by path
// (no entry for a binary without DWARF).
func plan(pi int, p *Probe, funcs []uprobe.Func, sigs map[string]map[string]uprobe.GoSignature, ustack bool) ([]target, error) {
	wide := map[Operand]bool{}
	for i, v := range p.Format.Verbs {
		if v.Conv == 's' || v.Conv == 'e' {
			wide[p.Args[i]] = true
		}
	}
	var out []target
	for _, fn := range funcs {
		t := target{probe: pi, p: p, fn: fn}
		var sig *uprobe.GoSignature
		if fn.Go {
			if byName, ok := sigs[fn.Path]; ok {
				s, ok := byName[fn.Symbol]
				if !ok {
					return nil, fmt.Errorf("%s: no DWARF description of %s", p.Raw, fn.Name)
				}
				sig = &s
			}
		}
		nstr := 0
		for i, v := range p.Format.Verbs {
			s, err := layout(fn, sig, wide, p.Args[i])
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", p.Raw, fn.Name, err)
			}
			kind, err := strKind(fn, v, s, p.Args[i])
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", p.Raw, fn.Name, err)
			}
			t.verbs = append(t.verbs, s)
			t.strs = append(t.strs, -1)
			if kind != 0 {
				t.desc.Strs[nstr].Kind = kind
				t.desc.Strs[nstr].Idx = uint8(s.idx)
				t.strs[i] = nstr
				nstr++
			}
		}
		if p.Filter != nil {
			ops, err := compile(p.Filter, func(o Operand) (slot, error) { return layout(fn, sig, wide, o) })
			if err != nil {
				return nil, fmt.Errorf("%s: %s: filter: %w", p.Raw, fn.Name, err)
			}
			t.desc.Nops = uint32(len(ops))
			for i, op := range ops {
				t.desc.Ops[i].Code, t.desc.Ops[i].Idx, t.desc.Ops[i].Imm = op.code, op.idx, op.imm
			}
		}
		readsArgs := false
		for _, o := range p.operands() {
			readsArgs = readsArgs || !o.Ret
		}
		switch {
		case !p.Return:
			t.desc.Flags, t.entry = flagEmitEntry, true
		case readsArgs:
			t.desc.Flags, t.entry = flagSave, true
		}
		if ustack {
			t.desc.Flags |= flagUStack
		}
		out = append(out, t)
	}
	return out, nil
}

// strKind is what the BPF side reads for verb v of an operand at s: a C
// string, a Go string or a Go error, or nothing (0) for integers.
func strKind(fn uprobe.Func, v Verb, s slot, o Operand) (uint8, error) {
	switch v.Conv {
	case 's':
		switch {
		case !fn.Go:
			return strC, nil
		case s.kind == uprobe.GoString:
			return strGo, nil
		case s.kind == uprobe.GoInterface:
			return strGoErr, nil
		}
		return 0, fmt.Errorf("%s is a %s (%s), not a string", o, s.typ, s.kind)
	case 'e':
		switch {
		case !fn.Go:
			return 0, fmt.Errorf("%s: %%e is for Go errors, and %s is C", o, fn.Name)
		case s.typ == "" || s.kind == uprobe.GoInterface:
			return strGoErr, nil
		}
		return 0, fmt.Errorf("%s is a %s, not an error", o, s.typ)
	}
	if s.words > 1 {
		return 0, fmt.Errorf("%s is a %s (%d words): print it with %%s or %%e", o, s.typ, s.words)
	}
	return 0, nil
}

type op struct {
	code uint8
	idx  uint8
	imm  int64
}

// errFilter marks a filter the kernel-side evaluator cannot run.
var errFilter = errors.New("cannot be evaluated in the kernel")

// compile turns a filter into the postfix program trace.bpf.c runs.
func compile(e *Expr, where func(Operand) (slot, error)) ([]op, error) {
	var ops []op
	depth, maxDepth := 0, 0
	push := func(o op) {
		ops = append(ops, o)
		depth++
		maxDepth = max(maxDepth, depth)
	}
	var walk func(e *Expr) error
	walk = func(e *Expr) error {
		switch e.Op {
		case "operand":
			s, err := where(e.Val)
			if err != nil {
				return err
			}
			if s.words != 1 {
				return fmt.Errorf("%s is a %s: filters compare integers (%w)", e.Val, s.typ, errFilter)
			}
			push(op{code: opWord, idx: uint8(s.idx)})
			return nil
		case "const":
			push(op{code: opConst, imm: e.C})
			return nil
		case "!":
			if err := walk(e.L); err != nil {
				return err
			}
			ops = append(ops, op{code: opNot})
			return nil
		}
		if err := walk(e.L); err != nil {
			return err
		}
		if err := walk(e.R); err != nil {
			return err
		}
		code := map[string]uint8{"==": opEQ, "!=": opNE, "<": opLT, "<=": opLE, ">": opGT, ">=": opGE, "&&": opAnd, "||": opOr}[e.Op]
		if code == 0 {
			return fmt.Errorf("operator %q (%w)", e.Op, errFilter)
		}
		ops = append(ops, op{code: code})
		depth--
		return nil
	}
	if err := walk(e); err != nil {
		return nil, err
	}
	if len(ops) > maxOps || maxDepth > stackMax {
		return nil, fmt.Errorf("%d operations, %d deep: at most %d and %d (%w)", len(ops), maxDepth, maxOps, stackMax, errFilter)
	}
	return ops, nil
}

// eval runs a compiled filter as trace.bpf.c does: for tests, which hold
// the compiler and the kernel's evaluator to the same meaning.
func eval(ops []op, words *[nWords]uint64) bool {
	var st [stackMax]int64
	sp := 0
	for _, o := range ops {
		switch o.code {
		case opWord:
			st[sp&(stackMax-1)] = int64(words[o.idx])
			sp++
			continue
		case opConst:
			st[sp&(stackMax-1)] = o.imm
			sp++
			continue
		case opNot:
			st[(sp-1)&(stackMax-1)] = b2i(st[(sp-1)&(stackMax-1)] == 0)
			continue
		}
		a, b := st[(sp-2)&(stackMax-1)], st[(sp-1)&(stackMax-1)]
		var r bool
		switch o.code {
		case opEQ:
			r = a == b
		case opNE:
			r = a != b
		case opLT:
			r = a < b
		case opLE:
			r = a <= b
		case opGT:
			r = a > b
		case opGE:
			r = a >= b
		case opAnd:
			r = a != 0 && b != 0
		case opOr:
			r = a != 0 || b != 0
		}
		sp--
		st[(sp-1)&(stackMax-1)] = b2i(r)
	}
	return len(ops) == 0 || sp == 1 && st[0] != 0
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
