package main

import (
	"bytes"
	"encoding/json"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
)

// hostileName is a thread name (15 bytes, the kernel's limit) that would
// forge a second line, color the terminal, and carry invalid UTF-8 and a
// backslash.
const hostileName = "a\n9 fake\x1b[31m\xff\\"

// escapedName is how owl must print it, in text and inside JSON strings.
const escapedName = `a\x0a9 fake\x1b[31m\xff\x5c`

// failAsHostile makes one failed syscall (EPERM) from a thread of this
// process renamed with prctl(PR_SET_NAME, hostileName).
func failAsHostile(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		// The thread keeps its name: it ends with this goroutine, which
		// never unlocks it.
		runtime.LockOSThread()
		name := append([]byte(hostileName), 0)
		if err := unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&name[0])), 0, 0, 0); err != nil {
			done <- err
			return
		}
		runtime.KeepAlive(name)
		unix.PtraceAttach(os.Getpid())
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("prctl(PR_SET_NAME): %v", err)
	}
}

// A process name cannot forge lines or reach the terminal: text escapes
// control and non-printable bytes (and the backslash), JSON carries the
// same reversible escapes.
func TestHostileCommIsEscaped(t *testing.T) {
	e2e.Require(t)
	self := strconv.Itoa(os.Getpid())

	t.Run("text", func(t *testing.T) {
		o := start(t, "eperm", "-e", "-p", self)
		failAsHostile(t)
		var out strings.Builder
		for {
			l := o.line(t)
			out.WriteString(l)
			if strings.Contains(l, "ptrace") {
				break
			}
		}
		out.WriteString(o.stop(t))
		if bytes.ContainsAny([]byte(out.String()), "\x1b\xff") {
			t.Errorf("raw escape or invalid byte reached the output: %q", out.String())
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")[1:] {
			if strings.Contains(l, "fake") || strings.Contains(l, "ptrace") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 {
			t.Fatalf("want one line for the event, got %q (output %q)", lines, out.String())
		}
		f := strings.Fields(lines[0])
		if len(f) != 6 || f[1] != self || f[2] != `a\x0a9` || f[3] != `fake\x1b[31m\xff\x5c` || f[4] != "ptrace" || f[5] != "EPERM" {
			t.Errorf("line %q: want TIME %s %s ptrace EPERM", lines[0], self, escapedName)
		}
	})

	t.Run("json", func(t *testing.T) {
		o := start(t, "eperm", "-e", "-o", "json", "-p", self)
		failAsHostile(t)
		for {
			l := o.line(t)
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			if m["syscall"] != "ptrace" {
				continue
			}
			if m["comm"] != escapedName {
				t.Errorf("comm %q, want %q (line %s)", m["comm"], escapedName, l)
			}
			break
		}
		o.stop(t)
	})
}
