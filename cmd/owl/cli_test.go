package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tools"
)

// result is what one run of owl did.
type result struct {
	code           int // -1: killed after the timeout (it traced instead of refusing)
	stdout, stderr string
}

// runOwl runs owl with args and extra environment, killing it after 10 s:
// a flag that is wrongly accepted starts tracing until Ctrl-C.
func runOwl(t *testing.T, env []string, cred *syscall.Credential, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = os.Environ()
	for _, e := range env {
		if e != "" {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Dir = "/"
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		r.code = -1
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("owl %v: %v", args, err)
	}
	return r
}

// wantUsage checks a run ended with status 2 and one line on stderr
// starting with "owl: " and containing want.
func wantUsage(t *testing.T, args []string, r result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	if r.code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "owl: ") || !strings.Contains(lines[0], want) {
		t.Errorf("owl %v: status %d, stderr %q; want status 2 and one line saying %q", args, r.code, r.stderr, want)
	}
}

// Numeric flags out of range, or 0 where 0 means nothing, are bad input:
// status 2 and one line naming the flag, not a Go stack trace, an
// immediate stop, a wrapped uid or a filter silently turned off.
func TestNumericFlagsExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"eperm", "-i", "9223372037"}, "--interval"}, // overflowed time.Duration: a panic
		{[]string{"eperm", "-i", "0"}, "--interval"},
		{[]string{"tcpconnect", "-d", "18446744074"}, "--duration"}, // wrapped: stopped at once
		{[]string{"tcpconnect", "-d", "0"}, "--duration"},
		{[]string{"tcpconnect", "-d", "-1"}, "--duration"},
		{[]string{"tcpconnect", "-u", "4294967296"}, "--uid"}, // wrapped to uid 0
		{[]string{"tcpconnect", "-u", "4294967295"}, "--uid"}, // the kernel's "no uid": filter off
		{[]string{"tcpconnect", "-u", "-1"}, "--uid"},
		{[]string{"tcpconnect", "-p", "0"}, "--pid"},
		{[]string{"tcpconnect", "-p", "4194305"}, "--pid"},
		{[]string{"tcpreset", "-s", "0"}, "--summary"},
		{[]string{"tcpreset", "-s", "9223372037"}, "--summary"},
	} {
		wantUsage(t, tc.args, runOwl(t, nil, nil, owlBin, tc.args...), tc.want)
	}
}

// The largest values in range are accepted (and then run: -d 1 ends it).
func TestNumericFlagsLimitsAccepted(t *testing.T) {
	e2e.Require(t)
	for _, args := range [][]string{
		{"tcpconnect", "-u", "4294967294", "-d", "1"},
		{"tcpreset", "-s", "9223372036", "-d", "1"},
		{"eperm", "-i", "9223372036", "-d", "1"},
	} {
		if r := runOwl(t, nil, nil, owlBin, args...); r.code != 0 {
			t.Errorf("owl %v: status %d, stderr %q; want 0", args, r.code, r.stderr)
		}
	}
}

// nobodyBin copies the binary under test where uid 65534 can run it: the
// one built for this run sits in a directory only root can enter.
func nobodyBin(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "owl-nobody")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(owlBin)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	bin := filepath.Join(dir, "owl")
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// As an ordinary user owl says in one line what it needs, with status 2,
// instead of blaming the kernel (and RLIMIT_MEMLOCK) for every hook; `owl
// tools` too, instead of listing every tool as unavailable with status 0.
// Help and version need no privileges.
func TestUnprivilegedSaysWhatItNeeds(t *testing.T) {
	bin, cred := owlBin, (*syscall.Credential)(nil)
	if os.Geteuid() == 0 {
		bin, cred = nobodyBin(t), &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	for _, args := range [][]string{
		{"tcpconnect"}, {"tcpreset", "-s", "5"}, {"eperm", "-e"}, {"capable", "-p", "1"}, {"tools"}, {"tools", "-v"},
	} {
		r := runOwl(t, nil, cred, bin, args...)
		wantUsage(t, args, r, "missing capabilities CAP_BPF, CAP_PERFMON")
		if strings.Contains(r.stderr, "MEMLOCK") || strings.Contains(r.stderr, "hook") || r.stdout != "" {
			t.Errorf("owl %v as nobody: stdout %q, stderr %q", args, r.stdout, r.stderr)
		}
	}
	for _, args := range [][]string{{"--help"}, {"--version"}, {"tcpconnect", "--help"}} {
		if r := runOwl(t, nil, cred, bin, args...); r.code != 0 || r.stdout == "" {
			t.Errorf("owl %v as nobody: status %d, stderr %q; want its text and status 0", args, r.code, r.stderr)
		}
	}
}

// An ordinary user with CAP_BPF and CAP_PERFMON may trace once it can read
// tracefs (mode 0700 by default): without CAP_DAC_READ_SEARCH owl says
// that in one line; with it, the privilege check passes and, on kernels
// that give perf events to CAP_PERFMON, the tools run.
func TestCapabilitiesSuffice(t *testing.T) {
	e2e.Require(t)
	bin := nobodyBin(t)
	run := func(caps []uintptr, args ...string) result {
		t.Helper()
		// owl tools loads every tool: 12 s at times in the 6.12 qemu guest.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, AmbientCaps: caps}
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		r := result{stdout: stdout.String(), stderr: stderr.String()}
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("owl %v: %v", args, err)
		}
		return r
	}
	bpf := []uintptr{unix.CAP_BPF, unix.CAP_PERFMON}
	if st, err := os.Stat("/sys/kernel/tracing"); err == nil && st.Mode().Perm()&0o005 == 0 {
		wantUsage(t, []string{"tools"}, run(bpf, "tools"), "CAP_DAC_READ_SEARCH")
	}
	// CAP_SYS_PTRACE and CAP_SYSLOG: profile and pamsnoop read other
	// processes and kallsyms by default (README's capability table).
	all := append(bpf, unix.CAP_DAC_READ_SEARCH, unix.CAP_SYS_PTRACE, unix.CAP_SYSLOG)
	r := run(all, "tools")
	if r.code != 0 || strings.Contains(r.stderr, "missing capabilit") {
		t.Errorf("owl tools with CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYSLOG: status %d, stderr %q", r.code, r.stderr)
	}
	// Debian's and Ubuntu's kernels refuse perf events (which attach
	// tracepoints and kprobes) to all but CAP_SYS_ADMIN when
	// perf_event_paranoid is above 2; mainline takes CAP_PERFMON.
	b, _ := os.ReadFile("/proc/sys/kernel/perf_event_paranoid")
	if paranoid, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || paranoid > 2 {
		t.Logf("perf_event_paranoid %q: not checking that every tool runs with capabilities alone", b)
		return
	}
	// Tools this kernel cannot run at all (modsnoop without modules,
	// seccount without kprobes) are unavailable to root too: only the
	// others must be available with capabilities alone.
	asRoot := runOwl(t, nil, nil, bin, "tools")
	if got, want := unavailable(r.stdout), unavailable(asRoot.stdout); got != want {
		t.Errorf("owl tools with CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYSLOG: unavailable %q, as root %q:\n%s", got, want, r.stdout)
	}
	if r := run(all, "tcpconnect", "-d", "1"); r.code != 0 || !strings.HasPrefix(r.stderr, "Tracing ") {
		t.Errorf("owl tcpconnect -d 1 with CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH: status %d, stderr %q", r.code, r.stderr)
	}
}

// unavailable lists the tools `owl tools` says are unavailable.
func unavailable(tools string) string {
	var names []string
	for _, l := range strings.Split(tools, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.Contains(l, "unavailable") {
			names = append(names, f[0])
		}
	}
	return strings.Join(names, " ")
}

// OWL_HOOKS with a name that is no hook kind is bad input, as --hook is;
// a real kind the tool lacks is still ignored (it forces that kind in the
// tools that have it).
func TestHookKindsChecked(t *testing.T) {
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"OWL_HOOKS=bogus", []string{"tcpconnect", "-d", "1"}, "OWL_HOOKS"},
		{"OWL_HOOKS=tracepoint,bogus", []string{"tcpconnect", "-d", "1"}, "OWL_HOOKS"},
		{"OWL_HOOKS=bogus", []string{"tools"}, "OWL_HOOKS"},
		{"", []string{"tcpconnect", "--hook", "bogus"}, "--hook"},
		{"", []string{"tools", "--hook", "bogus"}, "--hook"},
	} {
		wantUsage(t, tc.args, runOwl(t, []string{tc.env}, nil, owlBin, tc.args...), tc.want)
	}
	e2e.Require(t)
	// tcpreset has no uprobe: OWL_HOOKS=uprobe leaves it its own hooks.
	if r := runOwl(t, []string{"OWL_HOOKS=uprobe"}, nil, owlBin, "tcpreset", "-d", "1"); r.code != 0 {
		t.Errorf("OWL_HOOKS=uprobe owl tcpreset -d 1: status %d, stderr %q; want 0", r.code, r.stderr)
	}
}

// owl --version says what a bug report needs: version, commit, its date
// and whether the tree was modified, and the Go toolchain, as the build
// information of the binary records them.
func TestVersion(t *testing.T) {
	check := func(bin string) map[string]string {
		t.Helper()
		r := runOwl(t, nil, nil, bin, "--version")
		if r.code != 0 {
			t.Fatalf("owl --version: status %d, stderr %q", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		got := map[string]string{"version": strings.TrimPrefix(lines[0], "owl ")}
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(l, ": ")
			got[k] = v
		}
		bi, err := buildinfo.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"version": "devel", "commit": "unknown", "date": "unknown", "go": bi.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH}
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			want["version"] = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				want["commit"] = s.Value + want["commit"][len("unknown"):]
			case "vcs.time":
				want["date"] = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					want["modified"] = " (modified)"
				}
			}
		}
		want["commit"] += want["modified"]
		delete(want, "modified")
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "owl ") || len(got) != len(want) {
			t.Fatalf("owl --version:\n%s\nwant owl VERSION, then commit:, date: and go: lines", r.stdout)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("owl --version: %s %q, want %q", k, got[k], v)
			}
		}
		return got
	}
	check(owlBin)

	// Built from a git checkout with VCS stamping (this machine's GOFLAGS
	// may turn it off; make build turns it on): the commit and its time.
	head, err := exec.Command("git", "show", "-s", "--format=%H %ct", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	// go build looks for a .git directory: a worktree's .git is a file,
	// and Go stamps nothing there.
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !fi.IsDir() {
		t.Skip("a git worktree (.git is a file): go build stamps no commit there")
	}
	got := check(buildOwl(t, "-buildvcs=true"))
	commit, ct, _ := strings.Cut(strings.TrimSpace(string(head)), " ")
	if c, _, _ := strings.Cut(got["commit"], " "); c != commit {
		t.Errorf("commit %q, want %s", got["commit"], commit)
	}
	date, err := time.Parse(time.RFC3339, got["date"])
	if err != nil || strconv.FormatInt(date.Unix(), 10) != ct {
		t.Errorf("date %q (%v), want the commit's time %s", got["date"], err, ct)
	}
}

// buildOwl builds owl with extra go build flags, skipping without a go
// command (in the qemu guest, which runs a prebuilt binary).
func buildOwl(t *testing.T, flags ...string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build owl %v: %v", flags, err)
	}
	bin := filepath.Join(t.TempDir(), "owl")
	build := exec.Command(gobin, append(append([]string{"build"}, flags...), "-o", bin, ".")...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", flags, err, out)
	}
	return bin
}

// owl --help lists the tools under the title of their group (security,
// languages, fleet), each tool once.
func TestHelpGroupsTools(t *testing.T) {
	r := runOwl(t, nil, nil, owlBin, "--help")
	if r.code != 0 {
		t.Fatalf("owl --help: status %d, stderr %q", r.code, r.stderr)
	}
	section := map[string]string{} // tool name → the title it is listed under
	title := ""
	for _, l := range strings.Split(r.stdout, "\n") {
		switch {
		case strings.HasSuffix(l, ":") && !strings.HasPrefix(l, " "):
			title = l
		case strings.HasPrefix(l, "  ") && title != "" && title != "Usage:" && title != "Flags:":
			name := strings.Fields(l)[0]
			if _, dup := section[name]; dup {
				t.Errorf("%s listed twice", name)
			}
			section[name] = title
		}
	}
	for _, tl := range tools.All() {
		info := tl.Info()
		want, ok := groupTitles[info.Group]
		if !ok {
			t.Errorf("%s: group %q has no title in groupTitles", info.Name, info.Group)
			continue
		}
		if section[info.Name] != want {
			t.Errorf("%s is listed under %q, want %q:\n%s", info.Name, section[info.Name], want, r.stdout)
		}
	}
}

// `owl man DIR` (make man, a build with -tags man) writes a page for owl
// and one per tool, with the tool's examples.
func TestManPages(t *testing.T) {
	bin := buildOwl(t, "-tags", "man")
	if r := runOwl(t, nil, nil, owlBin, "man", t.TempDir()); r.code != 2 {
		t.Errorf("owl man without -tags man: status %d, want 2 (no such command)", r.code)
	}
	dir := t.TempDir()
	if r := runOwl(t, nil, nil, bin, "man", dir); r.code != 0 {
		t.Fatalf("owl man %s: status %d, stderr %q", dir, r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "owl.8")); err != nil {
		t.Error(err)
	}
	for _, tl := range tools.All() {
		name := tl.Info().Name
		b, err := os.ReadFile(filepath.Join(dir, "owl-"+name+".8"))
		if err != nil {
			t.Error(err)
			continue
		}
		page := unroff(string(b))
		example := tl.Command().Example
		if !strings.Contains(page, ".SH EXAMPLE") || example == "" {
			t.Errorf("%s: no EXAMPLE section (example %q)", name, example)
		}
		for _, l := range strings.Split(example, "\n") {
			if !strings.Contains(page, strings.TrimSpace(l)) {
				t.Errorf("%s: the page lacks the example %q:\n%s", name, l, page)
			}
		}
		if !strings.Contains(page, tl.Info().Summary) {
			t.Errorf("%s: the page lacks the summary %q", name, tl.Info().Summary)
		}
	}
}

// unroff undoes the escapes go-md2man writes in code blocks.
func unroff(s string) string {
	return strings.NewReplacer(`\-`, "-", `\\`, `\`, `\&`, "", `\(aq`, "'", `\(dq`, `"`, `\fB`, "", `\fR`, "", `\fI`, "").Replace(s)
}
