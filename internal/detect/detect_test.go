package detect

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/tools/capable"
	"github.com/owlbpf/owl/internal/tools/modsnoop"
	"github.com/owlbpf/owl/internal/tools/pamsnoop"
	"github.com/owlbpf/owl/internal/tools/tcpaccept"
	"github.com/owlbpf/owl/internal/tools/tcpreset"
)

var t0 = time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)

// rig is an engine with a synthetic clock and the findings it sent.
type rig struct {
	*Engine
	got []Finding
}

func newRig(t *testing.T, cfg Config, exes map[uint32]string) *rig {
	t.Helper()
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	r := &rig{}
	r.Engine = New(cfg, Options{Emit: func(f Finding) { r.got = append(r.got, f) },
		Exe: func(pid uint32, _ string) string { return exes[pid] }})
	return r
}

// uids counts the distinct findings of rule, and returns the last state
// of the last one.
func (r *rig) uids(rule Rule) (int, Finding) {
	seen := map[string]bool{}
	var last Finding
	for _, f := range r.got {
		if f.Rule == rule {
			seen[f.UID] = true
			last = f
		}
	}
	return len(seen), last
}

func task(pid, uid uint32, comm string, at time.Time) event.Task {
	tk := event.Task{PID: pid, TID: pid, UID: uid, Time: event.Time{Time: at}}
	copy(tk.Comm[:], comm)
	return tk
}

func reset(from string, port uint16, at time.Time) *tcpreset.Event {
	return &tcpreset.Event{Time: event.Time{Time: at}, Laddr: netip.MustParseAddr("10.0.0.1"), Lport: port,
		Raddr: netip.MustParseAddr(from), Rport: 40000, Family: 4, Reason: "NO_SOCKET"}
}

func TestPortScanOneFindingUpdated(t *testing.T) {
	cfg := Defaults()
	cfg.UpdateEvery = 2 * time.Second
	r := newRig(t, cfg, nil)
	// 100 ports in 5 s: closed ones answered with resets, open ones accepted.
	for i := range 100 {
		at := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		if i%10 == 0 {
			r.Observe("tcpaccept", &tcpaccept.Event{Task: task(1, 0, "srv", at), Family: 4,
				Raddr: netip.MustParseAddr("10.9.9.2"), Rport: 5000, Laddr: netip.MustParseAddr("10.0.0.1"), Lport: uint16(1000 + i)})
		} else {
			r.Observe("tcpreset", reset("10.9.9.2", uint16(1000+i), at))
		}
		// The same port again is no new port.
		r.Observe("tcpreset", reset("10.9.9.2", uint16(1000+i), at))
	}
	r.Tick(t0.Add(10 * time.Second))
	r.Tick(t0.Add(2 * time.Minute))
	n, last := r.uids(RulePortScan)
	if n != 1 {
		t.Fatalf("%d port-scan findings, want 1: %v", n, r.got)
	}
	if r.got[0].Activity != Create || r.got[0].PortCount != 50 {
		t.Errorf("first state: %s with %d ports, want Create with 50", r.got[0].Activity, r.got[0].PortCount)
	}
	if last.Activity != Close || last.PortCount != 100 || last.Remote.Addr().String() != "10.9.9.2" {
		t.Errorf("last state: %s, %d ports from %s; want Close, 100, 10.9.9.2", last.Activity, last.PortCount, last.Remote)
	}
	if len(last.Ports) != portSample || last.Ports[0] != 1000 {
		t.Errorf("port sample %v", last.Ports)
	}
	if len(last.Evidence) != cfg.Evidence {
		t.Errorf("%d evidence events, want %d", len(last.Evidence), cfg.Evidence)
	}
	// Updates are rate-limited: 5 s of scan after the trip at 2 s intervals.
	if len(r.got) > 5 {
		t.Errorf("%d states sent, want at most 5: not updated at most every 2 s", len(r.got))
	}
	// A later scan from the same address is a new finding.
	for i := range 60 {
		r.Observe("tcpreset", reset("10.9.9.2", uint16(2000+i), t0.Add(3*time.Minute)))
	}
	if n, _ := r.uids(RulePortScan); n != 2 {
		t.Errorf("%d findings after a second scan, want 2", n)
	}
}

func TestPortScanBenign(t *testing.T) {
	r := newRig(t, Defaults(), nil)
	// 1000 connections to one port; a slow prober under the rate; resets
	// of established connections.
	for i := range 1000 {
		r.Observe("tcpaccept", &tcpaccept.Event{Task: task(1, 0, "srv", t0), Family: 4,
			Raddr: netip.MustParseAddr("10.9.9.3"), Rport: uint16(30000 + i), Lport: 80})
	}
	for i := range 60 {
		r.Observe("tcpreset", reset("10.9.9.4", uint16(i+1), t0.Add(time.Duration(i)*2*time.Second)))
		rst := reset("10.9.9.5", uint16(i+1), t0)
		rst.State, rst.Reason = 1, "NOT_SPECIFIED"
		r.Observe("tcpreset", rst)
	}
	r.Tick(t0.Add(time.Hour))
	if len(r.got) != 0 {
		t.Fatalf("findings from benign traffic: %v", r.got)
	}
}

func pam(rhost, user, result string, at time.Time) *pamsnoop.Event {
	return &pamsnoop.Event{Task: task(77, 0, "sshd", at), Service: "sshd", User: pamsnoop.Text(user),
		RHost: pamsnoop.Text(rhost), Event: "pam_authenticate", Result: result}
}

func TestBruteForce(t *testing.T) {
	cfg := Defaults()
	cfg.BruteForce.Services = map[string]int{"sshd": 20}
	r := newRig(t, cfg, nil)
	// 80 failures, 4 a second, then the right password.
	at := t0
	for range 80 {
		r.Observe("pamsnoop", pam("10.9.9.2", "owltest", "PAM_AUTH_ERR", at))
		at = at.Add(250 * time.Millisecond)
	}
	r.Observe("pamsnoop", pam("10.9.9.2", "owltest", "PAM_SUCCESS", at))
	r.Tick(at.Add(time.Hour))
	n, last := r.uids(RuleBruteForce)
	if n != 1 || last.Count != 80 || last.User != "owltest" || last.Remote.Addr().String() != "10.9.9.2" {
		t.Fatalf("brute force: %d findings, last %+v", n, last)
	}
	if r.got[0].Count != 20 {
		t.Errorf("tripped at %d failures, want 20 (sshd's threshold)", r.got[0].Count)
	}
	n, succ := r.uids(RuleSuccessAfter)
	if n != 1 || succ.Count != 80 || !strings.Contains(succ.Message, "after 80 failures") {
		t.Errorf("success after failures: %d findings, last %+v", n, succ)
	}
	if ev := succ.Evidence[len(succ.Evidence)-1].Event; !strings.Contains(string(ev), "PAM_SUCCESS") {
		t.Errorf("the success is not the last evidence: %s", ev)
	}
}

func TestBruteForceBenign(t *testing.T) {
	r := newRig(t, Defaults(), nil)
	at := t0
	// Typos: 3 failures then a success, 30 times; failures of other
	// users and hosts never reach 60 in 30 s for one key.
	for i := range 30 {
		for range 3 {
			r.Observe("pamsnoop", pam("10.9.9.2", "alice", "PAM_AUTH_ERR", at))
			at = at.Add(time.Second)
		}
		r.Observe("pamsnoop", pam("10.9.9.2", "alice", "PAM_SUCCESS", at))
		r.Observe("pamsnoop", pam("10.9.9.3", strings.Repeat("u", i+1), "PAM_AUTH_ERR", at))
	}
	// 59 failures in 30 s: just under.
	for range 59 {
		r.Observe("pamsnoop", pam("10.9.9.4", "bob", "PAM_AUTH_ERR", at))
		at = at.Add(500 * time.Millisecond)
	}
	r.Tick(at.Add(time.Hour))
	if len(r.got) != 0 {
		t.Fatalf("findings: %v", r.got)
	}
}

func TestPrivEsc(t *testing.T) {
	exes := map[uint32]string{10: "/tmp/x/helper", 11: "/usr/bin/sudo", 12: "/usr/bin/python3"}
	r := newRig(t, Defaults(), exes)
	r.priv.setuid(setID{Task: task(10, 1000, "helper", t0), Syscall: "setuid", ToRoot: true}, source{"setuids", "e1"})
	r.priv.setuid(setID{Task: task(10, 1000, "helper", t0), Syscall: "setresuid", ToRoot: true}, source{"setuids", "e2"})
	r.priv.setuid(setID{Task: task(11, 1000, "sudo", t0), Syscall: "setresuid", ToRoot: true}, source{"setuids", "sudo"})
	r.priv.setuid(setID{Task: task(12, 1000, "python3", t0), Syscall: "setuid", ToRoot: true, Ret: -1}, source{"setuids", "eperm"})
	r.priv.setuid(setID{Task: task(12, 0, "python3", t0), Syscall: "setuid", ToRoot: true}, source{"setuids", "root"})
	r.priv.setuid(setID{Task: task(12, 1000, "python3", t0), Syscall: "setuid"}, source{"setuids", "to 1000"})
	r.Tick(t0.Add(100 * time.Millisecond))
	if len(r.got) != 0 {
		t.Fatalf("judged before the exec events could come: %v", r.got)
	}
	r.Tick(t0.Add(time.Second))
	r.Tick(t0.Add(time.Hour))
	n, last := r.uids(RulePrivEsc)
	if n != 1 || last.Actor.Exe != "/tmp/x/helper" || last.Actor.UID != 1000 || last.Count != 2 {
		t.Fatalf("privilege escalation: %d findings, last %+v", n, last)
	}
	// Capability denials: a burst, and a trickle.
	for i := range 600 {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		r.Observe("capable", &capable.Event{Task: task(20, 1000, "probe", at), Cap: 21, CapName: "CAP_SYS_ADMIN", Verdict: "deny"})
		r.Observe("capable", &capable.Event{Task: task(21, 1000, "ok", at.Add(time.Duration(i)*time.Second)), Cap: 21, CapName: "CAP_SYS_ADMIN", Verdict: "deny"})
		r.Observe("capable", &capable.Event{Task: task(22, 1000, "net", at), Cap: 12, CapName: "CAP_NET_ADMIN", Verdict: "deny"})
	}
	r.Tick(t0.Add(2 * time.Hour))
	n, last = r.uids(RuleCapDenials)
	if n != 1 || last.Actor.PID != 20 || last.Count != 600 || last.Capability != "CAP_SYS_ADMIN" {
		t.Fatalf("capability denials: %d findings, last %+v", n, last)
	}
}

func TestModuleLoad(t *testing.T) {
	cfg := Defaults()
	cfg.ModuleLoad.Allow = []string{"nls_*"}
	r := newRig(t, cfg, nil)
	r.Observe("modsnoop", &modsnoop.Event{Task: task(5, 0, "insmod", t0), Module: "nls_utf8"})
	r.Observe("modsnoop", &modsnoop.Event{Task: task(5, 0, "insmod", t0), Module: "rootkit"})
	r.Observe("modsnoop", &modsnoop.Event{Task: task(6, 0, "insmod", t0)})
	if n, _ := r.uids(RuleModuleLoad); n != 2 {
		t.Fatalf("%d module findings, want 2 (rootkit, init_module): %v", n, r.got)
	}
}

func TestReverseShell(t *testing.T) {
	r := newRig(t, Defaults(), nil)
	sock := StdioSocket{FD: 0, Protocol: "tcp", Laddr: netip.MustParseAddr("10.0.0.1"), Lport: 40000,
		Raddr: netip.MustParseAddr("10.9.9.2"), Rport: 4444}
	unix := StdioSocket{FD: 1, Protocol: ""}
	r.shells.exec(Exec{Task: task(30, 1000, "bash", t0), Filename: "/usr/bin/bash", Stdio: []StdioSocket{sock, sock}}, source{"execsnoop", 1})
	r.shells.exec(Exec{Task: task(31, 1000, "cat", t0), Filename: "/usr/bin/cat", Stdio: []StdioSocket{sock}}, source{"execsnoop", 2})
	r.shells.exec(Exec{Task: task(32, 1000, "bash", t0), Filename: "/usr/bin/bash"}, source{"execsnoop", 3})
	r.shells.exec(Exec{Task: task(33, 1000, "python3.11", t0), Filename: "/usr/bin/python3.11", Stdio: []StdioSocket{unix}}, source{"execsnoop", 4})
	n, last := r.uids(RuleReverseShell)
	if n != 1 || last.Remote.String() != "10.9.9.2:4444" || last.Actor.PID != 30 {
		t.Fatalf("reverse shell: %d findings, last %+v", n, last)
	}
}

// The OCSF form has the class, rule, severity, evidence, actor and remote.
func TestOCSF(t *testing.T) {
	r := newRig(t, Defaults(), map[uint32]string{77: "/usr/sbin/sshd"})
	for i := range 60 {
		r.Observe("pamsnoop", pam("10.9.9.2", "owltest", "PAM_AUTH_ERR", t0.Add(time.Duration(i)*100*time.Millisecond)))
	}
	if len(r.got) != 1 {
		t.Fatalf("%d findings", len(r.got))
	}
	js, err := r.got[0].OCSF(Product{Name: "owl", Vendor: "owl", Version: "test"}, "h1")
	if err != nil {
		t.Fatal(err)
	}
	var o struct {
		ClassUID    int `json:"class_uid"`
		TypeUID     int `json:"type_uid"`
		SeverityID  int `json:"severity_id"`
		Metadata    struct{ Version string }
		FindingInfo struct {
			UID      string
			Analytic struct{ UID string }
		} `json:"finding_info"`
		Actor struct {
			Process struct {
				PID  int
				File struct{ Path string }
			}
		}
		Evidences []struct {
			Data        struct{ Tool string }
			SrcEndpoint struct{ IP string } `json:"src_endpoint"`
		}
		Unmapped struct{ Remote, User string }
	}
	if err := json.Unmarshal(js, &o); err != nil {
		t.Fatal(err)
	}
	if o.ClassUID != 2004 || o.TypeUID != 200401 || o.SeverityID != 3 || o.Metadata.Version != "1.3.0" ||
		o.FindingInfo.Analytic.UID != "brute-force" || o.FindingInfo.UID != r.got[0].UID ||
		o.Actor.Process.PID != 77 || o.Actor.Process.File.Path != "/usr/sbin/sshd" ||
		len(o.Evidences) != 10 || o.Evidences[0].Data.Tool != "pamsnoop" || o.Evidences[0].SrcEndpoint.IP != "10.9.9.2" ||
		o.Unmapped.Remote != "10.9.9.2" || o.Unmapped.User != "owltest" {
		t.Errorf("OCSF: %s", js)
	}
	if line := r.got[0].Text(); !strings.Contains(line, "brute-force Create Medium") && !strings.Contains(line, "brute-force") {
		t.Errorf("text: %q", line)
	}
}

// Groups are bounded: past MaxKeys new ones are counted, not kept.
func TestMaxKeys(t *testing.T) {
	cfg := Defaults()
	cfg.MaxKeys = 10
	r := newRig(t, cfg, nil)
	for i := range 20 {
		r.Observe("tcpreset", reset(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}).String(), 80, t0))
	}
	if s := r.Stats(); s.Dropped != 10 || s.Events != 20 {
		t.Errorf("stats %+v, want 10 dropped of 20", s)
	}
	r.Tick(t0.Add(time.Hour))
	r.Observe("tcpreset", reset("10.2.0.1", 80, t0.Add(time.Hour)))
	if s := r.Stats(); s.Dropped != 10 {
		t.Errorf("quiet groups not forgotten: %+v", s)
	}
}

func TestConfig(t *testing.T) {
	c := Defaults()
	if err := c.Parse([]byte("port-scan: {ports: 10, window: 5s}\nbrute-force: {services: {sshd: 5}}\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	if c.PortScan.Ports != 10 || c.PortScan.CloseAfter != 5*time.Second || c.BruteForce.Failures != 60 || c.BruteForce.Services["sshd"] != 5 {
		t.Errorf("parsed %+v", c)
	}
	for _, bad := range []string{"port-scan: {portz: 1}", "port-scan: {ignore: [nonsense]}", "brute-force: {window: -1s}"} {
		c := Defaults()
		err := c.Parse([]byte(bad))
		if err == nil {
			err = c.Check()
		}
		if err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// The executable is the image the pid ran when its name was the event's
// comm: sudo runs its command in its own pid.
func TestExeByComm(t *testing.T) {
	r := newRig(t, Defaults(), nil)
	r.Engine.exe = r.procExe
	r.exes.put(1<<30, 1, "/usr/bin/sudo")
	r.exes.put(1<<30, 1, "/usr/bin/true")
	if got := r.procExe(1<<30, "sudo"); got != "/usr/bin/sudo" {
		t.Errorf("got %q", got)
	}
	// A child forked by sudo that exec'd its command: its parent's image.
	r.exes.put(1<<30+1, 1<<30, "/usr/bin/id")
	if got := r.procExe(1<<30+1, "sudo"); got != "/usr/bin/sudo" {
		t.Errorf("child: got %q", got)
	}
	if got := r.procExe(1<<30, "bash"); got != "" {
		t.Errorf("got %q for a name of no image", got)
	}
	if !named("/usr/bin/a-very-long-program-name", "a-very-long-pro") {
		t.Error("a 15-byte comm names a longer file")
	}
}
