// Package event holds the field types shared by the typed events of every
// tool. It imports nothing of BPF so that output, detectors and tests can use
// events without loading anything.
package event

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// Comm is a task's command name as the kernel keeps it: up to 16 bytes,
// NUL-padded. It stays an array so that decoding an event allocates nothing.
type Comm [16]byte

// Bytes returns the name without its NUL padding.
func (c *Comm) Bytes() []byte {
	if i := bytes.IndexByte(c[:], 0); i >= 0 {
		return c[:i]
	}
	return c[:]
}

// String returns the name as is (bytes chosen by the process: print it
// with Append).
func (c Comm) String() string { return string(c.Bytes()) }

// Append appends the name escaped for printing (see AppendEscaped): a name
// cannot forge a line or reach the terminal.
func (c *Comm) Append(b []byte) []byte { return AppendEscaped(b, c.Bytes()) }

// AppendMax appends the name cut to at most limit bytes of the original
// (BCC's %-12.12s), at a character boundary, escaped.
func (c *Comm) AppendMax(b []byte, limit int) []byte {
	name := c.Bytes()
	n := 0
	for n < len(name) {
		_, size := utf8.DecodeRune(name[n:])
		if n+size > limit {
			break
		}
		n += size
	}
	return AppendEscaped(b, name[:n])
}

// MarshalText makes JSON print the name as a string, escaped as in text:
// UnmarshalText gives back the original bytes.
func (c Comm) MarshalText() ([]byte, error) { return c.Append(nil), nil }

// UnmarshalText reads a name printed by MarshalText.
func (c *Comm) UnmarshalText(b []byte) error {
	name, err := Unescape(make([]byte, 0, len(c)), b)
	if err != nil {
		return fmt.Errorf("comm %q: %w", b, err)
	}
	if len(name) > len(c) {
		return fmt.Errorf("comm %q: longer than %d bytes", b, len(c))
	}
	*c = Comm{}
	copy(c[:], name)
	return nil
}

// Addrs converts a pair of kernel addresses (IPv4 in the first 4 bytes for
// AF_INET) to the family number users know (4 or 6) and netip addresses.
func Addrs(afFamily uint16, a, b *[16]byte) (family uint8, x, y netip.Addr) {
	switch afFamily {
	case afInet:
		return 4, netip.AddrFrom4([4]byte(a[:4])), netip.AddrFrom4([4]byte(b[:4]))
	case afInet6:
		return 6, netip.AddrFrom16(*a), netip.AddrFrom16(*b)
	}
	return 0, netip.Addr{}, netip.Addr{}
}

const (
	afInet  = 2
	afInet6 = 10
)

// Name is a string field that is null in JSON when empty: a value the hook
// in use could not provide, rather than an empty one.
type Name string

// MarshalJSON prints the name, or null when it is empty.
func (n Name) MarshalJSON() ([]byte, error) {
	if n == "" {
		return []byte("null"), nil
	}
	return strconv.AppendQuote(nil, string(n)), nil
}

// Task is the task part every event of a task starts with (struct owl_task
// of bpf/owl.h): who did it and, for container attribution, in which
// cgroup and mount namespace. Embedded in events, its fields come first in
// their JSON.
type Task struct {
	Time Time   `json:"time"`
	PID  uint32 `json:"pid"`
	TID  uint32 `json:"tid"`
	UID  uint32 `json:"uid"`
	Comm Comm   `json:"comm"`
	// CgroupID is the cgroup v2 id of the task; on hosts that mount only
	// cgroup v1 it is the same for every task and tells nothing apart.
	CgroupID uint64 `json:"cgroup_id"`
	// MntNS is the inode of the task's mount namespace (ls -Li
	// /proc/PID/ns/mnt), 0 when unknown: what tells containers apart
	// everywhere.
	MntNS   uint32 `json:"mntns_id"`
	KtimeNs uint64 `json:"-"` // kernel monotonic time, for relative columns
}

// TaskPart gives access to the embedded Task, for columns shared by every
// tool.
func (t *Task) TaskPart() *Task { return t }

// Time is a wall-clock time that JSON prints in UTC with exactly nine
// fractional digits ("2026-11-30T09:47:35.631464800Z"), so that JSON lines
// sort as text; time.Time would print the local offset and drop trailing
// zeros. It embeds time.Time, so its methods (Unix, Format, Sub...) work
// as they are; e.Time.Time is the time.Time.
type Time struct{ time.Time }

// TimeLayout is how Time prints: RFC 3339 in UTC with nanoseconds.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// AppendText appends the time as JSON prints it, without quotes.
func (t Time) AppendText(b []byte) ([]byte, error) {
	u := t.UTC()
	if y := u.Year(); y < 0 || y > 9999 {
		return b, fmt.Errorf("time %v: year outside [0,9999]", t.Time)
	}
	return u.AppendFormat(b, TimeLayout), nil
}

// MarshalText prints the time as JSON does, without quotes.
func (t Time) MarshalText() ([]byte, error) { return t.AppendText(nil) }

// MarshalJSON prints the time as a JSON string in UTC with nine
// fractional digits. Unmarshalling is time.Time's (any RFC 3339).
func (t Time) MarshalJSON() ([]byte, error) {
	b, err := t.AppendText([]byte{'"'})
	if err != nil {
		return nil, err
	}
	return append(b, '"'), nil
}
