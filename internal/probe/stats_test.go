package probe

import (
	"reflect"
	"strings"
	"testing"
)

// Every counter of Stats but Events is a cause, and Lost sums exactly the
// causes that are whole events: parts missing from delivered events
// (stack_unavailable, pending_partial) are shown, not summed.
func TestStatsCauses(t *testing.T) {
	// Distinct powers of two: any sum tells which causes are in it.
	var st Stats
	v := reflect.ValueOf(&st).Elem()
	for i := range v.NumField() {
		v.Field(i).SetUint(1 << i)
	}
	causes := st.Causes()
	if len(causes) != v.NumField()-1 {
		t.Fatalf("%d causes for %d counters besides Events", len(causes), v.NumField()-1)
	}
	var lost uint64
	names := map[string]bool{}
	for _, c := range causes {
		if names[c.Name] {
			t.Errorf("cause %s twice", c.Name)
		}
		names[c.Name] = true
		if !c.Part {
			lost += c.N
		}
	}
	if st.Lost() != lost {
		t.Errorf("Lost() = %#x, want the sum of the lost causes %#x", st.Lost(), lost)
	}
	if st.Lost()&(st.StackUnavailable|st.PendingPartial) != 0 {
		t.Errorf("Lost() = %#x counts parts", st.Lost())
	}
	if msg := (Stats{PendingPartial: 3}).Message(); !strings.HasPrefix(msg, "0 events lost: 3 evicted from the pending table (events kept") {
		t.Errorf("message of parts only: %q", msg)
	}
}
