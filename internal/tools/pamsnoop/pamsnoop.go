// Package pamsnoop traces PAM: the services and users that applications
// (su, sudo, sshd, login, ...) start PAM for, and the result of each
// authentication, account check and session open or close, by uprobes in
// libpam.
package pamsnoop

import (
	"strconv"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/caps"
	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// funcs are the libpam functions probed, indexed by their id (enum fn of
// pamsnoop.bpf.c: the attach cookie). The first six are events; the
// others keep the handles' items up to date.
var funcs = []struct {
	name  string
	ret   bool // a uretprobe too
	event bool
}{
	{"pam_start", true, true},
	{"pam_start_confdir", true, true}, // libpam 1.4+
	{"pam_authenticate", true, true},
	{"pam_acct_mgmt", true, true},
	{"pam_open_session", true, true},
	{"pam_close_session", true, true},
	{"pam_set_item", false, false},
	{"pam_get_item", true, false},
	{"pam_end", false, false},
}

// Event is one PAM call that returned.
type Event struct {
	event.Task
	// Service, User, RHost and TTY are the handle's items as last seen:
	// given to pam_start or set or read later (pam_set_item,
	// pam_get_item). Null in JSON when not seen, for a handle started
	// before tracing began, say.
	Service Text `json:"service"`
	User    Text `json:"user"`
	RHost   Text `json:"rhost"`
	TTY     Text `json:"tty"`
	// Event is the function: pam_start, pam_start_confdir,
	// pam_authenticate, pam_acct_mgmt, pam_open_session or
	// pam_close_session.
	Event string `json:"event"`
	// Result is the return code's name (PAM_SUCCESS, PAM_AUTH_ERR ...),
	// or its number when libpam has no name for it.
	Result string `json:"result"`
	// Handle is the pam_handle_t's address in the process: the calls of
	// one PAM transaction share it (0 when pam_start failed).
	Handle uint64 `json:"handle"`
}

// Text is a string an application chose (a user name can come from
// anyone who can reach sshd): printed escaped as event.Comm is, so that it
// cannot forge a line or reach the terminal; null in JSON when empty.
type Text string

// Append appends the text escaped, or "-" when it is empty.
func (t Text) Append(b []byte) []byte {
	if t == "" {
		return append(b, '-')
	}
	return event.AppendEscaped(b, []byte(t))
}

// MarshalJSON gives the escaped text as a JSON string (event.Unescape
// reverses it), or null when empty.
func (t Text) MarshalJSON() ([]byte, error) {
	if t == "" {
		return []byte("null"), nil
	}
	return strconv.AppendQuote(nil, string(event.AppendEscaped(nil, []byte(t)))), nil
}

// results are the names of PAM's return codes (Linux-PAM _pam_types.h).
var results = []string{
	"PAM_SUCCESS", "PAM_OPEN_ERR", "PAM_SYMBOL_ERR", "PAM_SERVICE_ERR",
	"PAM_SYSTEM_ERR", "PAM_BUF_ERR", "PAM_PERM_DENIED", "PAM_AUTH_ERR",
	"PAM_CRED_INSUFFICIENT", "PAM_AUTHINFO_UNAVAIL", "PAM_USER_UNKNOWN",
	"PAM_MAXTRIES", "PAM_NEW_AUTHTOK_REQD", "PAM_ACCT_EXPIRED",
	"PAM_SESSION_ERR", "PAM_CRED_UNAVAIL", "PAM_CRED_EXPIRED", "PAM_CRED_ERR",
	"PAM_NO_MODULE_DATA", "PAM_CONV_ERR", "PAM_AUTHTOK_ERR",
	"PAM_AUTHTOK_RECOVERY_ERR", "PAM_AUTHTOK_LOCK_BUSY",
	"PAM_AUTHTOK_DISABLE_AGING", "PAM_TRY_AGAIN", "PAM_IGNORE", "PAM_ABORT",
	"PAM_AUTHTOK_EXPIRED", "PAM_MODULE_UNKNOWN", "PAM_BAD_ITEM",
	"PAM_CONV_AGAIN", "PAM_INCOMPLETE",
}

// ResultName names a PAM return code, or gives its number.
func ResultName(ret int32) string {
	if ret >= 0 && int(ret) < len(results) {
		return results[ret]
	}
	return strconv.Itoa(int(ret))
}

// Config chooses the libpam files to probe; the task filters are in
// tool.Options.
type Config struct {
	// Lib is the libpam to probe (-l); "" finds libpam as the dynamic
	// loader would: the host's, and with Open that of every other mount
	// namespace (or only the -p process's or the --mntns namespace's).
	Lib string

	// Set by Open (nil: the host's libpam, found by hooks).
	libs []Lib
	pid  int
}

// Lib is one libpam file probed and the offsets of its functions.
type Lib struct {
	Path string
	// Offsets are file offsets by function id (len(funcs)); 0 for a
	// function this version lacks (pam_start_confdir before 1.4).
	Offsets []uint64
}

const hookName = "uprobe + uretprobe libpam:pam_start*,pam_authenticate,pam_acct_mgmt,pam_{open,close}_session,pam_{set,get}_item,pam_end"

// hooks attaches, to each libpam, the entry program at every function and
// the return program at those with results, cookies naming the function.
// Without libs (the registry's default config) it finds the host's libpam
// only when the hook is tried, not when hooks are listed (every owl start
// builds --help from them); a failure to is the hook's Check error.
func hooks(cfg Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Uprobe, Name: hookName}
	if cfg.libs != nil {
		for _, l := range cfg.libs {
			entry, ret := libAttachments(l, cfg.pid)
			h.Attachments = append(h.Attachments, entry, ret)
		}
		return []probe.Hook{h}
	}
	find := sync.OnceValues(func() (Lib, error) { return findLib(cfg.Lib, 0) })
	h.Check = func() error {
		_, err := find()
		return err
	}
	lazy := func(prog, target string, ret bool) probe.Attachment {
		return probe.LazyAt(prog, target, func() (probe.Attachment, error) {
			l, err := find()
			if err != nil {
				return probe.Attachment{}, err
			}
			entry, r := libAttachments(l, cfg.pid)
			if ret {
				return r, nil
			}
			return entry, nil
		})
	}
	h.Attachments = []probe.Attachment{
		lazy(pamsnoopProgPamEntry, "uprobe libpam", false),
		lazy(pamsnoopProgPamReturn, "uretprobe libpam", true),
	}
	return []probe.Hook{h}
}

// libAttachments are the entry and return probes of one libpam.
func libAttachments(l Lib, pid int) (entry, ret probe.Attachment) {
	var entries, entryIDs, rets, retIDs []uint64
	for id, f := range funcs {
		off := l.Offsets[id]
		if off == 0 {
			continue
		}
		entries = append(entries, off)
		entryIDs = append(entryIDs, uint64(id))
		if f.ret {
			rets = append(rets, off)
			retIDs = append(retIDs, uint64(id))
		}
	}
	return probe.UprobesAt(pamsnoopProgPamEntry, l.Path, entries, entryIDs, false, pid),
		probe.UprobesAt(pamsnoopProgPamReturn, l.Path, rets, retIDs, true, pid)
}

var spec = tool.Spec[Config, Event]{
	Name:    "pamsnoop",
	Group:   "security",
	Summary: "Trace PAM: services, users and the results of authentications and sessions",
	Long: `Trace the PAM calls of applications (su, sudo, sshd, login, cron, ...):
pam_start and pam_start_confdir with the service and user, and the result of
pam_authenticate, pam_acct_mgmt, pam_open_session and pam_close_session as
its name (PAM_SUCCESS, PAM_AUTH_ERR, PAM_USER_UNKNOWN ...). A wrong password
is one pam_authenticate line with RESULT PAM_AUTH_ERR.

Each line shows the service, user, remote host and tty of its PAM handle:
owl keeps them per handle from pam_start, and from pam_set_item and
pam_get_item (PAM_USER, PAM_RHOST, PAM_TTY), until pam_end. A handle
started before owl shows "-" (null in JSON) until an item is seen; a call
already in progress when owl starts is not seen.

libpam is found as the dynamic loader would (/etc/ld.so.cache), or given
with -l PATH. Programs in other mount namespaces (containers) use their own
libpam: owl probes, besides the host's, the libpam of every mount namespace
that has a process when it starts (through /proc/PID/root); with -p PID,
only the libpam that process uses; with --mntns, that namespace's. A
container started later is not covered: restart owl, or give its libpam
with -l /proc/PID/root/...`,
	Task: true,
	// Logins are rare; a burst of failed passwords is a few thousand.
	RingBytes: 256 << 10,
	Load:      loadPamsnoop,
	Caps:      func(c Config, _ tool.Options) caps.Set { return caps.If(c.Lib == "", caps.SysPtrace) }, // finds each mount namespace's libpam through a process
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Pending:   pamsnoopMapCalls,
	Configure: func(_ Config, cs *ebpf.CollectionSpec) error {
		return probe.PrepareUprobes(cs, pamsnoopProgPamEntry, pamsnoopProgPamReturn)
	},
	Decoder: func(_ Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		return func(raw []byte, e *Event) bool { return decode(s, raw, e) }, nil
	},
}

// Tool is pamsnoop's registry entry.
var Tool = tool.Register(&spec, command)

func decode(s *probe.Session, raw []byte, e *Event) bool {
	r, ok := probe.View[pamsnoopEvent](raw)
	if !ok || int(r.Fn) >= len(funcs) || !funcs[r.Fn].event {
		return false
	}
	*e = Event{
		Task:    s.Task(raw),
		Service: cstr(r.St.Service[:]),
		User:    cstr(r.St.User[:]),
		RHost:   cstr(r.St.Rhost[:]),
		TTY:     cstr(r.St.Tty[:]),
		Event:   funcs[r.Fn].name,
		Result:  ResultName(r.Ret),
		Handle:  r.Pamh,
	}
	return true
}

// cstr is the NUL-terminated string at the start of b.
func cstr[T ~int8 | ~uint8](b []T) Text {
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	s := make([]byte, n)
	for i := range s {
		s[i] = byte(b[i])
	}
	return Text(s)
}

// LibError is Open's error for a libpam that cannot be probed (no such
// file, not libpam): the user's to fix.
type LibError struct{ Err error }

func (e *LibError) Error() string { return e.Err.Error() }
func (e *LibError) Unwrap() error { return e.Err }

// Open finds the libpam files to probe (see Config.Lib), loads and
// attaches pamsnoop.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	libs, err := findLibs(cfg.Lib, opts.Task)
	if err != nil {
		return nil, &LibError{Err: err}
	}
	cfg.libs, cfg.pid = libs, opts.Task.PID
	return tool.Open(&spec, cfg, opts)
}
