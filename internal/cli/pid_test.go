package cli

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPIDWatch(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skipf("no sleep to watch: %v", err)
	}
	c := Common{PID: child.Process.Pid}
	if err := c.openPID(); err != nil {
		t.Fatal(err)
	}
	defer c.closePID()
	exited := make(chan struct{})
	stop := c.watchPID(func() { close(exited) })
	select {
	case <-exited:
		t.Fatal("the watch fired while the process runs")
	case <-time.After(50 * time.Millisecond):
	}
	child.Process.Kill()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not fire within 5 s of the exit")
	}
	if !stop() || !stop() || !c.pidExited() {
		t.Error("stop or pidExited does not report the exit")
	}
	child.Wait()

	// A watch stopped while the process lives reports no exit.
	c = Common{PID: os.Getpid()}
	if err := c.openPID(); err != nil {
		t.Fatal(err)
	}
	defer c.closePID()
	if c.watchPID(func() { t.Error("fired for a live process") })() || c.pidExited() {
		t.Error("a live process reported as exited")
	}
}

func TestPIDRefused(t *testing.T) {
	c := Common{PID: maxPID}
	if err := c.openPID(); ExitCode(err) != 2 || !strings.Contains(err.Error(), "no such process") {
		t.Errorf("pid %d: %v, want no such process", maxPID, err)
	}
	// A thread that is not its process's leader: -p wants the process.
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	tid := 0
	for _, e := range ents {
		if n, _ := strconv.Atoi(e.Name()); n != os.Getpid() {
			tid = n
		}
	}
	if tid == 0 {
		t.Skip("this process has one thread")
	}
	c = Common{PID: tid}
	err = c.openPID()
	c.closePID()
	if ExitCode(err) != 2 || !strings.Contains(err.Error(), "thread of process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("-p %d (a thread): %v, want a usage error naming process %d", tid, err, os.Getpid())
	}
}
