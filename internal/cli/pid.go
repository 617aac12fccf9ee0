package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/execwatch"
	"github.com/owlbpf/owl/internal/probe"
)

// openPID takes a pidfd of the -p process. The filter in the kernel is a
// pid number; the pidfd is the process itself: it turns readable when
// that process exits, and Run then ends the tool before the number can
// be given to another process (a pid is free for reuse only once the
// exited process is reaped).
func (c *Common) openPID() error {
	c.closePID()
	if c.PID == 0 {
		return nil
	}
	// Non-blocking, so that the runtime's poller waits on it (Run).
	fd, err := unix.PidfdOpen(c.PID, unix.PIDFD_NONBLOCK)
	switch {
	case errors.Is(err, unix.ESRCH):
		return Usagef("--pid %d: no such process", c.PID)
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT):
		// A thread that leads no thread group: EINVAL before Linux 6.9,
		// ENOENT since.
		if tgid := threadGroup(c.PID); tgid != 0 && tgid != c.PID {
			return Usagef("--pid %d: a thread of process %d; -p takes a process", c.PID, tgid)
		}
		return Usagef("--pid %d: not a process: %v", c.PID, err)
	case err != nil:
		return fmt.Errorf("--pid %d: pidfd_open: %w", c.PID, err)
	}
	c.pidfd = os.NewFile(uintptr(fd), "pidfd "+strconv.Itoa(c.PID))
	return nil
}

// threadGroup is the process (Tgid) thread tid belongs to, 0 if unknown.
func threadGroup(tid int) int {
	f, err := os.Open("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Tgid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// closePID lets go of the -p process. Safe to call twice.
func (c *Common) closePID() {
	if c.pidfd != nil {
		c.pidfd.Close()
		c.pidfd = nil
	}
}

// pidExited reports whether the -p process has exited, without waiting.
func (c *Common) pidExited() bool {
	if c.pidfd == nil {
		return false
	}
	fds := []unix.PollFd{{Fd: int32(c.pidfd.Fd()), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
}

// watchPID calls exited once the -p process exits. The returned stop ends
// the watch and reports whether the process exited; exited is not called
// after stop returns. Stop may be called more than once.
func (c *Common) watchPID(exited func()) (stop func() bool) {
	if c.pidfd == nil {
		return func() bool { return false }
	}
	rc, err := c.pidfd.SyscallConn()
	if err != nil {
		return func() bool { return false }
	}
	// A deadline long past from an earlier run would end this one at once.
	c.pidfd.SetReadDeadline(time.Time{})
	done := make(chan bool, 1)
	go func() {
		var gone bool
		// The pidfd is in the runtime's poller: Read sleeps until it is
		// readable (the process exited) or the deadline stop sets.
		rc.Read(func(fd uintptr) bool {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 0)
			gone = err == nil && n > 0
			return gone
		})
		if gone {
			exited()
		}
		done <- gone
	}()
	return sync.OnceValue(func() bool {
		c.pidfd.SetReadDeadline(time.Now())
		return <-done
	})
}

// relinkOnExec attaches s's uprobes for the -p process again whenever
// that process execs from a thread other than its leader, which leaves
// them filtered on a thread that is gone (execwatch), and says so through
// say. The returned stop ends the watch; call it before closing s.
func (c *Common) relinkOnExec(s *probe.Session, say func(format string, args ...any)) (stop func()) {
	if c.PID == 0 || !s.PIDFiltered() {
		return func() {}
	}
	w, err := execwatch.Start(c.PID)
	if err != nil {
		say("owl: warning: process %d is not watched for execs (%v): should a thread other than its first exec, its uprobes go quiet", c.PID, err)
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			tid, err := w.Next()
			if err != nil {
				return
			}
			if err := s.Relink(); err != nil {
				say("owl: process %d exec'd from thread %d; its uprobes could not be attached again: %v", c.PID, tid, err)
				continue
			}
			say("owl: process %d exec'd from thread %d: uprobes attached to it again (calls in between not seen)", c.PID, tid)
		}
	}()
	// Detaching a tracepoint waits for the kernel's RCU grace periods
	// (40 ms here): it goes on beside the end of the run, which waits
	// only for the watch to stop reading.
	return sync.OnceFunc(func() {
		go w.Close()
		<-done
	})
}
