package usdt

import (
	"fmt"
	"strconv"
	"strings"
)

// Format is a printf-like format with the arguments it prints, as BCC's
// trace and bpftrace take them: "%d %s", arg0, arg2.
type Format struct {
	parts []part
	// Strings are the arguments printed with %s: the BPF program reads
	// the string each points to (at most maxStrs).
	Strings []int
}

// part is literal text, or one argument printed by a verb.
type part struct {
	text string
	verb byte // 0 for text; d u x X p s c
	arg  int
	str  int // index in Strings for %s
}

// maxStrs is MAX_STRS of usdt.bpf.c; strLen its STR_LEN.
const (
	maxStrs = 4
	strLen  = 128
)

// ParseFormat reads a format and its arguments (argN, N from 0, as
// bpftrace numbers them); each verb takes the next argument. Verbs: %d %i
// (signed), %u, %x %X, %p, %s (the string the argument points to), %c,
// %%, with C's length modifiers (l, ll, h, hh, z, j) accepted and ignored:
// values are 64-bit, sign-extended as the probe's note says.
func ParseFormat(format string, args []string) (Format, error) {
	var f Format
	var text strings.Builder
	next := 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			text.WriteByte(c)
			continue
		}
		i++
		for i < len(format) && strings.IndexByte("lhzjt", format[i]) >= 0 {
			i++
		}
		if i == len(format) {
			return Format{}, fmt.Errorf("format %q ends in %%", format)
		}
		v := format[i]
		if v == '%' {
			text.WriteByte('%')
			continue
		}
		switch v {
		case 'i':
			v = 'd'
		case 'd', 'u', 'x', 'X', 'p', 's', 'c':
		default:
			// Quoted: the byte may be a newline (found by FuzzFormat).
			return Format{}, fmt.Errorf("format %q: %q is not a verb owl prints (d i u x X p s c)", format, []byte{'%', v})
		}
		if next == len(args) {
			return Format{}, fmt.Errorf("format %q has more verbs than the %d arguments given", format, len(args))
		}
		n, err := argIndex(args[next])
		if err != nil {
			return Format{}, err
		}
		next++
		if text.Len() > 0 {
			f.parts = append(f.parts, part{text: text.String()})
			text.Reset()
		}
		p := part{verb: v, arg: n}
		if v == 's' {
			if len(f.Strings) == maxStrs {
				return Format{}, fmt.Errorf("format %q: more than %d %%s", format, maxStrs)
			}
			p.str = len(f.Strings)
			f.Strings = append(f.Strings, n)
		}
		f.parts = append(f.parts, p)
	}
	if next != len(args) {
		return Format{}, fmt.Errorf("format %q has %d verbs for %d arguments", format, next, len(args))
	}
	if text.Len() > 0 {
		f.parts = append(f.parts, part{text: text.String()})
	}
	return f, nil
}

// argIndex reads argN.
func argIndex(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "arg"))
	if !strings.HasPrefix(s, "arg") || err != nil || n < 0 || n >= 12 || strconv.Itoa(n) != s[3:] {
		return 0, fmt.Errorf("argument %q: want arg0 to arg11", s)
	}
	return n, nil
}

// Args are the arguments the format uses (for checking them against the
// probes), -1 when none.
func (f Format) MaxArg() int {
	m := -1
	for _, p := range f.parts {
		if p.verb != 0 && p.arg > m {
			m = p.arg
		}
	}
	return m
}

// Empty reports whether there is no format: print every argument.
func (f Format) Empty() bool { return len(f.parts) == 0 }

// Append formats one hit: vals are the arguments (sign-extended as their
// specs say), strs the strings read for f.Strings.
func (f Format) Append(b []byte, vals []uint64, strs [][]byte) []byte {
	for _, p := range f.parts {
		if p.verb == 0 {
			b = append(b, p.text...)
			continue
		}
		var v uint64
		if p.arg < len(vals) {
			v = vals[p.arg]
		}
		switch p.verb {
		case 'd':
			b = strconv.AppendInt(b, int64(v), 10)
		case 'u':
			b = strconv.AppendUint(b, v, 10)
		case 'x':
			b = strconv.AppendUint(b, v, 16)
		case 'X':
			b = append(b, strings.ToUpper(strconv.FormatUint(v, 16))...)
		case 'p':
			b = strconv.AppendUint(append(b, "0x"...), v, 16)
		case 'c':
			b = appendEscaped(b, []byte{byte(v)})
		case 's':
			if p.str < len(strs) {
				b = appendEscaped(b, strs[p.str])
			}
		}
	}
	return b
}
