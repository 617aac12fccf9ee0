// Package flame writes sampled stacks as a pprof profile (the format of
// github.com/google/pprof, which go tool pprof, Pyroscope and Grafana read)
// and as an interactive flame graph in one self-contained SVG. It knows
// nothing of BPF or of how frames were named: tools hand it named frames.
package flame

import (
	"time"
)

// Kind is what ran in a frame; it picks the frame's colour.
type Kind uint8

const (
	Native      Kind = iota // compiled user code (ELF, Go)
	Kernel                  // the kernel
	JIT                     // code a JIT compiler wrote (perf maps)
	Interpreted             // an interpreter's function (Python)
	Process                 // the process (comm) a stack belongs to
)

// Frame is one function of a stack.
type Frame struct {
	Name   string // as printed, "[unknown] (libc.so.6)" when unnamed
	Module string // file base name, "[kernel]", perf map; may be empty
	File   string // source file, when known (interpreted frames)
	Line   int64  // source line, when known
	Addr   uint64 // instruction address, 0 when none
	Kind   Kind
}

// Stack is one distinct stack and how many samples found it.
type Stack struct {
	Frames []Frame // outermost first
	Count  uint64
	PID    uint32
	Comm   string
}

// Profile is what a profiler sampled.
type Profile struct {
	Stacks []Stack
	// Period is the CPU time one sample stands for (1 s / frequency).
	Period time.Duration
	// Start and Duration: when sampling began and for how long.
	Start    time.Time
	Duration time.Duration
}
