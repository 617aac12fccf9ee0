package eperm

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
)

func init() {
	actions["deny32"] = deny32
}

// ia32Failures are the failures deny32 makes, in order: native and ia32
// calls, two of them with the same number (170: sethostname natively,
// setresgid in the i386 table), which must be counted apart.
var ia32Failures = []struct {
	column string // SYSCALL column
	name   string // JSON syscall
	nr     int32
	ia32   bool
}{
	{"kill", "kill", 62, false},
	{"ia32:kill", "kill", 37, true},
	{"ia32:setuid32", "setuid32", 213, true},
	{"sethostname", "sethostname", 170, false},
	{"ia32:setresgid", "setresgid", 170, true},
}

// deny32: become nobody on this thread, wait for a line on stdin, then
// make the failures of ia32Failures, each refused with EPERM.
func deny32([]string) error {
	runtime.LockOSThread()
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESGID, 65534, 65534, 65534); errno != 0 {
		return errno
	}
	if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, 65534, 65534, 65534); errno != 0 {
		return errno
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	eperm := func(what string, r uintptr) error {
		if int32(r) != -int32(unix.EPERM) {
			return fmt.Errorf("%s: got %d, want -EPERM", what, int32(r))
		}
		return nil
	}
	if err := unix.Kill(1, 0); err != unix.EPERM {
		return fmt.Errorf("kill(1, 0): got %v, want EPERM", err)
	}
	if err := eperm("ia32 kill(1, 0)", e2e.Syscall32(37, 1, 0, 0)); err != nil {
		return err
	}
	if err := eperm("ia32 setuid32(0)", e2e.Syscall32(213, 0, 0, 0)); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte("owl")); err != unix.EPERM {
		return fmt.Errorf("sethostname: got %v, want EPERM", err)
	}
	return eperm("ia32 setresgid(0, 0, 0)", e2e.Syscall32(170, 0, 0, 0))
}

// Issue 8 item 1: ia32 syscalls were named from the native table (ia32
// kill as alarm, setuid32 as epoll_create) and counted together with the
// native syscall of the same number.
func TestIA32Named(t *testing.T) {
	e2e.Require(t)
	e2e.RequireIA32(t)
	child, _ := startChild(t, "deny32")
	opts := e2e.Options()
	opts.Task.PID = child.pid
	counter, err := Open(Config{}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer counter.Close()
	streamer, err := Open(Config{Stream: true}, opts)
	if err != nil {
		t.Fatal(err)
	}
	events := e2e.Collect(t, streamer.Source)
	if err := child.proceed(); err != nil {
		t.Fatalf("child: %v", err)
	}

	for i, want := range ia32Failures {
		e := e2e.Wait(t, events, 5*time.Second, want.column, func(Event) bool { return true })
		col := string(eventTable[3].Append(nil, &e))
		var j struct {
			Syscall   string
			SyscallNr int32 `json:"syscall_nr"`
			Errno     string
			IA32      *bool `json:"ia32"`
		}
		if b, err := json.Marshal(e); err != nil || json.Unmarshal(b, &j) != nil {
			t.Fatalf("event %d: JSON: %v", i, err)
		}
		if col != want.column || j.Syscall != want.name || j.SyscallNr != want.nr || j.Errno != "EPERM" ||
			j.IA32 == nil || *j.IA32 != want.ia32 || e.UID != 65534 {
			t.Errorf("event %d: column %q, JSON %s %d %s ia32 %v, uid %d; want %q, %s %d EPERM ia32 %v, uid 65534",
				i, col, j.Syscall, j.SyscallNr, j.Errno, j.IA32, e.UID, want.column, want.name, want.nr, want.ia32)
		}
	}

	counts, err := counter.Counts(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for i := range counts {
		c := &counts[i]
		key := string(countTable[2].Append(nil, c)) + " " + c.Errno
		got[key] += c.Count
		var j struct {
			IA32 *bool `json:"ia32"`
		}
		if b, err := json.Marshal(c); err != nil || json.Unmarshal(b, &j) != nil || j.IA32 == nil ||
			*j.IA32 != strings.HasPrefix(key, "ia32:") {
			t.Errorf("count %s: JSON ia32 %v (%v)", key, j.IA32, err)
		}
	}
	want := map[string]uint64{}
	for _, f := range ia32Failures {
		want[f.column+" EPERM"]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", got, want)
	}
}
