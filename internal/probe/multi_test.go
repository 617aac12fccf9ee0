package probe

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
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

// closeCounter is a link whose Close records how many closes overlap.
type closeCounter struct {
	link.Link
	mu        *sync.Mutex
	now, most *int
	closed    *int
	err       error
}

func (c closeCounter) Close() error {
	c.mu.Lock()
	*c.now++
	*c.most = max(*c.most, *c.now)
	c.mu.Unlock()
	time.Sleep(time.Millisecond)
	c.mu.Lock()
	*c.now--
	*c.closed++
	c.mu.Unlock()
	return c.err
}

// The links of a per-target attachment close concurrently, closeAtOnce at
// most at a time, each once, their errors joined.
func TestEachLinksClose(t *testing.T) {
	var mu sync.Mutex
	var now, most, closed int
	all := &eachLinks{}
	const n = 3 * closeAtOnce
	bad := errors.New("bad link")
	for i := range n {
		c := closeCounter{mu: &mu, now: &now, most: &most, closed: &closed}
		if i == n-1 {
			c.err = bad
		}
		all.add(c)
	}
	if err := all.Close(); !errors.Is(err, bad) {
		t.Errorf("close: %v, want %v", err, bad)
	}
	if closed != n || most > closeAtOnce || most < 2 {
		t.Errorf("closed %d of %d, %d at once (at most %d)", closed, n, most, closeAtOnce)
	}
	if err := all.Close(); err != nil || closed != n {
		t.Errorf("second close: %v, %d closes", err, closed)
	}
}
