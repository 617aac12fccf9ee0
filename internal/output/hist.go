package output

import (
	"math/bits"
	"strconv"
)

// Log2Slots is how many slots a log2 histogram has: slot i counts the
// values v with floor(log2(v)) == i (slot 0 also counts 0), so 64 slots
// hold any uint64.
const Log2Slots = 64

// Bucket is one row of a log2 histogram: Count values in [Low, High].
type Bucket struct {
	Low   uint64 `json:"low"`
	High  uint64 `json:"high"`
	Count uint64 `json:"count"`
}

// Log2Buckets returns the rows a log2 histogram prints: every slot from
// 0 to the last non-empty one (the empty ones after it are left out, as
// BCC does), or nil when all are empty.
func Log2Buckets(slots []uint64) []Bucket {
	last := lastNonZero(slots)
	if last < 0 {
		return nil
	}
	rows := make([]Bucket, 0, last+1)
	for i := 0; i <= last; i++ {
		low, high := log2Range(i)
		rows = append(rows, Bucket{Low: low, High: high, Count: slots[i]})
	}
	return rows
}

// log2Range is slot i's range as BCC prints it: [2^i, 2^(i+1)-1], except
// slot 0, which is [0, 1].
func log2Range(i int) (low, high uint64) {
	low = 1 << i
	high = low<<1 - 1 // slot 63: 1<<64 wraps to 0, so high is the uint64 maximum
	if low == high {
		low--
	}
	return low, high
}

func lastNonZero(slots []uint64) int {
	for i := len(slots) - 1; i >= 0; i-- {
		if slots[i] != 0 {
			return i
		}
	}
	return -1
}

// AppendLog2Hist appends slots as libbpf-tools' print_log2_hist prints
// them (BCC's print_log2_hist with its header spacing): a header naming
// the unit (label), then one row per slot from 0 to the last non-empty
// one with a bar of stars scaled to the largest count. Nothing when all
// slots are empty. Histograms whose last slot is above 32 get the wide
// layout (20-digit ranges, 20-star bars), as BCC's.
func AppendLog2Hist(b []byte, slots []uint64, label string) []byte {
	last := lastNonZero(slots)
	if last < 0 {
		return b
	}
	var max uint64
	for _, v := range slots[:last+1] {
		if v > max {
			max = v
		}
	}
	indent, labelWidth, numWidth, stars := 5, 19, 10, 40
	if last > 32 {
		indent, labelWidth, numWidth, stars = 15, 29, 20, 20
	}
	b = appendSpaces(b, indent)
	b = appendLeft(b, label, labelWidth)
	b = append(b, " : count    distribution\n"...)
	var num [20]byte
	for i := 0; i <= last; i++ {
		low, high := log2Range(i)
		b = appendRight(b, string(strconv.AppendUint(num[:0], low, 10)), numWidth)
		b = append(b, " -> "...)
		b = appendLeft(b, string(strconv.AppendUint(num[:0], high, 10)), numWidth)
		b = append(b, " : "...)
		b = appendLeft(b, string(strconv.AppendUint(num[:0], slots[i], 10)), 8)
		b = append(b, " |"...)
		b = appendStars(b, slots[i], max, stars)
		b = append(b, "|\n"...)
	}
	return b
}

// appendStars appends val/max of width as stars, padded with spaces to
// width (print_stars). The product is taken in 128 bits: counts near
// 2^64 must not wrap.
func appendStars(b []byte, val, max uint64, width int) []byte {
	hi, lo := bits.Mul64(val, uint64(width))
	n, _ := bits.Div64(hi, lo, max) // val <= max, so the quotient fits
	for i := 0; i < width; i++ {
		if uint64(i) < n {
			b = append(b, '*')
		} else {
			b = append(b, ' ')
		}
	}
	return b
}

func appendSpaces(b []byte, n int) []byte {
	for ; n > 0; n-- {
		b = append(b, ' ')
	}
	return b
}

// appendLeft appends s left-aligned in width (printf's %-*s).
func appendLeft(b []byte, s string, width int) []byte {
	return appendSpaces(append(b, s...), width-len(s))
}

// appendRight appends s right-aligned in width (printf's %*s).
func appendRight(b []byte, s string, width int) []byte {
	return append(appendSpaces(b, width-len(s)), s...)
}
