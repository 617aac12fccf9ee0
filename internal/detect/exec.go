package detect

import "github.com/owlbpf/owl/internal/tools/execsnoop"

// execOf is an execsnoop event as the reverse-shell rule reads it: the
// image and the TCP/UDP sockets execsnoop found at fds 0-2.
func execOf(ev *execsnoop.Event) Exec {
	x := Exec{Task: ev.Task, Filename: string(ev.Filename)}
	for _, s := range ev.Stdio {
		x.Stdio = append(x.Stdio, StdioSocket{FD: s.FD, Protocol: s.Protocol, Laddr: s.Laddr, Lport: s.Lport,
			Raddr: s.Raddr, Rport: s.Rport})
	}
	return x
}
