package main

// The breakdown runs owl's setuids probe inside the harness, through the
// package internal/tools/setuids, and adds one part of owl's per-event path
// at a time, so that the cost of each part shows as the difference between
// two steps. Each step traces a fresh workload process doing the same storm.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/owlbpf/owl/bench/internal/harness"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/probe"
	owltool "github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools/setuids"
)

// table is the text table of `owl setuids` (unexported there), rebuilt from
// the exported helpers so that the printing step formats the same rows.
var table = output.Table[setuids.Event]{
	{Name: "TIME", Width: 8, Append: func(b []byte, e *setuids.Event) []byte { return output.AppendClock(b, e.Time.Time) }},
	{Name: "PID", Width: 6, Append: func(b []byte, e *setuids.Event) []byte { return output.Uint(b, e.PID) }},
	{Name: "COMM", Width: 16, Trunc: true, Append: func(b []byte, e *setuids.Event) []byte { return append(b, e.Comm.Bytes()...) }},
	{Name: "UID", Width: 6, Append: func(b []byte, e *setuids.Event) []byte { return output.Uint(b, e.UID) }},
	{Name: "SYSCALL", Width: 16, Append: func(b []byte, e *setuids.Event) []byte { return append(b, e.Syscall...) }},
	{Name: "ARGS (RET)", Append: func(b []byte, e *setuids.Event) []byte {
		b = e.Args.AppendText(b)
		b = append(b, ' ')
		return e.AppendResult(b)
	}},
}

// step is one configuration of the breakdown. attach sets it up for the
// workload pid; a nil attach is the untraced step.
type step struct {
	name   string
	attach func(pid int) (*attached, error)
}

// attached is a step set up for one workload.
type attached struct {
	consumed atomic.Int64 // records (or printed lines) for the workload
	sleeps   atomic.Int64 // times the reader found the ring empty
	// expect is false when no reader consumes records.
	expect bool
	// lost reads the BPF side's lost counter; nil when the step has none.
	lost func() (uint64, error)
	// stop ends the reader and detaches; after it the counts are final.
	stop func() error
}

// bresult is one measurement of a step.
type bresult struct {
	calls    int
	elapsed  time.Duration
	consumed int64
	sleeps   int64
	lost     uint64
	cpu      time.Duration // the harness's CPU (the reader's) from the storm's start until the last record
	irq      irqCounts     // interrupts on all CPUs in that time
	busy     busyCPU       // CPU use of the machine in that time
}

func (r bresult) perCall() float64 { return float64(r.elapsed.Nanoseconds()) / float64(r.calls) }

func runBreakdown(n, runs int, cpuProfile string) error {
	if n < 1 || runs < 1 {
		return errors.New("-n and -runs must be at least 1")
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: sudo go run ./bench/setuids -breakdown")
	}
	if err := harness.EnsureTracefs(); err != nil {
		return err
	}
	steps := []step{
		{"untraced", nil},
		{"empty programs on enter+exit", attachEmpty},
		{"owl BPF, ring never read (full: reserve fails)", attachUnread},
		{"owl BPF + busy-polling reader, discard", attachBusyPoll},
		{"owl BPF + owl's reader (epoll), discard", attachReader},
		{"+ decode + format text to io.Discard", attachFormat},
		{"+ write to a pipe read by a goroutine (= owl)", attachPipe},
	}
	profiled := len(steps) - 1 // the step that is owl
	// What if the BPF side did not wake the reader: owl's object with the
	// submit flag patched to BPF_RB_NO_WAKEUP, and a reader that polls.
	if obj, err := setuidsObject(); err != nil {
		fmt.Printf("skipped the BPF_RB_NO_WAKEUP step: %v\n", err)
	} else {
		steps = append(steps, step{
			name:   "what if: BPF_RB_NO_WAKEUP + reader polling every 1 ms, discard",
			attach: func(pid int) (*attached, error) { return attachNoWakeup(obj, pid) },
		})
	}
	fmt.Printf("breakdown: %d setuid(0) per measurement, %d measurements of each step\n\n", n, runs)
	results := make([][]bresult, len(steps))
	for i := range runs {
		for j, s := range steps {
			profile := ""
			if i == 0 && j == profiled {
				profile = cpuProfile
			}
			r, err := undisturbed(s.name, func() (bresult, error) { return measureStep(s, n, profile) },
				func(r bresult) float64 { return r.busy.othersPercent() })
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", s.name, i+1, err)
			}
			fmt.Fprintf(os.Stderr, "%-48s run %d: %7.1f ns/call  consumed %6d  lost %6d  sleeps %6d  IWI %6d  IPI %6d  CPU %4.0f ms  other processes' CPU %3.0f%%\n",
				s.name, i+1, r.perCall(), r.consumed, r.lost, r.sleeps, r.irq.iwi, r.irq.ipi, ms(r.cpu), r.busy.othersPercent())
			results[j] = append(results[j], r)
		}
	}
	fmt.Fprintln(os.Stderr)

	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "step\tns/call\tmin\tmax\tadded\tvs previous\tconsumed/calls\tlost\treader sleeps/event\tIWI/event\tIPI/event\treader CPU ns/event\tothers' CPU %\t")
	base := harness.Median(bperCalls(results[0]))
	prev := base
	for j, s := range steps {
		rs := results[j]
		pc := bperCalls(rs)
		m := harness.Median(pc)
		var consumed int64
		var lost uint64
		var sleeps, iwi, ipi, cpu []float64
		busy := 0.0
		for _, r := range rs {
			busy = max(busy, r.busy.othersPercent())
			consumed += r.consumed
			lost += r.lost
			sleeps = append(sleeps, float64(r.sleeps)/float64(r.calls))
			iwi = append(iwi, float64(r.irq.iwi)/float64(r.calls))
			ipi = append(ipi, float64(r.irq.ipi)/float64(r.calls))
			cpu = append(cpu, float64(r.cpu.Nanoseconds())/float64(r.calls))
		}
		fmt.Fprintf(w, "%s\t%.0f\t%.0f\t%.0f\t%.0f\t%+.0f\t%d/%d\t%d\t%.3f\t%.3f\t%.3f\t%.0f\t%.0f\t\n",
			s.name, m, slices.Min(pc), slices.Max(pc), m-base, m-prev, consumed, n*len(rs), lost,
			harness.Median(sleeps), harness.Median(iwi), harness.Median(ipi), harness.Median(cpu), busy)
		prev = m
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	fmt.Println()
	fmt.Println("ns/call: median of the runs (min, max). added: over untraced. vs previous: over the row above.")
	fmt.Println("consumed: records read (or lines printed) for the workload; lost: owl's BPF counter.")
	fmt.Println("reader sleeps: times the reader found the ring empty and went (back) to epoll_wait.")
	fmt.Println("IWI: IRQ-work interrupts (BPF output waking its reader); IPI: rescheduling and function-call\n  interrupts (waking a task on another CPU); on all CPUs (/proc/interrupts) during the storm.")
	fmt.Println("reader CPU: the harness's own utime+stime (getrusage) during the storm and drain.")
	fmt.Println("others' CPU: the highest over the runs, CPU use of other processes during the storm, in % of one CPU.")
	if cpuProfile != "" {
		fmt.Printf("CPU profile of the first storm of the step that is owl: %s (go tool pprof -top %s)\n", cpuProfile, cpuProfile)
	}
	return nil
}

func bperCalls(rs []bresult) []float64 {
	var v []float64
	for _, r := range rs {
		v = append(v, r.perCall())
	}
	return v
}

// measureStep starts a workload, sets up s for it, runs the storm and waits
// until the records are consumed.
func measureStep(s step, n int, cpuProfile string) (res bresult, err error) {
	res.calls = n
	if err := waitIdle(); err != nil {
		return res, err
	}
	w, err := startWorkload()
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := w.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	a := &attached{}
	if s.attach != nil {
		if a, err = s.attach(w.pid()); err != nil {
			return res, err
		}
		defer func() {
			if serr := a.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
	}

	var prof *os.File
	if cpuProfile != "" {
		if prof, err = os.Create(cpuProfile); err != nil {
			return res, fmt.Errorf("create CPU profile: %w", err)
		}
		defer prof.Close()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return res, fmt.Errorf("start CPU profile: %w", err)
		}
	}
	cpu0, err := selfCPU()
	if err != nil {
		return res, err
	}
	s0, err := takeSample(w.pid())
	if err != nil {
		return res, err
	}
	if res.elapsed, err = w.calls(n); err != nil {
		return res, err
	}
	if a.expect {
		last, lastAt := a.consumed.Load(), time.Now()
		for last < int64(n) && time.Since(lastAt) < idleTimeout {
			time.Sleep(time.Millisecond)
			if now := a.consumed.Load(); now != last {
				last, lastAt = now, time.Now()
			}
		}
	}
	s1, err := takeSample(w.pid())
	if err != nil {
		return res, err
	}
	cpu1, err := selfCPU()
	if err != nil {
		return res, err
	}
	if prof != nil {
		pprof.StopCPUProfile()
	}
	res.cpu = cpu1 - cpu0
	res.irq = s1.irq.sub(s0.irq)
	res.busy = s1.since(s0)
	res.consumed = a.consumed.Load()
	res.sleeps = a.sleeps.Load()
	if a.lost != nil {
		if res.lost, err = a.lost(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// attachEmpty attaches a program that only returns 0 to the tracepoints of
// setuid's entry and exit: the floor of any BPF tracer of both.
func attachEmpty(int) (*attached, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "owl_bench_empty",
		Type:         ebpf.TracePoint,
		License:      "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
	if err != nil {
		return nil, fmt.Errorf("load empty program: %w", err)
	}
	var links []link.Link
	closeAll := func() error {
		var errs []error
		for _, l := range links {
			errs = append(errs, l.Close())
		}
		errs = append(errs, prog.Close())
		return errors.Join(errs...)
	}
	for _, tp := range []string{"sys_enter_setuid", "sys_exit_setuid"} {
		l, err := link.Tracepoint("syscalls", tp, prog, nil)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("attach empty program to syscalls:%s: %w", tp, err)
		}
		links = append(links, l)
	}
	return &attached{stop: closeAll}, nil
}

// attachUnread loads owl's programs and reads nothing: once the ring is full
// (about 3,600 events) each call runs both programs and a failing reserve.
func attachUnread(pid int) (*attached, error) {
	t, err := openSetuids(pid)
	if err != nil {
		return nil, err
	}
	return &attached{lost: lostOf(t.Stats), stop: t.Close}, nil
}

// attachBusyPoll reads owl's ring with a second reader that never sleeps:
// it polls with a deadline in the past and drops every record.
func attachBusyPoll(pid int) (*attached, error) {
	t, err := openSetuids(pid)
	if err != nil {
		return nil, err
	}
	var m struct {
		Events *ebpf.Map `ebpf:"events"`
	}
	if err := t.Assign(&m); err != nil {
		t.Close()
		return nil, err
	}
	rd, err := ringbuf.NewReader(m.Events)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("ring buffer reader: %w", err)
	}
	rd.SetDeadline(time.Unix(1, 0))
	a := &attached{expect: true, lost: lostOf(t.Stats)}
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		var rec ringbuf.Record
		for !done.Load() {
			err := rd.ReadInto(&rec)
			switch {
			case err == nil:
				a.consumed.Add(1)
			case errors.Is(err, os.ErrDeadlineExceeded):
				a.sleeps.Add(1) // counted, though this reader does not sleep
			default:
				return
			}
		}
	})
	a.stop = func() error {
		done.Store(true)
		wg.Wait()
		return errors.Join(rd.Close(), t.Close())
	}
	return a, nil
}

// attachReader reads owl's ring with owl's own loop (probe.Session.Read:
// epoll_wait when the ring is empty) and drops every record.
func attachReader(pid int) (*attached, error) {
	t, err := openSetuids(pid)
	if err != nil {
		return nil, err
	}
	a := &attached{expect: true, lost: lostOf(t.Stats)}
	a.stop = runReader(t, func(ctx context.Context) error {
		return t.Read(ctx, func([]byte) { a.consumed.Add(1) }, func() { a.sleeps.Add(1) })
	})
	return a, nil
}

// attachFormat is owl's loop with decoding and text formatting, into
// io.Discard: Tracer.Run and output.Writer, flushed when the ring is empty.
func attachFormat(pid int) (*attached, error) {
	t, err := openSetuids(pid)
	if err != nil {
		return nil, err
	}
	out := output.NewWriter(io.Discard, output.Text, table)
	a := &attached{expect: true, lost: lostOf(t.Stats)}
	a.stop = runReader(t, func(ctx context.Context) error {
		t.Drained = func() {
			out.Flush()
			a.sleeps.Add(1)
		}
		return t.Run(ctx, func(e *setuids.Event) {
			out.Event(e)
			a.consumed.Add(1)
		})
	})
	return a, nil
}

// attachPipe is what `owl setuids` does, in-process: the text goes through
// a pipe to a goroutine that counts the lines as the main harness does.
func attachPipe(pid int) (*attached, error) {
	t, err := openSetuids(pid)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("pipe: %w", err)
	}
	c := newCounter(pid, false, "")
	var counting sync.WaitGroup
	counting.Go(func() { c.read(pr) })
	out := output.NewWriter(pw, output.Text, table)
	a := &attached{expect: true, lost: lostOf(t.Stats)}
	stopReader := runReader(t, func(ctx context.Context) error {
		t.Drained = func() {
			out.Flush()
			a.sleeps.Add(1)
		}
		return t.Run(ctx, func(e *setuids.Event) { out.Event(e) })
	})
	// The lines are counted on the pipe's far side: poll the counter.
	var done atomic.Bool
	var polling sync.WaitGroup
	polling.Go(func() {
		for !done.Load() {
			a.consumed.Store(c.ours.Load())
			time.Sleep(time.Millisecond)
		}
	})
	a.stop = func() error {
		err := stopReader()
		err = errors.Join(err, out.Flush(), pw.Close())
		counting.Wait()
		done.Store(true)
		polling.Wait()
		a.consumed.Store(c.ours.Load())
		return errors.Join(err, pr.Close())
	}
	return a, nil
}

// setuidsObject finds the BPF object that internal/tools/setuids embeds, in
// the source tree of the module the harness runs in.
func setuidsObject() (string, error) {
	if runtime.GOARCH != "amd64" {
		return "", fmt.Errorf("the object is built for amd64 only, not %s", runtime.GOARCH)
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the owl module")
	}
	obj := filepath.Join(filepath.Dir(gomod), "internal", "tools", "setuids", "setuids_x86_bpfel.o")
	if _, err := os.Stat(obj); err != nil {
		return "", err
	}
	return obj, nil
}

// attachNoWakeup loads owl's setuids object from obj with every
// bpf_ringbuf_submit(e, 0) turned into bpf_ringbuf_submit(e,
// BPF_RB_NO_WAKEUP), attaches it to setuid's tracepoints, and reads the ring
// with a reader that wakes up every millisecond on its own and drops every
// record. owl itself is not changed: this shows what the wakeups cost.
func attachNoWakeup(obj string, pid int) (*attached, error) {
	spec, err := ebpf.LoadCollectionSpec(obj)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", obj, err)
	}
	if err := patchNoWakeup(spec); err != nil {
		return nil, fmt.Errorf("%s: %w", obj, err)
	}
	hook := probe.Hook{Kind: probe.Tracepoint, Name: "tracepoint syscalls:sys_{enter,exit}_setuid", Attachments: []probe.Attachment{
		probe.TracepointAt("tp_enter", "syscalls", "sys_enter_setuid"),
		probe.TracepointAt("tp_exit", "syscalls", "sys_exit_setuid"),
	}}
	s, err := probe.Open(spec, []probe.Hook{hook}, probe.Options{Tool: "setuids (patched)", NoReader: true,
		Task: &probe.TaskFilter{PID: pid, UID: -1}, RingBytes: 4 << 20})
	if err != nil {
		return nil, fmt.Errorf("open patched setuids: %w", err)
	}
	var m struct {
		Events *ebpf.Map `ebpf:"events"`
	}
	if err := s.Assign(&m); err != nil {
		s.Close()
		return nil, err
	}
	rd, err := ringbuf.NewReader(m.Events)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("ring buffer reader: %w", err)
	}
	a := &attached{expect: true, lost: lostOf(s.Stats)}
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		var rec ringbuf.Record
		for !done.Load() {
			rd.SetDeadline(time.Now().Add(time.Millisecond))
			err := rd.ReadInto(&rec)
			switch {
			case err == nil:
				a.consumed.Add(1)
			case errors.Is(err, os.ErrDeadlineExceeded):
				a.sleeps.Add(1)
			default:
				return
			}
		}
	})
	a.stop = func() error {
		done.Store(true)
		wg.Wait()
		return errors.Join(rd.Close(), s.Close())
	}
	return a, nil
}

// patchNoWakeup sets the flags argument of every bpf_ringbuf_submit call to
// BPF_RB_NO_WAKEUP. It expects the compiler's "r2 = 0" right before the
// call, as clang emits for owl's programs.
func patchNoWakeup(spec *ebpf.CollectionSpec) error {
	const noWakeup = 1 // BPF_RB_NO_WAKEUP
	patched := 0
	for name, p := range spec.Programs {
		insns := p.Instructions
		for i, ins := range insns {
			if !ins.IsBuiltinCall() || ins.Constant != int64(asm.FnRingbufSubmit) {
				continue
			}
			if i == 0 || insns[i-1].Dst != asm.R2 || insns[i-1].OpCode != asm.Mov.Op(asm.ImmSource) || insns[i-1].Constant != 0 {
				return fmt.Errorf("program %s: bpf_ringbuf_submit at %d is not preceded by r2 = 0", name, i)
			}
			insns[i-1].Constant = noWakeup
			patched++
		}
	}
	if patched == 0 {
		return errors.New("no bpf_ringbuf_submit call found")
	}
	return nil
}

// runReader runs read in a goroutine until the returned stop is called;
// stop then closes t.
func runReader(t *owltool.Source[setuids.Event], read func(ctx context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- read(ctx) }()
	return func() error {
		cancel()
		err := <-done
		if err != nil {
			err = fmt.Errorf("reader: %w", err)
		}
		return errors.Join(err, t.Close())
	}
}

// selfCPU is the harness's own user and system time, all threads.
func selfCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// openSetuids opens owl's setuids on pid, as `owl setuids -p PID` does.
func openSetuids(pid int) (*owltool.Source[setuids.Event], error) {
	opts := owltool.DefaultOptions()
	opts.Task.PID = pid
	t, err := setuids.Open(setuids.Config{}, opts)
	if err != nil {
		return nil, fmt.Errorf("open setuids: %w", err)
	}
	return t, nil
}

// lostOf reads the events a source or session lost, whatever the cause.
func lostOf(stats func() (probe.Stats, error)) func() (uint64, error) {
	return func() (uint64, error) {
		st, err := stats()
		return st.Lost(), err
	}
}
