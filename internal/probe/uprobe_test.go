package probe

import (
	"strings"
	"testing"
)

// Bad arguments fail the attach with a reason, before any system call.
func TestUprobesAtArguments(t *testing.T) {
	for _, c := range []struct {
		a    Attachment
		says string
	}{
		{UprobesAt("p", "/bin/true", nil, nil, false, 0), "no offsets"},
		{UprobesAt("p", "/bin/true", []uint64{1, 2}, []uint64{1}, false, 0), "1 cookies for 2 offsets"},
		{UprobeEachAt("p", "/bin/true", nil, nil, false, 0), "no offsets"},
	} {
		if _, err := c.a.attach(nil); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %q", c.a.Target, err, c.says)
		}
	}
	if a := UprobesAt("p", "/x", []uint64{0x1130}, nil, true, 0); a.Target != "uretprobe /x+0x1130" || a.Program != "p" {
		t.Errorf("target %q", a.Target)
	}
	if a := UprobeEachAt("p", "/x", []uint64{1, 2}, nil, false, 0); a.Target != "uprobe /x (2 offsets)" {
		t.Errorf("target %q", a.Target)
	}
}
