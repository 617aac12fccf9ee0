package probe

import (
	"strings"
	"testing"
)

func TestManyTargets(t *testing.T) {
	if err := checkCookies(0, nil); err == nil {
		t.Error("no targets: no error")
	}
	if err := checkCookies(2, []uint64{1}); err == nil || !strings.Contains(err.Error(), "1 cookies for 2 targets") {
		t.Errorf("cookie count: got %v", err)
	}
	if err := checkCookies(2, nil); err != nil {
		t.Errorf("no cookies: %v", err)
	}
	a := TracingEachAt("p", []string{"a", "b"}, []uint64{0, 1})
	if a.Target != "2 targets" || a.each == nil || a.each.kprobe || a.each.cookie(1) != 1 {
		t.Errorf("TracingEachAt: %+v", a)
	}
	if a := KprobesEachAt("p", []string{"f"}, nil); a.Target != "f" || !a.each.kprobe || a.each.cookie(0) != 0 {
		t.Errorf("KprobesEachAt: %+v", a)
	}
	if a := KprobeMultiAt("p", []string{"f", "g", "h"}, nil); a.Target != "3 functions" || a.each != nil || a.attach == nil {
		t.Errorf("KprobeMultiAt: %+v", a)
	}
	if got := (Hook{Attachments: []Attachment{a}}).Programs(); len(got) != 1 || got[0] != "p" {
		t.Errorf("programs: %v", got)
	}
}
