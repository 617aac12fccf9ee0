package agent

import (
	"reflect"
	"testing"

	"github.com/owlbpf/owl/internal/probe"
)

// A tool restarted by a reload keeps its counts: addStats sums every
// counter of probe.Stats, a cause added later included.
func TestAddStatsSumsEveryCounter(t *testing.T) {
	var a, b probe.Stats
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for i := range va.NumField() {
		va.Field(i).SetUint(uint64(i + 1))
		vb.Field(i).SetUint(100)
	}
	sum := reflect.ValueOf(addStats(a, b))
	for i := range sum.NumField() {
		if got, want := sum.Field(i).Uint(), uint64(i+1)+100; got != want {
			t.Errorf("%s: %d, want %d", sum.Type().Field(i).Name, got, want)
		}
	}
}
