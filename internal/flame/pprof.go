package flame

import (
	"fmt"
	"io"

	"github.com/google/pprof/profile"
)

// kernelModule is the mapping kernel frames are put in, as perf names it.
const kernelModule = "[kernel.kallsyms]"

// WritePprof writes p as a gzipped pprof profile: two sample values,
// samples (count) and cpu (nanoseconds: count × period), locations leaf
// first with their function, file and line, one mapping per module
// (already symbolized: HasFunctions, so pprof tries no symbolization),
// and labels comm and pid on each sample.
func WritePprof(w io.Writer, p *Profile) error {
	prof := &profile.Profile{
		SampleType: []*profile.ValueType{
			{Type: "samples", Unit: "count"},
			{Type: "cpu", Unit: "nanoseconds"},
		},
		PeriodType:    &profile.ValueType{Type: "cpu", Unit: "nanoseconds"},
		Period:        p.Period.Nanoseconds(),
		TimeNanos:     p.Start.UnixNano(),
		DurationNanos: p.Duration.Nanoseconds(),
	}
	type funcKey struct{ name, file string }
	type locKey struct {
		module, name, file string
		addr               uint64
		line               int64
	}
	mappings := map[string]*profile.Mapping{}
	funcs := map[funcKey]*profile.Function{}
	locs := map[locKey]*profile.Location{}
	mapping := func(f Frame) *profile.Mapping {
		module := f.Module
		if f.Kind == Kernel && module == "" {
			module = kernelModule
		}
		if module == "" {
			return nil
		}
		m := mappings[module]
		if m == nil {
			m = &profile.Mapping{ID: uint64(len(prof.Mapping) + 1), File: module,
				HasFunctions: true, HasFilenames: f.File != "", HasLineNumbers: f.Line != 0}
			mappings[module] = m
			prof.Mapping = append(prof.Mapping, m)
		}
		return m
	}
	location := func(f Frame) *profile.Location {
		lk := locKey{f.Module, f.Name, f.File, f.Addr, f.Line}
		if l := locs[lk]; l != nil {
			return l
		}
		fk := funcKey{f.Name, f.File}
		fn := funcs[fk]
		if fn == nil {
			fn = &profile.Function{ID: uint64(len(prof.Function) + 1), Name: f.Name, SystemName: f.Name, Filename: f.File}
			funcs[fk] = fn
			prof.Function = append(prof.Function, fn)
		}
		l := &profile.Location{ID: uint64(len(prof.Location) + 1), Mapping: mapping(f), Address: f.Addr,
			Line: []profile.Line{{Function: fn, Line: f.Line}}}
		locs[lk] = l
		prof.Location = append(prof.Location, l)
		return l
	}
	for _, st := range p.Stacks {
		s := &profile.Sample{
			Value:    []int64{int64(st.Count), int64(st.Count) * p.Period.Nanoseconds()},
			Label:    map[string][]string{"comm": {st.Comm}},
			NumLabel: map[string][]int64{"pid": {int64(st.PID)}},
		}
		for i := len(st.Frames) - 1; i >= 0; i-- {
			if st.Frames[i].Kind == Process {
				continue // a label, not a frame
			}
			s.Location = append(s.Location, location(st.Frames[i]))
		}
		prof.Sample = append(prof.Sample, s)
	}
	mainFirst(prof)
	if err := prof.CheckValid(); err != nil {
		return fmt.Errorf("pprof profile: %w", err)
	}
	if err := prof.Write(w); err != nil {
		return fmt.Errorf("write pprof profile: %w", err)
	}
	return nil
}

// mainFirst moves the mapping pprof should call the main binary (it takes
// the first, for "File:" and -top's title) to the front: the user module
// where most samples were taken (their leaf user frame); the kernel is
// never it, unless nothing else is there.
func mainFirst(prof *profile.Profile) {
	leaf := map[*profile.Mapping]int64{}
	for _, s := range prof.Sample {
		for _, l := range s.Location {
			if l.Mapping != nil && l.Mapping.File != kernelModule {
				leaf[l.Mapping] += s.Value[0]
				break
			}
		}
	}
	best := -1
	for i, m := range prof.Mapping {
		if leaf[m] > 0 && (best < 0 || leaf[m] > leaf[prof.Mapping[best]]) {
			best = i
		}
	}
	if best <= 0 {
		return
	}
	m := prof.Mapping[best]
	copy(prof.Mapping[1:best+1], prof.Mapping[:best])
	prof.Mapping[0] = m
	for i, m := range prof.Mapping {
		m.ID = uint64(i + 1)
	}
}
