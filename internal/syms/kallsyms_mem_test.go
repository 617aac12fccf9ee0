package syms

import (
	"runtime"
	"testing"
)

// BenchmarkLoadKallsyms: go test -run - -bench LoadKallsyms -benchmem ./internal/syms/
func BenchmarkLoadKallsyms(b *testing.B) {
	var k *Kallsyms
	for b.Loop() {
		var err error
		if k, err = LoadKallsyms(); err != nil {
			b.Skip(err)
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "MB-live")
	b.ReportMetric(float64(k.Len()), "symbols")
}
