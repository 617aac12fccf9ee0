// Package privs proves owl's least privilege (issue 14, item 4): every
// tool of the registry runs with exactly the capabilities it declares
// (tool.Spec.Caps; README's capability table) and sees a real event, as
// root with the rest dropped (capsh) and as an ordinary uid given them
// (ambient capabilities; file capabilities set with setcap on a copy of
// the binary). With any one of them fewer it prints one line naming the
// missing capability and exits 2 before anything is loaded.
package privs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/caps"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/sysnames"
	"github.com/owlbpf/owl/internal/tools"
)

// uid is the ordinary user the user variants run owl as: no passwd entry
// is needed, and no other test package uses it.
const uid = 64998

// owlBin is the binary under test: $OWL_BIN, else built once.
var owlBin string

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{"tick": tick, "spin": spin})
}

// privsTick is the function the uprobe tools probe in a tick child.
//
//go:noinline
func privsTick(n int) int { return n*7 + 1 }

// privsSpin burns CPU for profile.
//
//go:noinline
func privsSpin(n int) int {
	for i := range 1 << 16 {
		n ^= i * 31
	}
	return n
}

var sink int

// tick calls privsTick every 2 ms until killed.
func tick([]string) error {
	for i := 0; ; i++ {
		sink += privsTick(i)
		time.Sleep(2 * time.Millisecond)
	}
}

// spin calls privsSpin in a loop until killed.
func spin([]string) error {
	for i := 0; ; i++ {
		sink += privsSpin(i)
	}
}

// binary finds or builds the owl binary, in a directory uid may enter.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "owl-privs")
		if err != nil {
			buildErr = err
			return
		}
		os.Chmod(dir, 0o755)
		dst := filepath.Join(dir, "owl")
		if src := os.Getenv("OWL_BIN"); src != "" {
			buildErr = copyFile(src, dst)
		} else {
			out, err := exec.Command("go", "build", "-o", dst, "github.com/owlbpf/owl/cmd/owl").CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("build owl: %v\n%s", err, out)
			}
		}
		owlBin = dst
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return owlBin
}

var (
	buildOnce sync.Once
	buildErr  error
)

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// A launcher starts owl with exactly the capabilities set.
type launcher struct {
	name string
	user bool // runs as uid (which must read tracefs: CAP_DAC_READ_SEARCH)
	// prepare returns why the launcher cannot run here ("" if it can).
	prepare func() string
	command func(t *testing.T, set caps.Set, args []string) *exec.Cmd
}

var launchers = []launcher{
	{
		name:    "root-capsh",
		prepare: func() string { return need("capsh", "bash") },
		command: func(t *testing.T, set caps.Set, args []string) *exec.Cmd {
			// Root keeps only its bounding set across exec: drop the rest.
			return exec.Command("capsh", append([]string{"--drop=" + dropList(set), "--", "-c", `exec "$0" "$@"`, binary(t)}, args...)...)
		},
	},
	{
		name: "user-ambient",
		user: true,
		command: func(t *testing.T, set caps.Set, args []string) *exec.Cmd {
			cmd := exec.Command(binary(t), args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Credential:  &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}},
				AmbientCaps: capList(set),
			}
			return cmd
		},
	},
	{
		name:    "user-setcap",
		user:    true,
		prepare: func() string { return need("setcap", "cp") },
		command: func(t *testing.T, set caps.Set, args []string) *exec.Cmd {
			// A copy per run: file capabilities belong to the inode.
			dir, err := os.MkdirTemp(filepath.Dir(binary(t)), "setcap")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			os.Chmod(dir, 0o755)
			// cp, not a copy here: a file this process has open for
			// writing is inherited by children forked meanwhile, and
			// exec'ing it fails with ETXTBSY.
			bin := filepath.Join(dir, "owl")
			if out, err := exec.Command("cp", binary(t), bin).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v: %s", err, out)
			}
			text := strings.ToLower(strings.ReplaceAll(set.String(), " ", "")) + "+ep"
			if out, err := exec.Command("setcap", text, bin).CombinedOutput(); err != nil {
				t.Fatalf("setcap %s %s: %v: %s", text, bin, err, out)
			}
			cmd := exec.Command(bin, args...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
			return cmd
		},
	},
}

// need says which of the programs are missing ("" if none): a reason to
// pass over one launcher or scenario while the others run (the qemu guests
// have no capsh, bash or su), where e2e.Need would skip the whole tool.
func need(programs ...string) string {
	var missing []string
	for _, p := range programs {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return "no " + strings.Join(missing, ", ") + " here"
	}
	return ""
}

// capList is set as capability numbers.
func capList(set caps.Set) []uintptr {
	var l []uintptr
	for n := range 64 {
		if set&(1<<n) != 0 {
			l = append(l, uintptr(n))
		}
	}
	return l
}

// dropList names every capability this kernel knows but set's, for capsh
// --drop.
func dropList(set caps.Set) string {
	b, _ := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	last, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		last = unix.CAP_LAST_CAP
	}
	var names []string
	for n := 0; n <= last; n++ {
		if set&(1<<n) == 0 {
			names = append(names, strings.ToLower(sysnames.Capability(n)))
		}
	}
	return strings.Join(names, ",")
}

// env is what a scenario's arguments and workload refer to.
type env struct {
	t      *testing.T
	marker string // unique to the run
	port   int    // a loopback port of the run
	tick   int    // pid of a root child calling privsTick (tickChild)
	self   string // the test binary
}

// A scenario runs one tool so that it sees a real event of this test.
type scenario struct {
	args []string
	// argf, when set, gives args from the run's env.
	argf func(e *env) []string
	// extra is what the run needs besides caps.Base (and, for a uid
	// other than root, CAP_DAC_READ_SEARCH): checked against the tool's
	// declaration by the runs themselves.
	extra caps.Set
	// child starts a root child (e.tick) of this action: "tick", "spin".
	child string
	// work makes events until ctx ends.
	work func(ctx context.Context, e *env)
	// want is in the output once the event was seen (after the end when
	// final).
	want  func(e *env) string
	final bool
	// skip says why the scenario cannot run here ("" if it can).
	skip func() string
}

func marker(e *env) string { return e.marker }

// scenarios are the runs of each tool (by name); a tool of the registry
// with none fails the test, so a new tool must add its own.
var scenarios = map[string][]scenario{
	"execsnoop": {{
		want: marker,
		work: loop(func(e *env) { exec.Command(e.self, "-test.run=^$", e.marker).Run() }),
	}},
	"opensnoop": {
		{argf: func(e *env) []string { return []string{"-p", strconv.Itoa(os.Getpid())} }, want: marker, work: openLoop},
		{argf: func(e *env) []string { return []string{"--ustack", "-p", strconv.Itoa(os.Getpid())} }, extra: caps.SysPtrace, want: marker, work: openLoop},
	},
	"tcpconnect": {{
		argf: func(e *env) []string { return []string{"-P", strconv.Itoa(e.port)} },
		want: port, work: dialLoop(true),
	}},
	"tcpaccept": {{
		argf: func(e *env) []string { return []string{"-p", strconv.Itoa(os.Getpid())} },
		want: port, work: dialLoop(true),
	}},
	"tcpreset": {{want: port, work: dialLoop(false)}},
	"setuids": {{
		argf: func(e *env) []string { return []string{"-p", strconv.Itoa(os.Getpid())} },
		want: func(*env) string { return "setresuid" },
		// -1 everywhere changes nothing; raw, on one thread.
		work: loop(func(*env) { unix.Setresuid(-1, -1, -1) }),
	}},
	"eperm": {{
		argf: func(e *env) []string { return []string{"-e", "-p", strconv.Itoa(os.Getpid())} },
		want: func(*env) string { return "ptrace" },
		// Attaching to one's own process is EPERM, even for root.
		work: loop(func(*env) { unix.PtraceAttach(os.Getpid()) }),
	}},
	"capable": {
		{argf: pidSelf, want: func(*env) string { return "CAP_CHOWN" }, work: chownLoop},
		{argf: func(e *env) []string { return append(pidSelf(e), "-K", "-U") }, extra: caps.SysPtrace | caps.Syslog,
			want: func(*env) string { return "CAP_CHOWN" }, work: chownLoop},
	},
	"funccount": {{argf: uprobeArgs, extra: caps.SysPtrace, child: "tick", want: tickName, final: true, skip: pidUprobes}},
	"funclatency": {{argf: uprobeArgs, extra: caps.SysPtrace, child: "tick",
		want: func(*env) string { return "distribution" }, final: true, skip: pidUprobes}},
	"trace": {{argf: func(e *env) []string {
		return []string{"-p", strconv.Itoa(e.tick), fmt.Sprintf(`%s:*privsTick "%s %%d", arg1`, e.self, e.marker)}
	}, extra: caps.SysPtrace, child: "tick", want: marker, skip: pidUprobes}},
	"stackcount": {{argf: uprobeArgs, extra: caps.SysPtrace, child: "tick", want: tickName, final: true, skip: pidUprobes}},
	"profile": {{argf: func(e *env) []string { return []string{"-F", "199", "-p", strconv.Itoa(e.tick)} },
		extra: caps.SysPtrace | caps.Syslog, child: "spin", want: func(*env) string { return "privsSpin" }, final: true}},
	"bashfunc": {{
		want: marker, work: bashLoop, skip: func() string { return need("bash") },
	}},
	"bashfunclat": {{
		want: marker, work: bashLoop, final: true, skip: func() string { return need("bash") },
	}},
	"ucalls":   {{argf: pyArgs("python"), extra: caps.SysPtrace, child: "python", want: text("owlprivsmark"), final: true, skip: noPython}},
	"uflow":    {{argf: pyArgs("python"), extra: caps.SysPtrace, child: "python", want: text("owlprivsmark"), skip: noPython}},
	"ugc":      {{argf: pyArgs("python"), extra: caps.SysPtrace, child: "python", want: text("GC collected"), skip: noPython}},
	"uthreads": {{argf: pyArgs("c"), extra: caps.SysPtrace, child: "python", want: text("start"), skip: noPython}},
	"usdt": {{argf: func(e *env) []string {
		return []string{"-p", strconv.Itoa(e.tick), "python:function__return", "%s", "arg1"}
	}, extra: caps.SysPtrace, child: "python", want: text("owlprivsmark"), skip: noPython}},
	"pamsnoop": {
		{want: nobody, work: suLoop, extra: caps.SysPtrace, skip: func() string { return need("su") }},
		{argf: func(*env) []string { return []string{"-l", libpam()} }, want: nobody, work: suLoop,
			skip: func() string { return orIf(libpam() == "", "no libpam.so.0 here", need("su")) }},
	},
}

// python is Debian's python3.11, built with USDT probes (pyenv's are not).
const python = "/usr/bin/python3.11"

// pyScript calls owlprivsmark every 2 ms, and every 100 ms collects
// garbage and starts a thread (pthread_create in libc).
const pyScript = `import time, gc, threading
def owlprivsmark():
    return 1
def nothing():
    pass
i = 0
while True:
    owlprivsmark()
    i += 1
    if i % 50 == 0:
        gc.collect()
        threading.Thread(target=nothing).start()
    time.sleep(0.002)
`

// pidUprobes says why -p uprobes are not tried here: without uprobe-multi
// links (before 6.6) they are perf events bound to the process, which
// 6.18 refused without CAP_SYS_ADMIN (uthreads did so before it took
// uprobe-multi links); not yet measured on those kernels.
func pidUprobes() string {
	if !probe.HaveUprobeMulti() {
		return "no uprobe-multi links here: -p uprobes would be pid-bound perf events (CAP_SYS_ADMIN?)"
	}
	return ""
}

func noPython() string {
	if s := pidUprobes(); s != "" {
		return s
	}
	if _, err := os.Stat(python); err != nil {
		return "no " + python + " (with USDT) here"
	}
	return ""
}

func pyArgs(lang string, more ...string) func(e *env) []string {
	return func(e *env) []string {
		return append([]string{"-l", lang, "-p", strconv.Itoa(e.tick)}, more...)
	}
}

func text(s string) func(*env) string { return func(*env) string { return s } }

// unavailable are the tools this test cannot give an event, and why.
var unavailable = map[string]string{
	"seccount":     "", // filled in from the hook chain: none here, or kprobes in the guests
	"modsnoop":     "",
	"bashreadline": "needs an interactive bash on a terminal (internal/tools/bashreadline drives one with tmux)",
}

func orIf(cond bool, why, else_ string) string {
	if cond {
		return why
	}
	return else_
}

func nobody(*env) string { return "nobody" }

func pidSelf(*env) []string { return []string{"-p", strconv.Itoa(os.Getpid())} }

func port(e *env) string { return strconv.Itoa(e.port) }

func tickName(*env) string { return "privsTick" }

// uprobeArgs probe privsTick of the tick child.
func uprobeArgs(e *env) []string {
	return []string{"-p", strconv.Itoa(e.tick), e.self + ":*privsTick"}
}

func loop(f func(e *env)) func(context.Context, *env) {
	return func(ctx context.Context, e *env) {
		for ctx.Err() == nil {
			f(e)
			time.Sleep(20 * time.Millisecond)
		}
	}
}

var openLoop = loop(func(e *env) {
	f, err := os.Open(filepath.Join(os.TempDir(), e.marker))
	if err == nil {
		f.Close()
	}
})

var chownLoop = loop(func(e *env) {
	// Giving a file away checks CAP_CHOWN.
	p := filepath.Join(os.TempDir(), e.marker)
	if f, err := os.Create(p); err == nil {
		f.Close()
		os.Chown(p, uid, uid)
		os.Remove(p)
	}
})

// dialLoop connects to e.port on loopback: listen true accepts there,
// false leaves it closed (a reset).
func dialLoop(listen bool) func(context.Context, *env) {
	return func(ctx context.Context, e *env) {
		if listen {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(e.port))
			if err != nil {
				e.t.Errorf("listen: %v", err)
				return
			}
			defer l.Close()
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Close()
				}
			}()
		}
		loop(func(e *env) {
			if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(e.port)); err == nil {
				c.Close()
			}
		})(ctx, e)
	}
}

var bashLoop = loop(func(e *env) {
	exec.Command("bash", "-c", e.marker+"() { :; }; "+e.marker).Run()
})

// suLoop starts PAM: su as root to nobody calls pam_start(service su,
// user nobody).
var suLoop = loop(func(e *env) {
	exec.Command("su", "-s", "/bin/true", "nobody").Run()
})

func libpam() string {
	for _, p := range []string{"/lib/x86_64-linux-gnu/libpam.so.0", "/usr/lib/x86_64-linux-gnu/libpam.so.0", "/lib/aarch64-linux-gnu/libpam.so.0"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// freePort is a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// result is one run of owl.
type result struct {
	code           int
	stdout, stderr string
	traced         bool // said "Tracing ..."
}

// parallel bounds the owl runs at once: the machine has 2 CPUs.
var parallel = make(chan struct{}, 3)

// run starts owl with set, waits until it traces, runs the scenario's
// workload until want shows in its output (or, final, for a second),
// then interrupts it.
func run(t *testing.T, l launcher, set caps.Set, args []string, sc scenario, e *env) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := l.command(t, set, args)
	cmd.Dir = "/"
	var stdout e2e.SyncBuffer
	cmd.Stdout = &stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var stderr e2e.SyncBuffer
	traced := make(chan struct{})
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(errPipe)
		once := sync.Once{}
		for sc.Scan() {
			stderr.Write([]byte(sc.Text() + "\n"))
			if strings.HasPrefix(sc.Text(), "Tracing ") {
				once.Do(func() { close(traced) })
			}
		}
	}()
	r := result{}
	select {
	case <-traced:
		r.traced = true
	case <-copied:
	case <-ctx.Done():
	}
	if r.traced && sc.want != nil {
		wctx, wcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if sc.work != nil {
				sc.work(wctx, e)
			}
		}()
		want := sc.want(e)
		deadline := time.Now().Add(20 * time.Second)
		if sc.final {
			deadline = time.Now().Add(1500 * time.Millisecond)
		}
		for time.Now().Before(deadline) && (sc.final || !strings.Contains(stdout.String(), want)) {
			time.Sleep(50 * time.Millisecond)
		}
		wcancel()
		<-done
	}
	if r.traced {
		cmd.Process.Signal(os.Interrupt)
	}
	go func() { <-ctx.Done(); cmd.Process.Kill() }()
	<-copied
	err = cmd.Wait()
	r.stdout, r.stderr = stdout.String(), stderr.String()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("owl %v: %v", args, err)
	}
	return r
}

// hookless reports why a tool has no usable hook here ("" if it has):
// owl run as root says so.
func hookless(t *testing.T, name string, args []string) string {
	r := runRoot(t, append([]string{name, "-d", "1"}, args...))
	if r.code == 2 && strings.Contains(r.stderr, "no usable hook") {
		return strings.TrimSpace(r.stderr)
	}
	return ""
}

func runRoot(t *testing.T, args []string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		r.code = ee.ExitCode()
	}
	return r
}

// TestLeastPrivilege runs every tool of the registry with exactly the
// capabilities it needs, under each launcher, and sees its event; then
// with each one of them fewer, and sees one line naming it and status 2.
func TestLeastPrivilege(t *testing.T) {
	e2e.Require(t)
	if runtime.GOOS != "linux" {
		t.Skip("linux only")
	}
	// Debian's and Ubuntu's kernels add kernel.perf_event_paranoid=3,
	// where perf events (every attachment) may be CAP_SYS_ADMIN's alone:
	// the README tells users to set 2. In the qemu guests this test does
	// so; elsewhere it leaves the host alone.
	if p := caps.Paranoid(); p > 2 {
		if !e2e.InGuest() {
			t.Skipf("kernel.perf_event_paranoid=%d: CAP_PERFMON may not be enough here (set it to 2)", p)
		}
		if err := os.WriteFile("/proc/sys/kernel/perf_event_paranoid", []byte("2"), 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile("/proc/sys/kernel/perf_event_paranoid", []byte(strconv.Itoa(p)), 0) })
	}
	// The tick children and execs run a copy of this binary where uid
	// can reach it (owl, as uid, resolves its functions).
	self := filepath.Join(filepath.Dir(binary(t)), "privs.test")
	t.Cleanup(func() { os.RemoveAll(filepath.Dir(owlBin)) }) // the only test that uses it
	if err := copyFile("/proc/self/exe", self); err != nil {
		t.Fatal(err)
	}
	for _, tl := range tools.All() {
		name := tl.Info().Name
		t.Run(name, func(t *testing.T) {
			scs, ok := scenarios[name]
			if !ok {
				why, known := unavailable[name]
				if !known {
					t.Fatalf("no scenario for %s: add one to test/privs", name)
				}
				if why == "" {
					if why = hookless(t, name, nil); why == "" {
						why = "no event scenario yet"
					}
				}
				t.Skip(why)
			}
			t.Parallel()
			for i, sc := range scs {
				if sc.skip != nil {
					if why := sc.skip(); why != "" {
						t.Logf("scenario %d: %s", i, why)
						continue
					}
				}
				for _, l := range launchers {
					if l.prepare != nil {
						if why := l.prepare(); why != "" {
							t.Logf("%s: %s", l.name, why)
							continue
						}
					}
					runScenario(t, name, l, sc, self)
				}
			}
		})
	}
}

func runScenario(t *testing.T, name string, l launcher, sc scenario, self string) {
	parallel <- struct{}{}
	defer func() { <-parallel }()
	e := &env{t: t, marker: fmt.Sprintf("owlprivs%d", time.Now().UnixNano()%1e9), port: freePort(t), self: self}
	if sc.child != "" {
		c := exec.Command(self)
		c.Env = append(os.Environ(), "OWL_E2E_CHILD="+sc.child) // e2e.Child's, run from self
		if sc.child == "python" {
			c = exec.Command(python, "-c", pyScript)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { c.Process.Kill(); c.Wait() }()
		e.tick = c.Process.Pid
		time.Sleep(100 * time.Millisecond) // exec'd and running its loop
	}
	args := append([]string{name}, sc.args...)
	if sc.argf != nil {
		args = append(args, sc.argf(e)...)
	}
	set := caps.Base | sc.extra
	if l.user {
		set |= caps.DacReadSearch
	}
	start := time.Now()
	r := run(t, l, set, args, sc, e)
	want := sc.want(e)
	if !r.traced || !strings.Contains(r.stdout, want) || r.code != 0 {
		t.Errorf("%s, %v: owl %q: status %d, traced %v, %q not in stdout %q, stderr %q",
			l.name, set, args, r.code, r.traced, want, cut(r.stdout), r.stderr)
	} else {
		t.Logf("%s, %v: owl %q saw its event (%.1f s)", l.name, set, args, time.Since(start).Seconds())
	}
	// One fewer: named, status 2, nothing traced, nothing on stdout.
	for _, c := range capList(set) {
		one := caps.Set(1) << c
		r := run(t, l, set&^one, args, scenario{}, e)
		lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
		wantLine := "owl: missing capability " + one.String()
		if r.code != 2 || r.traced || r.stdout != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], wantLine) ||
			!strings.Contains(lines[0], "(needs "+set.String()+")") {
			t.Errorf("%s without %v: owl %q: status %d, stdout %q, stderr %q; want status 2 and one line %q... (needs %v)",
				l.name, one, args, r.code, cut(r.stdout), r.stderr, wantLine, set)
		}
	}
}

func cut(s string) string {
	if len(s) > 600 {
		return s[:600] + "..."
	}
	return s
}
