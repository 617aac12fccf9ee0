// Package output prints typed events: text columns with BCC's headers, or
// JSON lines; it also reports lost events.
package output

import (
	"strconv"
	"time"
)

// Column is one text column: its header and how to append an event's value.
type Column[E any] struct {
	Name   string
	Width  int  // minimum width; values are left-aligned like BCC's %-Ns
	Trunc  bool // cut values to Width (BCC's %-12.12s for COMM)
	Append func(b []byte, e *E) []byte
}

// Table prints the header and rows from the same columns, so the two never
// disagree whatever flags chose the columns.
type Table[E any] []Column[E]

// AppendHeader appends the header line, newline included.
func (t Table[E]) AppendHeader(b []byte) []byte {
	for i, c := range t {
		start := len(b)
		b = append(b, c.Name...)
		b = t.pad(b, i, start)
	}
	return append(b, '\n')
}

// AppendRow appends one event's line, newline included.
func (t Table[E]) AppendRow(b []byte, e *E) []byte {
	for i, c := range t {
		start := len(b)
		b = c.Append(b, e)
		if c.Trunc && len(b)-start > c.Width {
			b = b[:start+c.Width]
		}
		b = t.pad(b, i, start)
	}
	return append(b, '\n')
}

// pad fills column i up to its width and adds the separator; the last column
// gets neither, so lines carry no trailing blanks.
func (t Table[E]) pad(b []byte, i, start int) []byte {
	if i == len(t)-1 {
		return b
	}
	for n := len(b) - start; n < t[i].Width; n++ {
		b = append(b, ' ')
	}
	return append(b, ' ')
}

// Helpers for Column.Append.

// Uint appends v in decimal.
func Uint[T ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~uint](b []byte, v T) []byte {
	return strconv.AppendUint(b, uint64(v), 10)
}

// Int appends v in decimal.
func Int[T ~int8 | ~int16 | ~int32 | ~int64 | ~int](b []byte, v T) []byte {
	return strconv.AppendInt(b, int64(v), 10)
}

// AppendClock appends t as HH:MM:SS in local time, BCC's TIME column.
func AppendClock(b []byte, t time.Time) []byte {
	return t.AppendFormat(b, "15:04:05")
}

// Seconds appends d in seconds with three decimals, BCC's TIME(s) column.
func Seconds(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, d.Seconds(), 'f', 3, 64)
}
