package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsEnv marks a child started by NetnsChild: it brings its namespace's
// loopback up before its action runs.
const netnsEnv = "OWL_E2E_NETNS"

// In a child of NetnsChild, before Main runs its action. An init function
// because Main's actions are the tests' own; it does nothing elsewhere.
func init() {
	if os.Getenv(childEnv) == "" || os.Getenv(netnsEnv) == "" {
		return
	}
	if err := loopbackUp(); err != nil {
		fmt.Fprintf(os.Stderr, "network namespace: %v\n", err)
		os.Exit(3)
	}
}

// loopbackUp brings up "lo", the only interface of a new network namespace,
// with ioctls: no iproute2 needed (the qemu guest has only busybox).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags of lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	return nil
}

// NetnsChild is Child in a network namespace made for it (cloned with
// CLONE_NEWNET) that goes away when it exits: only a loopback interface,
// up, with 127.0.0.1 and ::1, and its own ports, sockets and net sysctls
// (/proc/sys/net). Thousands of connects or a listener whose queue is full
// there disturb nothing else on the host. Tracing still sees the child: BPF
// programs are not per namespace.
func NetnsChild(action string, args ...string) *exec.Cmd {
	cmd := Child(action, args...)
	cmd.Env = append(cmd.Env, netnsEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	return cmd
}

// Peer is a child in a network namespace of its own that talks with the
// test in lines: it reads the test's on its stdin and writes its own on
// stdout. The child side is plain Go: fmt.Println and a bufio.Scanner on
// os.Stdin; it should exit when its stdin closes.
type Peer struct {
	Cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string // stdout, closed at EOF
	done  bool
}

// StartPeer starts NetnsChild(action, args...). Cleanup kills it unless
// the test ended it with Close.
func StartPeer(t testing.TB, action string, args ...string) *Peer {
	t.Helper()
	cmd := NetnsChild(action, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s in a new network namespace: %v", action, err)
	}
	p := &Peer{Cmd: cmd, in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		if !p.done {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return p
}

// Pid is the child's process id.
func (p *Peer) Pid() int { return p.Cmd.Process.Pid }

// Send writes one line to the child.
func (p *Peer) Send(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(p.in, line+"\n"); err != nil {
		t.Fatalf("write to child: %v", err)
	}
}

// Expect reads the child's next line and fails the test unless it starts
// with prefix; it returns the rest of the line, trimmed.
func (p *Peer) Expect(t testing.TB, prefix string, timeout time.Duration) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("child exited before saying %q", prefix)
		}
		rest, found := strings.CutPrefix(l, prefix)
		if !found {
			t.Fatalf("child said %q, want %q...", l, prefix)
		}
		return strings.TrimSpace(rest)
	case <-time.After(timeout):
		t.Fatalf("child did not say %q within %v", prefix, timeout)
	}
	return ""
}

// Close closes the child's stdin and waits for it to exit.
func (p *Peer) Close() error {
	p.in.Close()
	p.done = true
	return p.Cmd.Wait()
}
