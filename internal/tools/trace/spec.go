package trace

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/owlbpf/owl/internal/uprobe"
)

// Probe is one parsed probe argument, BCC trace's syntax for user
// functions:
//
//	[p:|r:][PATH_OR_LIB:]FUNC [(FILTER)] ["FORMAT"[, ARG...]]
type Probe struct {
	Raw    string
	Return bool        // r: at the function's return, else at its entry
	Target uprobe.Spec // the functions: a glob may match several
	Filter *Expr       // nil: every call
	Format Format
	Args   []Operand // one per verb of Format
}

// Format is a printf-like format string: Lits[i] comes before Verbs[i],
// and the last Lit after the last verb.
type Format struct {
	Lits  []string
	Verbs []Verb
}

// Verb is one conversion of a format string.
type Verb struct {
	Text string // as written: "%lld"
	Conv byte   // d, u, x, X, c, s, p, or e (a Go error)
	Bits int    // width of an integer: 8, 16, 32 or 64
}

// Operand is argN or retval/retvalN: a value read from registers.
type Operand struct {
	Ret bool // a result of the function, else an argument
	N   int  // 1-based
}

func (o Operand) String() string {
	switch {
	case !o.Ret:
		return "arg" + strconv.Itoa(o.N)
	case o.N == 1:
		return "retval"
	}
	return "retval" + strconv.Itoa(o.N)
}

// Expr is a filter expression: a comparison or logic node, or a leaf
// (an operand or an integer constant).
type Expr struct {
	Op   string // "operand", "const", "==", "!=", "<", "<=", ">", ">=", "&&", "||", "!"
	Val  Operand
	C    int64
	L, R *Expr // R is nil for "!"
}

// Limits of the language, so that a spec maps onto fixed BPF records.
const (
	maxArg     = 9  // arg1..arg9 (Go's nine integer registers; C has six)
	maxRet     = 9  // retval..retval9 (Go results)
	maxVerbs   = 16 // conversions per format
	maxStrings = 4  // %s and %e conversions per format
	maxProbe   = 4096
)

// Parse reads one probe argument. Its errors are one line that names the
// probe.
func Parse(s string) (*Probe, error) {
	p, err := parse(s)
	if err != nil {
		return nil, fmt.Errorf("probe %q: %w", s, err)
	}
	return p, nil
}

func parse(s string) (*Probe, error) {
	if len(s) > maxProbe {
		return nil, fmt.Errorf("%d bytes: at most %d", len(s), maxProbe)
	}
	if strings.IndexByte(s, 0) >= 0 || strings.ContainsAny(s, "\n\r") {
		return nil, errors.New("holds a NUL byte or a line break")
	}
	p := &Probe{Raw: s}
	text := strings.TrimSpace(s)
	spec, rest, _ := strings.Cut(text, " ")
	if i := strings.IndexAny(spec, "\t"); i >= 0 {
		spec, rest = spec[:i], spec[i:]+" "+rest
	}
	if err := p.parseSpec(spec); err != nil {
		return nil, err
	}
	rest = strings.TrimSpace(rest)
	if strings.HasPrefix(rest, "(") {
		end, err := closing(rest)
		if err != nil {
			return nil, err
		}
		if p.Filter, err = ParseFilter(rest[:end+1]); err != nil {
			return nil, err
		}
		rest = strings.TrimSpace(rest[end+1:])
	}
	if rest == "" {
		return p, nil
	}
	var lit, after string
	if rest[0] == '"' {
		var err error
		if lit, after, err = unquote(rest); err != nil {
			return nil, err
		}
	} else {
		// Unquoted (ret=%d, retval): the format ends at the first comma.
		lit, after, _ = strings.Cut(rest, ",")
		if after != "" || strings.HasSuffix(rest, ",") {
			after = "," + after
		}
	}
	var err error
	if p.Format, err = ParseFormat(lit); err != nil {
		return nil, err
	}
	after = strings.TrimSpace(after)
	if after != "" {
		args, ok := strings.CutPrefix(after, ",")
		if !ok {
			return nil, fmt.Errorf("unexpected %q after the format: want a comma then its arguments", cut(after))
		}
		for _, a := range strings.Split(args, ",") {
			o, err := parseOperand(strings.TrimSpace(a))
			if err != nil {
				return nil, err
			}
			p.Args = append(p.Args, o)
		}
	}
	if len(p.Args) != len(p.Format.Verbs) {
		return nil, fmt.Errorf("the format has %d conversions and %d arguments follow it", len(p.Format.Verbs), len(p.Args))
	}
	for _, o := range p.operands() {
		if o.Ret && !p.Return {
			return nil, fmt.Errorf("%s at a function's entry: use an r: probe for return values", o)
		}
	}
	return p, nil
}

// parseSpec reads [p:|r:][PATH_OR_LIB:]FUNC.
func (p *Probe) parseSpec(spec string) error {
	if strings.Contains(spec, "(") {
		return fmt.Errorf("%q: function signatures are not supported: name the arguments arg1, arg2, ...", spec)
	}
	kind, rest, ok := strings.Cut(spec, ":")
	switch {
	case ok && (kind == "p" || kind == "r"):
		p.Return = kind == "r"
		spec = rest
	case ok && (kind == "t" || kind == "u"):
		return fmt.Errorf("%s: probes are not supported: owl trace probes user functions (p: and r:)", kind)
	}
	if spec == "" || strings.HasPrefix(spec, ":") {
		return errors.New("a kernel function or no function: owl trace probes user functions; write [p:|r:]LIB_OR_PATH:FUNCTION")
	}
	if strings.Contains(spec, "+") {
		return fmt.Errorf("%q: offsets into functions are not supported", spec)
	}
	t, err := uprobe.Parse(spec)
	if err != nil {
		return err
	}
	p.Target = t
	return nil
}

// closing returns the index of the parenthesis that closes s[0].
func closing(s string) (int, error) {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i, nil
			}
		case '"':
			return 0, errors.New("strings are not supported in filters")
		}
	}
	return 0, errors.New("unmatched ( in the filter")
}

// unquote reads the quoted string at the start of s (escapes \" \\ \n
// \t) and returns it and what follows.
func unquote(s string) (string, string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			if i+1 == len(s) {
				return "", "", errors.New("format string ends in a backslash")
			}
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case '"', '\\':
				b.WriteByte(s[i])
			default:
				return "", "", fmt.Errorf(`format string: unknown escape \%c`, s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("format string has no closing quote")
}

// ParseFormat reads a format string's conversions: %d %i %u %x %X %c %s
// %p and %e (a Go error), with h, hh, l, ll or z before integer ones, and
// %% for a percent sign.
func ParseFormat(s string) (Format, error) {
	var f Format
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			lit.WriteByte('%')
			i++
			continue
		}
		j := i + 1
		for j < len(s) && strings.IndexByte("hlz", s[j]) >= 0 {
			j++
		}
		if j == len(s) {
			return f, fmt.Errorf("format %q: %q is cut short", s, s[i:])
		}
		v := Verb{Text: s[i : j+1], Conv: s[j], Bits: 32}
		switch mod := s[i+1 : j]; mod {
		case "":
		case "h":
			v.Bits = 16
		case "hh":
			v.Bits = 8
		case "l", "ll", "z":
			v.Bits = 64
		default:
			return f, fmt.Errorf("format: unknown length %q in %s", mod, v.Text)
		}
		switch v.Conv {
		case 'd', 'i', 'u', 'x', 'X':
			if v.Conv == 'i' {
				v.Conv = 'd'
			}
		case 'c', 's', 'p', 'e':
			if j != i+1 {
				return f, fmt.Errorf("format: %s: no length modifier goes with %%%c", v.Text, v.Conv)
			}
			v.Bits = 64
			if v.Conv == 'c' {
				v.Bits = 8
			}
		default:
			return f, fmt.Errorf("format: %s is not supported (want %%d %%u %%x %%c %%s %%p %%e, with h hh l ll z for integers)", v.Text)
		}
		f.Lits = append(f.Lits, lit.String())
		lit.Reset()
		f.Verbs = append(f.Verbs, v)
		i = j
		if len(f.Verbs) > maxVerbs {
			return f, fmt.Errorf("format: more than %d conversions", maxVerbs)
		}
	}
	f.Lits = append(f.Lits, lit.String())
	n := 0
	for _, v := range f.Verbs {
		if v.Conv == 's' || v.Conv == 'e' {
			n++
		}
	}
	if n > maxStrings {
		return f, fmt.Errorf("format: %d %%s and %%e conversions, at most %d", n, maxStrings)
	}
	return f, nil
}

// parseOperand reads arg1..arg9, retval or retval1..retval9.
func parseOperand(s string) (Operand, error) {
	var o Operand
	var num string
	switch {
	case s == "retval":
		return Operand{Ret: true, N: 1}, nil
	case strings.HasPrefix(s, "retval"):
		o.Ret, num = true, s[len("retval"):]
	case strings.HasPrefix(s, "arg"):
		num = s[len("arg"):]
	default:
		return o, fmt.Errorf("%q: want arg1..arg%d, retval or retval2..retval%d", cut(s), maxArg, maxRet)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || len(num) > 1 || (!o.Ret && n > maxArg) || (o.Ret && n > maxRet) {
		return o, fmt.Errorf("%q: want arg1..arg%d, retval or retval2..retval%d", cut(s), maxArg, maxRet)
	}
	o.N = n
	return o, nil
}

// operands lists every operand the probe reads: its arguments' and its
// filter's.
func (p *Probe) operands() []Operand {
	ops := append([]Operand(nil), p.Args...)
	var walk func(e *Expr)
	walk = func(e *Expr) {
		if e == nil {
			return
		}
		if e.Op == "operand" {
			ops = append(ops, e.Val)
		}
		walk(e.L)
		walk(e.R)
	}
	walk(p.Filter)
	return ops
}

// cut shortens s for a message.
func cut(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// ParseFilter reads a filter: comparisons (== != < <= > >=) of arg1..arg9
// and retval..retval9 with each other or with integer constants (decimal,
// 0x hex, negative), combined with && || ! and parentheses; a bare
// operand is true when not 0. Values compare as signed 64-bit integers.
func ParseFilter(s string) (*Expr, error) {
	toks, err := lex(s)
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w", s, err)
	}
	ps := &filterParser{toks: toks}
	e, err := ps.or(0)
	if err == nil && ps.i < len(toks) {
		err = fmt.Errorf("unexpected %q", toks[ps.i])
	}
	if err != nil {
		return nil, fmt.Errorf("filter %s: %w (filters compare arg1..arg%d and retval with integer constants, with && || ! and parentheses)", s, err, maxArg)
	}
	return e, nil
}

func lex(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case strings.HasPrefix(s[i:], "==") || strings.HasPrefix(s[i:], "!=") || strings.HasPrefix(s[i:], "<=") ||
			strings.HasPrefix(s[i:], ">=") || strings.HasPrefix(s[i:], "&&") || strings.HasPrefix(s[i:], "||"):
			toks = append(toks, s[i:i+2])
			i += 2
		case strings.IndexByte("()<>!", c) >= 0:
			toks = append(toks, s[i:i+1])
			i++
		case c == '-' || c >= '0' && c <= '9' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] >= '0' && s[j] <= '9' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z') {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q", s[i:i+1])
		}
		if len(toks) > 256 {
			return nil, errors.New("too long")
		}
	}
	return toks, nil
}

type filterParser struct {
	toks []string
	i    int
}

// maxDepth bounds nesting: the BPF evaluator's stack is small, and a
// recursive descent must not overflow on crafted input.
const maxDepth = 16

func (ps *filterParser) peek() string {
	if ps.i < len(ps.toks) {
		return ps.toks[ps.i]
	}
	return ""
}

func (ps *filterParser) or(depth int) (*Expr, error) {
	l, err := ps.and(depth)
	for err == nil && ps.peek() == "||" {
		ps.i++
		var r *Expr
		if r, err = ps.and(depth); err == nil {
			l = &Expr{Op: "||", L: l, R: r}
		}
	}
	return l, err
}

func (ps *filterParser) and(depth int) (*Expr, error) {
	l, err := ps.cmp(depth)
	for err == nil && ps.peek() == "&&" {
		ps.i++
		var r *Expr
		if r, err = ps.cmp(depth); err == nil {
			l = &Expr{Op: "&&", L: l, R: r}
		}
	}
	return l, err
}

func (ps *filterParser) cmp(depth int) (*Expr, error) {
	l, err := ps.unary(depth)
	if err != nil {
		return nil, err
	}
	switch op := ps.peek(); op {
	case "==", "!=", "<", "<=", ">", ">=":
		ps.i++
		r, err := ps.unary(depth)
		if err != nil {
			return nil, err
		}
		return &Expr{Op: op, L: l, R: r}, nil
	}
	return l, nil
}

func (ps *filterParser) unary(depth int) (*Expr, error) {
	if depth > maxDepth {
		return nil, errors.New("nested too deep")
	}
	t := ps.peek()
	ps.i++
	switch {
	case t == "":
		return nil, errors.New("ends early")
	case t == "!":
		x, err := ps.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return &Expr{Op: "!", L: x}, nil
	case t == "(":
		x, err := ps.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if ps.peek() != ")" {
			return nil, errors.New("missing )")
		}
		ps.i++
		return x, nil
	case t[0] == '-' || t[0] >= '0' && t[0] <= '9':
		c, err := parseConst(t)
		if err != nil {
			return nil, err
		}
		return &Expr{Op: "const", C: c}, nil
	}
	o, err := parseOperand(t)
	if err != nil {
		return nil, err
	}
	return &Expr{Op: "operand", Val: o}, nil
}

// parseConst reads a decimal or 0x constant, negative or up to 2^64-1
// (taken as its 64-bit pattern).
func parseConst(t string) (int64, error) {
	neg := strings.HasPrefix(t, "-")
	u, err := strconv.ParseUint(strings.TrimPrefix(t, "-"), 0, 64)
	if err != nil || (neg && u > 1<<63) {
		return 0, fmt.Errorf("%q is not a 64-bit integer", cut(t))
	}
	if neg {
		return -int64(u), nil
	}
	return int64(u), nil
}
