package probe

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const tracefsDir = "/sys/kernel/tracing"

// EnsureTracefs mounts tracefs at /sys/kernel/tracing when no tracefs is
// mounted: tracepoint attachment needs it to find event ids, and fresh VMs
// and minimal images often boot without it.
func EnsureTracefs() error {
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "tracefs" {
			return nil
		}
	}
	err = unix.Mount("tracefs", tracefsDir, "tracefs", 0, "")
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount tracefs on %s (tracepoints need it): %w", tracefsDir, err)
	}
	return nil
}

// TracepointFormat reads the fields of tracepoint group:name from tracefs:
// field name to byte offset.
func TracepointFormat(group, name string) (map[string]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("%s/events/%s/%s/format", tracefsDir, group, name))
	if err != nil {
		return nil, fmt.Errorf("tracepoint %s:%s: %w", group, name, err)
	}
	return parseFormat(string(b)), nil
}

// parseFormat reads lines like
// "\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;".
func parseFormat(format string) map[string]int {
	fields := map[string]int{}
	for _, line := range strings.Split(format, "\n") {
		decl, rest, ok := strings.Cut(strings.TrimSpace(line), ";")
		decl, isField := strings.CutPrefix(decl, "field:")
		if !ok || !isField {
			continue
		}
		name := decl[strings.LastIndexAny(decl, " *")+1:]
		if i := strings.IndexByte(name, '['); i >= 0 {
			name = name[:i]
		}
		off, ok := strings.CutPrefix(strings.TrimSpace(rest), "offset:")
		if !ok {
			continue
		}
		off, _, _ = strings.Cut(off, ";")
		if n, err := strconv.Atoi(off); err == nil {
			fields[name] = n
		}
	}
	return fields
}

// CheckLayout returns a Hook.Check that verifies a tracepoint's fields sit
// at the offsets a BPF program was compiled with (programs that read the
// context without CO-RE, for a faster start).
func CheckLayout(group, name string, want map[string]int) func() error {
	return func() error {
		got, err := TracepointFormat(group, name)
		if err != nil {
			return err
		}
		for field, off := range want {
			if g, ok := got[field]; !ok || g != off {
				return fmt.Errorf("tracepoint %s:%s: field %s at offset %d, compiled for %d", group, name, field, g, off)
			}
		}
		return nil
	}
}
