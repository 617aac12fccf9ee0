package execwatch

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
)

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{"exec": execTwice})
}

// execTwice, started with the argument "leader", prints "ready", then
// for each line on stdin prints its own thread id and execs itself with
// the next argument: first from its leading thread ("thread" next), then
// from another ("wait" next); "wait" waits for stdin to close.
func execTwice(args []string) error {
	step := args[0]
	if step == "wait" {
		fmt.Println("waiting")
		_, err := io.Copy(io.Discard, os.Stdin)
		return err
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	next := map[string]string{"leader": "thread", "thread": "wait"}[step]
	return e2e.ExecOnThread(step == "leader", "exec", next)
}

// Of a process's two execs, the one from its leader is not reported, the
// one from another thread is, with that thread's id.
func TestExecFromThread(t *testing.T) {
	e2e.Require(t)
	cmd := e2e.Child("exec", "leader")
	in, _ := cmd.StdinPipe()
	outPipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	out := bufio.NewScanner(outPipe)
	expect := func(want string) {
		t.Helper()
		if !out.Scan() || out.Text() != want {
			t.Fatalf("child said %q (%v), want %q", out.Text(), out.Err(), want)
		}
	}
	expect("ready")
	w, err := Start(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	got := make(chan int, 4)
	go func() {
		for {
			tid, err := w.Next()
			if err != nil {
				close(got)
				return
			}
			got <- tid
		}
	}()
	io.WriteString(in, "exec\n") // from the leader
	expect("ready")
	io.WriteString(in, "exec\n") // from another thread
	expect("waiting")
	select {
	case tid := <-got:
		if tid == cmd.Process.Pid || tid <= 0 {
			t.Fatalf("reported thread %d of process %d: the leader's exec, or no thread", tid, cmd.Process.Pid)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the exec from a thread was not reported")
	}
	select {
	case tid, ok := <-got:
		if ok {
			t.Errorf("a second exec reported (thread %d)", tid)
		}
	case <-time.After(100 * time.Millisecond):
	}
	if err := w.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if _, ok := <-got; ok {
		t.Error("Next returned a record after Close")
	}
}
