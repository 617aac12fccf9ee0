package event

import (
	"errors"
	"unicode"
	"unicode/utf8"
)

// AppendEscaped appends s to b escaped for printing, the same way in text
// and inside JSON strings. It is for names that come from processes (comm,
// stack symbols, later file names), chosen by whoever runs the process: a
// name holding "\n" would forge an output line, an ESC would drive the
// terminal, invalid UTF-8 would be replaced by U+FFFD in JSON and lost.
//
// Printable UTF-8 stays as is; every other byte (control bytes, DEL,
// invalid UTF-8, characters that are not printable such as U+202E
// RIGHT-TO-LEFT OVERRIDE) and the backslash itself is written \xNN, two
// lower-case hex digits per byte. A backslash in the output therefore
// always starts an escape, and Unescape gives back the original bytes.
func AppendEscaped(b, s []byte) []byte {
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		if escaped(r, n) {
			for _, c := range s[:n] {
				b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			}
		} else {
			b = append(b, s[:n]...)
		}
		s = s[n:]
	}
	return b
}

const hex = "0123456789abcdef"

// escaped tells whether rune r, n bytes long, is written as \xNN bytes: an
// invalid byte (RuneError of length 1), the backslash, or not printable.
func escaped(r rune, n int) bool {
	return r == utf8.RuneError && n == 1 || r == '\\' || !unicode.IsPrint(r)
}

// Unescape reverses AppendEscaped, appending the original bytes to b.
func Unescape(b, s []byte) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b = append(b, s[i])
			continue
		}
		if i+3 >= len(s) || s[i+1] != 'x' {
			return b, errBadEscape
		}
		hi, ok1 := unhex(s[i+2])
		lo, ok2 := unhex(s[i+3])
		if !ok1 || !ok2 {
			return b, errBadEscape
		}
		b = append(b, hi<<4|lo)
		i += 3
	}
	return b, nil
}

var errBadEscape = errors.New(`bad escape: want \xNN`)

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
