package detect

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Severity is OCSF's severity_id.
type Severity int

// OCSF severities.
const (
	Informational Severity = 1
	Low           Severity = 2
	Medium        Severity = 3
	High          Severity = 4
	Critical      Severity = 5
)

func (s Severity) String() string {
	switch s {
	case Informational:
		return "Informational"
	case Low:
		return "Low"
	case Medium:
		return "Medium"
	case High:
		return "High"
	case Critical:
		return "Critical"
	}
	return "Unknown"
}

// Rule is what tripped a finding.
type Rule struct {
	ID       string // port-scan; the Prometheus label
	Title    string
	Severity Severity
}

// The rules.
var (
	RulePortScan     = Rule{"port-scan", "Port scan", Medium}
	RuleBruteForce   = Rule{"brute-force", "Authentication brute force", Medium}
	RuleSuccessAfter = Rule{"success-after-failures", "Authentication success after repeated failures", High}
	RulePrivEsc      = Rule{"privilege-escalation", "Non-root process gained uid 0", High}
	RuleCapDenials   = Rule{"capability-denials", "Burst of denied administrative capabilities", Medium}
	RuleModuleLoad   = Rule{"module-load", "Kernel module loaded", Medium}
	RuleReverseShell = Rule{"reverse-shell", "Shell with a network socket as standard input or output", Critical}
)

// Rules lists every rule, for docs and metrics.
var Rules = []Rule{RulePortScan, RuleBruteForce, RuleSuccessAfter, RulePrivEsc, RuleCapDenials, RuleModuleLoad, RuleReverseShell}

// Activity is OCSF Detection Finding's activity_id: one finding is made
// (Create), then updated while its rule keeps matching, and closed when
// its group went quiet (Close carries the final counts).
type Activity int

// Activities.
const (
	Create Activity = 1
	Update Activity = 2
	Close  Activity = 3
)

func (a Activity) String() string {
	switch a {
	case Create:
		return "Create"
	case Update:
		return "Update"
	case Close:
		return "Close"
	}
	return "Other"
}

// Finding is one state of a finding: each Create, Update and Close is
// handed over as a Finding of its own (a copy: keeping it is safe).
type Finding struct {
	// UID is the same in every state of one finding.
	UID      string
	Rule     Rule
	Activity Activity
	// Time is when this state was made; First and Last are the times of
	// the first and last events counted.
	Time, First, Last time.Time
	// Count is the events counted: failures, denials, ports probed ...
	Count   int
	Message string
	Actor   *Actor
	// Remote is the other end: the scanner, the login's remote host, the
	// reverse shell's listener. RemoteHost is set when the remote host is
	// a name (PAM_RHOST), not an address.
	Remote     netip.AddrPort
	RemoteHost string
	User       string // the user a login was for
	Service    string // the PAM service
	// Ports is a sample of the ports scanned (the first ones, sorted);
	// PortCount the distinct ports of the whole scan.
	Ports      []uint16
	PortCount  int
	Module     string
	Capability string // capability-denials: the capability denied
	Evidence   []Evidence
}

// Actor is the process a finding is about.
type Actor struct {
	PID  uint32
	UID  uint32
	Comm string
	Exe  string // "" when unknown
}

// Evidence is one event that tripped (or kept up) a finding: the tool's
// own JSON, as owl <tool> -o json prints it.
type Evidence struct {
	Tool  string
	Time  time.Time
	Event json.RawMessage
}

// clone copies what later states would change.
func (f *Finding) clone() Finding {
	c := *f
	c.Ports = slices.Clone(f.Ports)
	c.Evidence = slices.Clone(f.Evidence)
	if f.Actor != nil {
		a := *f.Actor
		c.Actor = &a
	}
	return c
}

// findingUID names a finding by its rule, group and first event: stable,
// and the same however often the finding is updated.
func findingUID(r Rule, key string, first time.Time) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%d", r.ID, key, first.UnixNano()))
	return r.ID + "-" + hex.EncodeToString(h[:8])
}

// group is the state a windowed rule keeps per key: the finding once
// tripped, and the evidence gathered before.
type group struct {
	key      string
	f        *Finding
	dirty    bool      // changed since last emitted
	emitted  time.Time // when last emitted (Tick's clock)
	last     time.Time // last event counted
	evidence []Evidence

	// What the rules count, by rule.
	count    int                  // port-scan: probes
	ports    map[uint16]time.Time // port-scan, before tripping: port → last probe
	all      map[uint16]struct{}  // port-scan, after: every port of the scan
	times    []time.Time          // brute-force, capability-denials: the last events
	streak   int                  // brute-force: failures in the current run
	first    time.Time            // brute-force: the run's first failure
	lastFail time.Time            // brute-force
}

// addEvidence keeps ev while fewer than max are kept.
func (g *group) addEvidence(max int, ev func() Evidence) {
	if g.f != nil {
		if len(g.f.Evidence) < max {
			g.f.Evidence = append(g.f.Evidence, ev())
		}
		return
	}
	if len(g.evidence) < max {
		g.evidence = append(g.evidence, ev())
	}
}
