package detect

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"time"

	"github.com/owlbpf/owl/internal/agent/ocsf"
)

// OCSF Detection Finding (schema ocsf.Version, 1.3.0): class 2004 in
// category 2 Findings; activities Create, Update, Close; type_uid
// 200400 + activity.
const (
	ClassUID     = 2004
	categoryUID  = 2
	analyticRule = 1 // analytic.type_id: Rule
	statusNew    = 1
	// observable type_ids
	obsIP      = 2
	obsUser    = 4
	obsProcess = 9
)

// Product is what metadata.product says: owl and its version.
type Product struct {
	Name, Vendor, Version string
}

type ocsfFinding struct {
	ClassUID     int            `json:"class_uid"`
	ClassName    string         `json:"class_name"`
	CategoryUID  int            `json:"category_uid"`
	CategoryName string         `json:"category_name"`
	ActivityID   int            `json:"activity_id"`
	ActivityName string         `json:"activity_name"`
	TypeUID      int            `json:"type_uid"`
	TypeName     string         `json:"type_name"`
	Time         int64          `json:"time"` // ms since the epoch
	SeverityID   int            `json:"severity_id"`
	Severity     string         `json:"severity"`
	StatusID     int            `json:"status_id"`
	Status       string         `json:"status"`
	Message      string         `json:"message"`
	Count        int            `json:"count"`
	Metadata     ocsfMetadata   `json:"metadata"`
	FindingInfo  ocsfInfo       `json:"finding_info"`
	Actor        *ocsfActor     `json:"actor,omitempty"`
	Device       *ocsfDevice    `json:"device,omitempty"`
	Evidences    []ocsfEvidence `json:"evidences"`
	Observables  []ocsfObs      `json:"observables,omitempty"`
	Unmapped     ocsfOwl        `json:"unmapped"`
}

type ocsfMetadata struct {
	Version string `json:"version"`
	Product struct {
		Name    string `json:"name"`
		Vendor  string `json:"vendor_name"`
		Version string `json:"version,omitempty"`
	} `json:"product"`
}

type ocsfInfo struct {
	UID       string   `json:"uid"`
	Title     string   `json:"title"`
	Desc      string   `json:"desc"`
	Types     []string `json:"types"`
	Created   int64    `json:"created_time"`
	Modified  int64    `json:"modified_time"`
	FirstSeen int64    `json:"first_seen_time"`
	LastSeen  int64    `json:"last_seen_time"`
	Analytic  struct {
		UID    string `json:"uid"`
		Name   string `json:"name"`
		TypeID int    `json:"type_id"`
		Type   string `json:"type"`
	} `json:"analytic"`
}

type ocsfActor struct {
	Process ocsfProcess `json:"process"`
	User    ocsfUser    `json:"user"`
}

type ocsfProcess struct {
	PID  uint32    `json:"pid"`
	Name string    `json:"name"`
	File *ocsfFile `json:"file,omitempty"`
	User ocsfUser  `json:"user"`
}

type ocsfFile struct {
	Path   string `json:"path"`
	Name   string `json:"name"`
	TypeID int    `json:"type_id"` // 1 Regular File
}

type ocsfUser struct {
	UID  string `json:"uid,omitempty"`
	Name string `json:"name,omitempty"`
}

type ocsfDevice struct {
	Hostname string `json:"hostname"`
	TypeID   int    `json:"type_id"` // 0 Unknown
}

type ocsfEndpoint struct {
	IP       string `json:"ip,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Port     uint16 `json:"port,omitempty"`
}

// ocsfEvidence is one evidence artifact: the event under data, and the
// remote end where the rule has one (the scanner or login's source, the
// reverse shell's destination).
type ocsfEvidence struct {
	Data        evidenceData  `json:"data"`
	SrcEndpoint *ocsfEndpoint `json:"src_endpoint,omitempty"`
	DstEndpoint *ocsfEndpoint `json:"dst_endpoint,omitempty"`
}

type evidenceData struct {
	Tool  string          `json:"tool"`
	Time  time.Time       `json:"time"`
	Event json.RawMessage `json:"event"`
}

type ocsfObs struct {
	Name   string `json:"name"`
	TypeID int    `json:"type_id"`
	Value  string `json:"value"`
}

// ocsfOwl is what OCSF has no attribute for, under unmapped.
type ocsfOwl struct {
	Rule      string   `json:"rule"`
	Remote    string   `json:"remote,omitempty"`
	Ports     []uint16 `json:"ports,omitempty"`
	PortCount int      `json:"port_count,omitempty"`
	User      string   `json:"user,omitempty"`
	Service   string   `json:"service,omitempty"`
	Module    string   `json:"module,omitempty"`
}

// OCSF encodes f as an OCSF Detection Finding; host names the device ("":
// none).
func (f *Finding) OCSF(p Product, host string) ([]byte, error) {
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	o := ocsfFinding{ClassUID: ClassUID, ClassName: "Detection Finding", CategoryUID: categoryUID, CategoryName: "Findings",
		ActivityID: int(f.Activity), ActivityName: f.Activity.String(), TypeUID: ClassUID*100 + int(f.Activity),
		TypeName: "Detection Finding: " + f.Activity.String(), Time: ms(f.Time),
		SeverityID: int(f.Rule.Severity), Severity: f.Rule.Severity.String(), StatusID: statusNew, Status: "New",
		Message: f.Message, Count: f.Count, Evidences: []ocsfEvidence{},
		Unmapped: ocsfOwl{Rule: f.Rule.ID, Ports: f.Ports, PortCount: f.PortCount, User: f.User, Service: f.Service, Module: f.Module}}
	o.Metadata.Version = ocsf.Version
	o.Metadata.Product.Name, o.Metadata.Product.Vendor, o.Metadata.Product.Version = p.Name, p.Vendor, p.Version
	fi := &o.FindingInfo
	fi.UID, fi.Title, fi.Desc, fi.Types = f.UID, f.Rule.Title, f.Message, []string{f.Rule.ID}
	fi.Created, fi.Modified, fi.FirstSeen, fi.LastSeen = ms(f.First), ms(f.Time), ms(f.First), ms(f.Last)
	fi.Analytic.UID, fi.Analytic.Name, fi.Analytic.TypeID, fi.Analytic.Type = f.Rule.ID, f.Rule.Title, analyticRule, "Rule"
	if a := f.Actor; a != nil {
		u := ocsfUser{UID: strconv.FormatUint(uint64(a.UID), 10)}
		o.Actor = &ocsfActor{Process: ocsfProcess{PID: a.PID, Name: a.Comm, User: u}, User: u}
		if a.Exe != "" {
			o.Actor.Process.File = &ocsfFile{Path: a.Exe, Name: path.Base(a.Exe), TypeID: 1}
		}
		o.Observables = append(o.Observables, ocsfObs{"actor.process.name", obsProcess, a.Comm})
	}
	if host != "" {
		o.Device = &ocsfDevice{Hostname: host}
	}
	var ep *ocsfEndpoint
	if f.Remote.IsValid() {
		ep = &ocsfEndpoint{IP: f.Remote.Addr().String(), Port: f.Remote.Port()}
		o.Unmapped.Remote = f.Remote.Addr().String()
		if f.Remote.Port() != 0 {
			o.Unmapped.Remote = f.Remote.String()
		}
		o.Observables = append(o.Observables, ocsfObs{"remote.ip", obsIP, f.Remote.Addr().String()})
	} else if f.RemoteHost != "" {
		ep = &ocsfEndpoint{Hostname: f.RemoteHost}
		o.Unmapped.Remote = f.RemoteHost
	}
	if f.User != "" {
		o.Observables = append(o.Observables, ocsfObs{"user.name", obsUser, f.User})
	}
	for i, ev := range f.Evidence {
		e := ocsfEvidence{Data: evidenceData{Tool: ev.Tool, Time: ev.Time.UTC(), Event: ev.Event}}
		if i == 0 && ep != nil {
			if f.Rule == RuleReverseShell {
				e.DstEndpoint = ep
			} else {
				e.SrcEndpoint = ep
			}
		}
		o.Evidences = append(o.Evidences, e)
	}
	return json.Marshal(o)
}

// Text is the one line `owl detect` prints for a finding state.
func (f *Finding) Text() string {
	return fmt.Sprintf("%s %-22s %-6s %-8s %s %s", f.Time.UTC().Format("2006-01-02T15:04:05.000Z"), f.Rule.ID,
		f.Activity, f.Rule.Severity, f.UID, f.Message)
}
