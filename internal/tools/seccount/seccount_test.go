package seccount

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/syms"
)

// The child opens its own executable N times once it reads a line.
func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{"open": func(args []string) error {
		n, err := strconv.Atoi(args[0])
		if err != nil {
			return err
		}
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return err
		}
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		for range n {
			f, err := os.Open(exe)
			if err != nil {
				return err
			}
			f.Close()
		}
		return nil
	}})
}

func kernelTypes(t *testing.T) *btf.Spec {
	t.Helper()
	types, err := e2e.Options().Runtime.BTF.Kernel()
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	return types
}

func TestResolve(t *testing.T) {
	types := kernelTypes(t)
	names := []string{"security_file_open", "security_file_permission", "security_bprm_check",
		"security_prepare_creds", "security_not_a_function", "vfs_read", "security_compute_av"}
	f, err := Resolve("security_file_*", false, types, names)
	if err != nil || strings.Join(f.Funcs, " ") != "security_file_open security_file_permission" {
		t.Errorf("security_file_*: got %+v, %v", f, err)
	}
	f, err = Resolve(DefaultPattern, false, types, names)
	if err != nil || len(f.Left) != 1 || f.Left[0] != "security_not_a_function" {
		t.Errorf("security_*: left %v (%v), want security_not_a_function", f.Left, err)
	}
	// LSM hooks named X, X_security and otherwise; SELinux's
	// security_compute_av is no LSM entry point.
	f, err = Resolve(DefaultPattern, true, types, names)
	got := map[string]string{}
	for i, fn := range f.Funcs {
		got[fn] = f.LSMHooks[i]
	}
	if err != nil || got["security_file_open"] != "file_open" || got["security_bprm_check"] != "bprm_check_security" ||
		got["security_prepare_creds"] != "cred_prepare" || strings.Contains(strings.Join(f.Funcs, " "), "compute_av") {
		t.Errorf("--lsm: got %v, left %v (%v)", got, f.Left, err)
	}
	for _, bad := range []string{"vfs_*", "security_[", "security_zz*"} {
		if _, err := Resolve(bad, false, types, names); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestReport(t *testing.T) {
	rows := sorted([]Count{{Func: "security_file_open", Count: 120}, {Func: "security_bprm_check", Count: 0}, {Func: "security_file_permission", Count: 7}})
	got := string(appendReport(nil, rows, time.Time{}, false))
	want := "\nFUNC                                    COUNT\n" +
		"security_file_permission                    7\n" +
		"security_file_open                        120\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// haveHooks reports whether this kernel has fentry or kprobes.
func haveHooks() bool {
	_, err := os.Stat("/sys/bus/event_source/devices/kprobe")
	return features.HaveProgramType(ebpf.Tracing) == nil || err == nil
}

// countOpens starts a child, counts cfg's functions for its pid while it
// opens n files, and returns the counts by function.
func countOpens(t *testing.T, cfg Config, n int) (map[string]uint64, *Source) {
	t.Helper()
	child := e2e.Child("open", strconv.Itoa(n))
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Wait()
	defer stdin.Close()
	opts := e2e.Options()
	opts.Task.PID = child.Process.Pid
	cost := runCost(t)
	start := time.Now()
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		closing := time.Now()
		src.Close()
		t.Logf("detached in %.2f s", time.Since(closing).Seconds())
	})
	skipped := src.Skipped()
	t.Logf("%s: %d functions attached in %.2f s, %d skipped %v", src.Session.Hook.Name,
		len(cfg.Funcs)-len(skipped), time.Since(start).Seconds(), len(skipped), skipped[:min(len(skipped), 5)])
	if src.HasReader() {
		t.Error("seccount opened a ring buffer reader")
	}
	io.WriteString(stdin, "go\n")
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	cost()
	counts, err := src.Counts(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, c := range counts {
		got[c.Func] = c.Count
	}
	return got, src
}

// runCost turns on the kernel's BPF run-time statistics; the function it
// returns logs how long seccount's programs loaded since took per run on
// average (what each counted call costs, the trampoline or kprobe aside),
// and turns them off.
func runCost(t *testing.T) func() {
	t.Helper()
	stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
	if err != nil {
		t.Logf("no BPF run-time statistics: %v", err)
		return func() {}
	}
	var before ebpf.ProgramID
	for id, err := ebpf.ProgramGetNextID(0); err == nil; id, err = ebpf.ProgramGetNextID(id) {
		before = id
	}
	return func() {
		defer stats.Close()
		var runs uint64
		var spent time.Duration
		for id, err := ebpf.ProgramGetNextID(before); err == nil; id, err = ebpf.ProgramGetNextID(id) {
			p, err := ebpf.NewProgramFromID(id)
			if err != nil {
				continue
			}
			info, ierr := p.Info()
			st, serr := p.Stats()
			p.Close()
			if ierr != nil || serr != nil || !strings.HasPrefix(info.Name, "count_") {
				continue
			}
			runs += st.RunCount
			spent += st.Runtime
		}
		if runs > 0 {
			t.Logf("programs ran %d times, %d ns each on average", runs, spent.Nanoseconds()/int64(runs))
		}
	}
}

func resolveT(t *testing.T, pattern string, lsm bool) Config {
	t.Helper()
	names, err := KernelFunctions()
	if err != nil {
		t.Fatal(err)
	}
	f, err := Resolve(pattern, lsm, kernelTypes(t), names)
	if err != nil {
		t.Fatal(err)
	}
	return Config{Funcs: f.Funcs, LSM: lsm, LSMHooks: f.LSMHooks}
}

// The child's N opens are counted at security_file_open (at least N: the
// runtime opens files too), for its pid only, with owl's hook choice (or
// the kind OWL_HOOKS forces), with one kprobe each, and with --lsm. Where
// the kernel has no such hook the error names each one missing.
func TestCountsFileOpens(t *testing.T) {
	e2e.Require(t)
	const n = 50
	t.Run("chosen", func(t *testing.T) {
		// The default pattern (~300 functions) once, with owl's own hook
		// choice; the forced runs (OWL_HOOKS, qemu guests) take the
		// security_file_* functions: under TCG each fentry link of 300
		// costs a third of a second to attach and to detach.
		pattern := DefaultPattern
		if os.Getenv("OWL_HOOKS") != "" {
			pattern = "security_file_*"
		}
		cfg := resolveT(t, pattern, false)
		if !haveHooks() {
			_, err := Open(cfg, e2e.Options())
			var nh *probe.NoHookError
			if !errors.As(err, &nh) || cli.ExitCode(err) != 2 {
				t.Fatalf("got %v, want a no-hook error", err)
			}
			for _, h := range []string{fentryName, fentryIPName, multiName, eachName} {
				if !strings.Contains(err.Error(), h+": ") {
					t.Errorf("the error does not name %q: %v", h, err)
				}
			}
			return
		}
		got, _ := countOpens(t, cfg, n)
		if got["security_file_open"] < n {
			t.Errorf("security_file_open: %d, want at least %d", got["security_file_open"], n)
		}
	})
	t.Run("kprobe-each", func(t *testing.T) {
		cfg := resolveT(t, "security_file_*", false)
		cfg.each = true
		if _, err := os.Stat("/sys/bus/event_source/devices/kprobe"); err != nil {
			_, err := Open(cfg, e2e.Options())
			if cli.ExitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), "this kernel has no kprobes") {
				t.Fatalf("got %v, want: this kernel has no kprobes", err)
			}
			return
		}
		got, _ := countOpens(t, cfg, n)
		if got["security_file_open"] < n {
			t.Errorf("security_file_open: %d, want at least %d", got["security_file_open"], n)
		}
	})
	// The fentry path of kernels whose links take no cookie (Debian's
	// 6.1), forced where they do.
	t.Run("fentry-ip", func(t *testing.T) {
		cfg := resolveT(t, "security_file_*", false)
		cfg.byIP = true
		if features.HaveProgramType(ebpf.Tracing) != nil {
			_, err := Open(cfg, e2e.Options())
			if cli.ExitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), fentryIPName+": ") {
				t.Fatalf("got %v, want a no-hook error naming %q", err, fentryIPName)
			}
			return
		}
		got, src := countOpens(t, cfg, n)
		if src.Session.Hook.Name != fentryIPName {
			t.Errorf("hook %s, want %s", src.Session.Hook.Name, fentryIPName)
		}
		if got["security_file_open"] < n {
			t.Errorf("security_file_open: %d, want at least %d", got["security_file_open"], n)
		}
	})
	t.Run("lsm", func(t *testing.T) {
		cfg := resolveT(t, "security_file_*", true)
		if err := bpfLSMActive(); err != nil {
			_, oerr := Open(cfg, e2e.Options())
			if cli.ExitCode(oerr) != 2 || !strings.Contains(fmt.Sprint(oerr), err.Error()) {
				t.Fatalf("got %v, want %v", oerr, err)
			}
			return
		}
		got, src := countOpens(t, cfg, n)
		if src.Session.Hook.Kind != probe.LSM {
			t.Errorf("hook %s, want lsm", src.Session.Hook.Name)
		}
		if got["security_file_open"] < n {
			t.Errorf("security_file_open: %d, want at least %d", got["security_file_open"], n)
		}
	})
}

// funcIndex finds each function's kallsyms address, at its index, and
// leaves out names the kernel does not have.
func TestFuncIndex(t *testing.T) {
	k, err := syms.LoadKallsyms()
	if errors.Is(err, syms.ErrKptrRestrict) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	funcs := []string{"security_no_such_function", "security_file_open"}
	index, err := funcIndex(funcs)
	if err != nil {
		t.Fatal(err)
	}
	want, ok := k.Address("security_file_open")
	if !ok {
		t.Skip("no security_file_open in kallsyms")
	}
	if len(index) != 1 || index[0].Key != want || index[0].Value != uint32(1) {
		t.Errorf("got %+v, want {%#x 1}", index, want)
	}
	if _, err := funcIndex(funcs[:1]); err == nil {
		t.Error("no function found: no error")
	}
}

// With -p, another process's opens are not counted: the child opens n
// files while the count is for this process, which opens none.
func TestOtherProcessNotCounted(t *testing.T) {
	e2e.Require(t)
	if !haveHooks() {
		t.Skip("no fentry or kprobes here: TestCountsFileOpens checks the error")
	}
	const n = 50
	cfg := resolveT(t, "security_file_open", false)
	opts := e2e.Options()
	opts.Task.PID = os.Getpid()
	src, err := Open(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	child := e2e.Child("open", strconv.Itoa(n))
	child.Stdin = strings.NewReader("go\n")
	if out, err := child.Output(); err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	counts, err := src.Counts(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if counts[0].Count >= n {
		t.Errorf("counted %d opens for this process; its child made %d", counts[0].Count, n)
	}
}
