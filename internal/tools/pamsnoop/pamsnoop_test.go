package pamsnoop

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// waitFor waits for the event match accepts.
func waitFor(t *testing.T, ch <-chan Event, what string, match func(Event) bool) Event {
	t.Helper()
	return e2e.Wait(t, ch, 10*time.Second, what, match)
}

// su -s /bin/true nobody, run as root: pam_start(su, nobody), then
// pam_authenticate (pam_rootok), pam_acct_mgmt and the session, each
// showing the handle's service and user.
func TestSu(t *testing.T) {
	e2e.Require(t)
	e2e.Need(t, "su")
	src, err := Open(Config{}, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, src)
	su := exec.Command("su", "-s", "/bin/true", "nobody")
	if out, err := su.CombinedOutput(); err != nil {
		t.Fatalf("su: %v: %s", err, out)
	}
	pid := uint32(su.Process.Pid)
	var handle uint64
	for _, ev := range []string{"pam_start", "pam_authenticate", "pam_acct_mgmt", "pam_open_session", "pam_close_session"} {
		e := waitFor(t, events, "su's "+ev, func(e Event) bool { return e.PID == pid && e.Event == ev })
		if e.Service != "su" || e.User != "nobody" || e.Result != "PAM_SUCCESS" || e.Comm.String() != "su" || e.UID != 0 {
			t.Errorf("%s: service %q user %q result %s comm %q uid %d; want su, nobody, PAM_SUCCESS, su, 0",
				ev, e.Service, e.User, e.Result, e.Comm, e.UID)
		}
		if handle == 0 {
			handle = e.Handle
		}
		if e.Handle == 0 || e.Handle != handle {
			t.Errorf("%s: handle %#x, want pam_start's %#x", ev, e.Handle, handle)
		}
		row := string(table.AppendRow(nil, &e))
		if f := strings.Fields(row); len(f) != 8 || f[3] != "su" || f[4] != "nobody" || f[5] != "-" || f[6] != ev || f[7] != "PAM_SUCCESS" {
			t.Errorf("row %q", row)
		}
	}
}

// A throwaway user with a known password; pamtester's login service
// (pam_unix): a wrong password is one pam_authenticate with PAM_AUTH_ERR,
// the right one PAM_SUCCESS. The remote host and tty given as items
// (pam_set_item) show on the handle's events.
func TestPassword(t *testing.T) {
	e2e.Require(t)
	pamtester := e2e.Need(t, "pamtester")
	user, password := newUser(t)
	src, err := Open(Config{}, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, src)
	try := func(pw string) uint32 {
		cmd := exec.Command(pamtester, "-I", "rhost=192.0.2.7", "-I", "tty=pts/77", "login", user, "authenticate")
		cmd.Stdin = strings.NewReader(pw + "\n")
		out, err := cmd.CombinedOutput()
		if ok := err == nil; ok != (pw == password) {
			t.Fatalf("pamtester with password %q: %v: %s", pw, err, out)
		}
		return uint32(cmd.Process.Pid)
	}
	for _, tc := range []struct{ pw, result string }{{"wrong", "PAM_AUTH_ERR"}, {password, "PAM_SUCCESS"}} {
		pid := try(tc.pw)
		start := waitFor(t, events, "pam_start", func(e Event) bool { return e.PID == pid && e.Event == "pam_start" })
		if start.Service != "login" || start.User != Text(user) || start.Result != "PAM_SUCCESS" {
			t.Errorf("pam_start: %+v", start)
		}
		e := waitFor(t, events, "pam_authenticate", func(e Event) bool { return e.PID == pid && e.Event == "pam_authenticate" })
		if e.Result != tc.result || e.Service != "login" || e.User != Text(user) || e.RHost != "192.0.2.7" || e.TTY != "pts/77" {
			t.Errorf("password %q: %+v, want %s with service, user, rhost and tty", tc.pw, e, tc.result)
		}
		var j map[string]any
		b, err := json.Marshal(&e)
		if err != nil || json.Unmarshal(b, &j) != nil {
			t.Fatalf("JSON %s: %v", b, err)
		}
		for k, want := range map[string]any{"service": "login", "user": user, "rhost": "192.0.2.7", "tty": "pts/77",
			"event": "pam_authenticate", "result": tc.result, "comm": "pamtester", "pid": float64(pid), "uid": float64(0)} {
			if j[k] != want {
				t.Errorf("JSON %s: %v, want %v", k, j[k], want)
			}
		}
		if _, ok := j["time"].(string); !ok {
			t.Errorf("JSON time %v", j["time"])
		}
	}
	// One line per attempt: no second pam_authenticate of either run.
	deadline := time.After(300 * time.Millisecond)
	for {
		select {
		case e := <-events:
			if e.Event == "pam_authenticate" && e.User == Text(user) {
				t.Errorf("a second pam_authenticate: %+v", e)
			}
		case <-deadline:
			return
		}
	}
}

// newUser makes a throwaway user with a known password, removed when the
// test ends.
func newUser(t *testing.T) (user, password string) {
	t.Helper()
	e2e.Need(t, "useradd")
	user = fmt.Sprintf("owlpam%d", os.Getpid())
	password = "Owl-test-pw-7"
	if out, err := exec.Command("useradd", "-M", "-s", "/usr/sbin/nologin", user).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", user).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", user, err, out)
		}
	})
	chpasswd := exec.Command("chpasswd")
	chpasswd.Stdin = strings.NewReader(user + ":" + password + "\n")
	if out, err := chpasswd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v: %s", err, out)
	}
	return user, password
}

// A handle started before owl (-p of a pamtester waiting for its
// password): pam_start and the pam_authenticate in progress are not
// seen, but the items the modules read later (pam_get_item) fill the
// handle's service, user and remote host in.
func TestHandleStartedBefore(t *testing.T) {
	e2e.Require(t)
	pamtester := e2e.Need(t, "pamtester")
	user, password := newUser(t)
	cmd := exec.Command(pamtester, "-I", "rhost=198.51.100.3", "login", user, "authenticate", "acct_mgmt", "open_session", "close_session")
	stdin, _ := cmd.StdinPipe()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // the test failed before Wait
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	out := bufio.NewReader(r)
	if err := readUntil(out, "Password:"); err != nil {
		t.Fatalf("pamtester never asked for the password: %v", err)
	}
	opts := e2e.Options()
	opts.Task.PID = cmd.Process.Pid
	src, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, src)
	fmt.Fprintln(stdin, password)
	go io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pamtester: %v", err)
	}
	acct := waitFor(t, events, "pam_acct_mgmt", func(e Event) bool { return e.Event == "pam_acct_mgmt" })
	if acct.Result != "PAM_SUCCESS" || acct.Handle == 0 {
		t.Errorf("pam_acct_mgmt: %+v", acct)
	}
	e := waitFor(t, events, "pam_open_session", func(e Event) bool { return e.Event == "pam_open_session" })
	if e.Service != "login" || e.User != Text(user) || e.RHost != "198.51.100.3" || e.Result != "PAM_SUCCESS" || e.Handle != acct.Handle {
		t.Errorf("pam_open_session: %+v, want login, %s, 198.51.100.3, PAM_SUCCESS on handle %#x", e, user, acct.Handle)
	}
	waitFor(t, events, "pam_close_session", func(e Event) bool { return e.Event == "pam_close_session" })
}

// readUntil reads r until it has read s.
func readUntil(r *bufio.Reader, s string) error {
	var seen []byte
	for !strings.HasSuffix(string(seen), s) {
		b, err := r.ReadByte()
		if err != nil {
			return err
		}
		seen = append(seen, b)
	}
	return nil
}

// namespace starts a shell in a new mount namespace whose libpam is a
// copy of the host's (another inode), bind-mounted over it, and runs
// script there once told to. It returns the shell's pid, its mount
// namespace, the function that starts the script, and a channel closed
// when the shell exits, after which *status is its exit status.
func namespace(t *testing.T, script string) (pid int, ns uint32, run func(), exited <-chan struct{}, status *error) {
	t.Helper()
	e2e.Need(t, "unshare")
	host, err := findLib("", 0)
	if err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(host.Path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "libpam.so.0")
	if err := os.WriteFile(cp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sh := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c",
		`mount --bind "$1" "$2" && echo ready && read x && `+script, "sh", cp, real)
	stdin, _ := sh.StdinPipe()
	stdout, _ := sh.StdoutPipe()
	sh.Stderr = os.Stderr
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	status = new(error)
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	go func() {
		io.Copy(io.Discard, r)
		*status = sh.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		stdin.Close()
		sh.Process.Kill()
		<-done
	})
	if err != nil || line != "ready\n" {
		t.Fatalf("namespace: %q, %v", line, err)
	}
	if ns, err = mntns(fmt.Sprint(sh.Process.Pid)); err != nil {
		t.Fatal(err)
	}
	return sh.Process.Pid, ns, func() { fmt.Fprintln(stdin) }, done, status
}

// A program in another mount namespace runs its own libpam: owl finds it
// through /proc/PID/root and probes it too; the host's alone sees nothing
// of that namespace.
func TestOtherMountNamespace(t *testing.T) {
	e2e.Require(t)
	e2e.Need(t, "su")
	pid, ns, run, _, _ := namespace(t, "su -s /bin/true nobody")
	byPID, err := findLibs("", probe.TaskFilter{PID: pid, UID: -1})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("/proc/%d/root/", pid); len(byPID) != 1 || !strings.HasPrefix(byPID[0].Path, want) {
		t.Errorf("-p %d: libs %+v, want one under %s", pid, byPID, want)
	}
	opts := e2e.Options()
	opts.Task.MntNS = ns
	all, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, all)
	host, err := findLib("", 0)
	if err != nil {
		t.Fatal(err)
	}
	hostOnly, err := Open(Config{Lib: host.Path}, opts)
	if err != nil {
		t.Fatal(err)
	}
	hostEvents := e2e.Collect(t, hostOnly)
	run()
	e := waitFor(t, events, "su's pam_open_session in the namespace", func(e Event) bool { return e.Event == "pam_open_session" })
	if e.MntNS != ns || e.Service != "su" || e.User != "nobody" || e.Result != "PAM_SUCCESS" {
		t.Errorf("got %+v in mount namespace %d, want su nobody PAM_SUCCESS in %d", e, e.MntNS, ns)
	}
	waitFor(t, events, "su's pam_close_session", func(e Event) bool { return e.Event == "pam_close_session" })
	select {
	case e := <-hostEvents:
		t.Errorf("the host's libpam saw the namespace's su: %+v", e)
	case <-time.After(200 * time.Millisecond):
	}
}

// Every event made is delivered or counted: a one-page ring is overfilled
// by ten su runs (five events each) in a mount namespace of their own
// while nothing reads it, then drained: delivered + ring_full == made.
func TestTinyRingCountsEveryDrop(t *testing.T) {
	e2e.Require(t)
	e2e.Need(t, "su")
	const runs, each = 10, 5
	_, ns, run, exited, status := namespace(t, fmt.Sprintf(`i=0; while [ $i -lt %d ]; do su -s /bin/true nobody || exit 1; i=$((i+1)); done`, runs))
	opts := e2e.Options()
	opts.Task.MntNS = ns
	opts.RingBytes = 4096 // 14 events of 280 bytes
	src, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	run()
	select {
	case <-exited:
		if *status != nil {
			t.Fatalf("su runs: %v", *status)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("su runs did not end in 60 s")
	}
	var delivered uint64
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run drains what the ring holds and returns
	if err := src.Run(ctx, func(e *Event) {
		if e.MntNS == ns {
			delivered++
		}
	}); err != nil {
		t.Fatal(err)
	}
	st, err := src.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("made %d: delivered %d, ring_full %d", runs*each, delivered, st.RingFull)
	if st.RingFull == 0 || delivered+st.RingFull != runs*each || st.Lost() != st.RingFull {
		t.Errorf("made %d: delivered %d, counted %+v; want delivered + ring_full == made, ring_full > 0", runs*each, delivered, st)
	}
}

// Bad input is one line and exit status 2, nothing loaded.
func TestBadLib(t *testing.T) {
	// An ELF file with no pam_start: this test's own binary (the qemu
	// guest has no /bin/true).
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		lib  string
		want error
	}{
		{"/nonexistent/libpam.so.0", os.ErrNotExist},
		{self, ErrNoPAM},
	} {
		cmd := command()
		cmd.SetArgs([]string{"-l", tc.lib})
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		if cli.ExitCode(err) != 2 || strings.Contains(err.Error(), "\n") {
			t.Errorf("-l %s: %v (exit %d), want one line and exit 2", tc.lib, err, cli.ExitCode(err))
		}
		if _, err := Open(Config{Lib: tc.lib}, e2e.Options()); !errors.Is(err, tc.want) {
			t.Errorf("Open -l %s: %v, want %v", tc.lib, err, tc.want)
		}
	}
}

func TestResultNames(t *testing.T) {
	for ret, want := range map[int32]string{0: "PAM_SUCCESS", 7: "PAM_AUTH_ERR", 10: "PAM_USER_UNKNOWN",
		25: "PAM_IGNORE", 31: "PAM_INCOMPLETE", 32: "32", -1: "-1"} {
		if got := ResultName(ret); got != want {
			t.Errorf("ResultName(%d) = %s, want %s", ret, got, want)
		}
	}
}

// A user name is anyone's to choose (ssh root@host asks for any): text
// and JSON escape it, reversibly.
func TestHostileText(t *testing.T) {
	e := Event{Task: event.Task{Time: event.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.Local)}, PID: 42},
		Service: "sshd", User: "x\n12:00:00 1 fake", Event: "pam_authenticate", Result: "PAM_AUTH_ERR"}
	copy(e.Comm[:], "sshd")
	row := string(table.AppendRow(nil, &e))
	if want := "03:04:05 42     sshd             sshd         x\\x0a12:00:00 1 fake -                pam_authenticate PAM_AUTH_ERR\n"; row != want {
		t.Errorf("row\n%q, want\n%q", row, want)
	}
	b, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		User string
		Tty  *string
	}
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	back, err := event.Unescape(nil, []byte(j.User))
	if err != nil || string(back) != string(e.User) || j.Tty != nil {
		t.Errorf("JSON %s: user back %q (%v), tty %v", b, back, err, j.Tty)
	}
	if h := string(table.AppendHeader(nil)); h != "TIME     PID    COMM             SERVICE      USER         RHOST            EVENT            RESULT\n" {
		t.Errorf("header %q", h)
	}
}

// The registry's config (no libs) finds libpam only when the hook is
// tried: a missing one fails the Check as findLib does, a present one
// attaches.
func TestLazyTarget(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libpam.so.0")
	_, findErr := findLib(missing, 0)
	_, err := tool.Open(&spec, Config{Lib: missing}, tool.DefaultOptions())
	if want := "pamsnoop: no usable hook on this kernel: " + hookName + ": " + findErr.Error(); err == nil || err.Error() != want {
		t.Errorf("open: %v, want %s", err, want)
	}

	e2e.Require(t)
	if _, err := findLib("", 0); err != nil {
		t.Skipf("no libpam: %v", err)
	}
	src, err := tool.Open(&spec, Config{}, e2e.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Session.Hook.Name != hookName || len(src.Session.Tried) != 0 {
		t.Errorf("hook %q after %v, want %q first", src.Session.Hook.Name, src.Session.Tried, hookName)
	}
}
