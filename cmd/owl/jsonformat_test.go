package main

import (
	"encoding/json"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/owlbpf/owl/internal/e2e"
)

// JSON stack addresses are hex strings: kernel addresses are above 2^53,
// which jq 1.6 and JavaScript read as float64 and round.
func TestJSONStackAddressesAreHexStrings(t *testing.T) {
	e2e.Require(t)
	child := e2e.Child("privileged")
	stdin, _ := child.StdinPipe()
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	o := start(t, "capable", "-K", "-o", "json", "-p", strconv.Itoa(child.Process.Pid))
	stdin.Write([]byte("go\n"))
	if err := waitChild(t, child); err != nil {
		t.Fatalf("child: %v", err)
	}
	for {
		l := o.line(t)
		var e struct {
			CapName string           `json:"cap_name"`
			KStack  []map[string]any `json:"kstack"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		if e.CapName != "CAP_SYS_CHROOT" {
			continue
		}
		if len(e.KStack) == 0 {
			t.Fatalf("no kernel stack in %s", l)
		}
		for _, f := range e.KStack {
			addr, ok := f["addr"].(string)
			if !ok || !strings.HasPrefix(addr, "0xffff") {
				t.Errorf("frame %v: addr %#v, want a hex string of a kernel address", f, f["addr"])
				continue
			}
			if _, err := strconv.ParseUint(addr[2:], 16, 64); err != nil {
				t.Errorf("frame %v: %v", f, err)
			}
		}
		break
	}
	o.stop(t)
}

// JSON times are UTC with exactly nine fractional digits, so that lines
// sort as text: events (the task header) and counts alike.
func TestJSONTimeIsFixedWidthUTC(t *testing.T) {
	e2e.Require(t)
	fixed := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$`)
	self := strconv.Itoa(os.Getpid())
	o := start(t, "eperm", "-e", "-o", "json", "-p", self)
	eperms(50)
	for range 50 {
		var e struct{ Time string }
		if l := o.line(t); json.Unmarshal([]byte(l), &e) != nil || !fixed.MatchString(e.Time) {
			t.Fatalf("event %q: want the time in UTC with 9 fractional digits", l)
		}
	}
	o.stop(t)

	o = start(t, "eperm", "-o", "json", "-p", self, "-d", "1")
	eperms(1)
	out, _ := io.ReadAll(o.stdout)
	if err := o.cmd.Wait(); err != nil {
		t.Fatalf("owl eperm -d 1: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var c struct{ Time, Syscall string }
	if len(lines) != 2 || json.Unmarshal([]byte(lines[0]), &c) != nil || c.Syscall != "ptrace" || !fixed.MatchString(c.Time) {
		t.Errorf("counts %q: want one count line with the time in UTC with 9 fractional digits", out)
	}
}
