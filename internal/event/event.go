// Package event holds the field types shared by the typed events of every
// tool. It imports nothing of BPF so that output, detectors and tests can use
// events without loading anything.
package event

import (
	"bytes"
	"net/netip"
	"strconv"
	"time"
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

func (c Comm) String() string { return string(c.Bytes()) }

// MarshalText makes JSON print the name as a string.
func (c Comm) MarshalText() ([]byte, error) { return c.Bytes(), nil }

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
	Time time.Time `json:"time"`
	PID  uint32    `json:"pid"`
	TID  uint32    `json:"tid"`
	UID  uint32    `json:"uid"`
	Comm Comm      `json:"comm"`
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
