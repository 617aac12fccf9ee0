package output

import (
	"time"

	"github.com/owlbpf/owl/internal/event"
)

// Tasked is a pointer to an event that embeds event.Task: the columns
// below serve every such tool, e.g. output.PID[Event](6).
type Tasked[E any] interface {
	*E
	TaskPart() *event.Task
}

// Clock is BCC's TIME column: HH:MM:SS in local time.
func Clock[E any, P Tasked[E]](width int) Column[E] {
	return Column[E]{Name: "TIME", Width: width, Append: func(b []byte, e *E) []byte {
		return AppendClock(b, P(e).TaskPart().Time.Time)
	}}
}

// Elapsed is BCC's TIME(s) column: seconds since the first event printed.
func Elapsed[E any, P Tasked[E]]() Column[E] {
	var first uint64
	return Column[E]{Name: "TIME(s)", Width: 9, Append: func(b []byte, e *E) []byte {
		t := P(e).TaskPart().KtimeNs
		if first == 0 {
			first = t
		}
		return Seconds(b, time.Duration(t-first))
	}}
}

// PID is the process id (tgid).
func PID[E any, P Tasked[E]](width int) Column[E] {
	return Column[E]{Name: "PID", Width: width, Append: func(b []byte, e *E) []byte { return Uint(b, P(e).TaskPart().PID) }}
}

// TID is the thread id.
func TID[E any, P Tasked[E]](width int) Column[E] {
	return Column[E]{Name: "TID", Width: width, Append: func(b []byte, e *E) []byte { return Uint(b, P(e).TaskPart().TID) }}
}

// UID is the task's uid.
func UID[E any, P Tasked[E]](width int) Column[E] {
	return Column[E]{Name: "UID", Width: width, Append: func(b []byte, e *E) []byte { return Uint(b, P(e).TaskPart().UID) }}
}

// Comm is the command name, cut to width bytes as BCC's %-12.12s, then
// escaped (event.AppendEscaped): a name cannot forge a line or reach the
// terminal. An escaped name may be wider than the column.
func Comm[E any, P Tasked[E]](width int) Column[E] {
	return Column[E]{Name: "COMM", Width: width, Append: func(b []byte, e *E) []byte {
		return P(e).TaskPart().Comm.AppendMax(b, width)
	}}
}
