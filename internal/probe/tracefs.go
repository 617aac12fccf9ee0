package probe

import (
	"errors"
	"fmt"
	"os"
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
