package detect

import "github.com/owlbpf/owl/internal/tools/execsnoop"

// execOf is an execsnoop event as the reverse-shell rule reads it.
// execsnoop does not report the sockets behind fds 0-2 yet (branch
// execsock): until it does, the rule sees no exec with a socket.
func execOf(ev *execsnoop.Event) Exec {
	return Exec{Task: ev.Task, Filename: string(ev.Filename)}
}
