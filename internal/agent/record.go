package agent

import (
	"encoding/json"
	"time"

	"github.com/owlbpf/owl/internal/agent/container"
	"github.com/owlbpf/owl/internal/agent/ocsf"
	"github.com/owlbpf/owl/internal/agent/sinks"
	"github.com/owlbpf/owl/internal/event"
)

// tasker is what events that embed event.Task have.
type tasker interface{ TaskPart() *event.Task }

// newRecord makes the record of one event (e is reused by the tool after
// the call: everything is copied or encoded here).
func newRecord(tool string, e any, host *sinks.Host, res *container.Resolver) (*sinks.Record, error) {
	js, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	r := &sinks.Record{Tool: tool, Event: js, Host: host, Time: time.Now()}
	if t, ok := e.(tasker); ok {
		task := *t.TaskPart()
		r.Task = &task
		if !task.Time.IsZero() {
			r.Time = task.Time.Time
		}
		if res != nil {
			r.Container = res.Lookup(task.PID, task.MntNS)
		}
	}
	var f struct {
		Ret     *int64 `json:"ret"`
		Errno   *int64 `json:"errno"`
		Verdict string `json:"verdict"`
		Event   string `json:"event"`
		Result  string `json:"result"`
	}
	// Only the classification reads these; a field of another type (a
	// tool whose "event" is not a string) leaves the defaults.
	_ = json.Unmarshal(js, &f)
	r.OCSF = ocsf.Of(tool, ocsf.Fields{Ret: f.Ret, Errno: f.Errno, Verdict: f.Verdict, Event: f.Event, Result: f.Result})
	return r, nil
}
