// Package ocsf maps owl's events to the Open Cybersecurity Schema
// Framework: each event gets a class and an activity, so that a SIEM that
// speaks OCSF files it without a parser written for owl. Only the
// classification is OCSF's (class, category, activity, type, status,
// severity); the event's own fields stay owl's, next to it.
//
// Mapping, by tool (schema 1.3.0):
//
//	tool        class                              activity
//	tcpconnect  4001 Network Activity              1 Open; 4 Fail (errno), 5 Refuse (ECONNREFUSED)
//	tcpaccept   4001 Network Activity              1 Open
//	tcpreset    4001 Network Activity              3 Reset
//	execsnoop   1007 Process Activity              1 Launch (status Failure when ret < 0)
//	setuids     1007 Process Activity              5 Set User ID (status Failure when ret < 0)
//	capable     1007 Process Activity              99 Other "Capability Check" (Failure on deny)
//	eperm       1007 Process Activity              99 Other "Permission Denied", status Failure
//	pamsnoop    3002 Authentication                1 Logon (pam_authenticate, pam_open_session),
//	                                               2 Logoff (pam_close_session), 99 Other; status from result
//	modsnoop    1002 Kernel Extension Activity     1 Load
//	opensnoop   1001 File System Activity          14 Open (status Failure when errno)
//	bashreadline 1007 Process Activity             99 Other "Shell Command"
//	others      0 Base Event                       99 Other
package ocsf

import (
	"strings"
)

// Version is the OCSF schema version the classes and activities are from.
const Version = "1.3.0"

// Class is an OCSF class with its category.
type Class struct {
	UID          int    `json:"class_uid"`
	Name         string `json:"class_name"`
	CategoryUID  int    `json:"category_uid"`
	CategoryName string `json:"category_name"`
}

// The classes owl's tools map to.
var (
	Base            = Class{0, "Base Event", 0, "Uncategorized"}
	FileSystem      = Class{1001, "File System Activity", 1, "System Activity"}
	KernelExtension = Class{1002, "Kernel Extension Activity", 1, "System Activity"}
	Process         = Class{1007, "Process Activity", 1, "System Activity"}
	Authentication  = Class{3002, "Authentication", 3, "Identity & Access Management"}
	Network         = Class{4001, "Network Activity", 4, "Network Activity"}
)

// Status ids.
const (
	StatusSuccess = 1
	StatusFailure = 2
)

// Shape is the OCSF part of one record.
type Shape struct {
	Version string `json:"version"`
	Class
	ActivityID   int    `json:"activity_id"`
	ActivityName string `json:"activity_name"`
	TypeUID      int    `json:"type_uid"`
	StatusID     int    `json:"status_id"`
	SeverityID   int    `json:"severity_id"` // 1 Informational
}

// Fields are what the mapping reads of an event, from its JSON: every
// tool names these the same way where it has them.
type Fields struct {
	Ret     *int64 // execsnoop, setuids
	Errno   *int64 // tcpconnect (sk_err), opensnoop
	Verdict string // capable
	Event   string // pamsnoop
	Result  string // pamsnoop
}

const econnrefused = 111

// Of returns the shape of an event of tool.
func Of(tool string, f Fields) Shape {
	s := Shape{Version: Version, StatusID: StatusSuccess, SeverityID: 1}
	failed := func(p *int64) bool { return p != nil && *p != 0 }
	negative := func(p *int64) bool { return p != nil && *p < 0 }
	switch tool {
	case "tcpconnect":
		s.set(Network, 1, "Open")
		if failed(f.Errno) {
			s.StatusID = StatusFailure
			if *f.Errno == econnrefused {
				s.set(Network, 5, "Refuse")
			} else {
				s.set(Network, 4, "Fail")
			}
		}
	case "tcpaccept":
		s.set(Network, 1, "Open")
	case "tcpreset":
		s.set(Network, 3, "Reset")
	case "execsnoop":
		s.set(Process, 1, "Launch")
		if negative(f.Ret) {
			s.StatusID = StatusFailure
		}
	case "setuids":
		s.set(Process, 5, "Set User ID")
		if negative(f.Ret) {
			s.StatusID = StatusFailure
		}
	case "capable":
		s.set(Process, 99, "Capability Check")
		if f.Verdict == "deny" {
			s.StatusID = StatusFailure
		}
	case "eperm":
		s.set(Process, 99, "Permission Denied")
		s.StatusID = StatusFailure
	case "pamsnoop":
		switch f.Event {
		case "pam_authenticate", "pam_open_session":
			s.set(Authentication, 1, "Logon")
		case "pam_close_session":
			s.set(Authentication, 2, "Logoff")
		default:
			s.set(Authentication, 99, strings.TrimPrefix(f.Event, "pam_"))
		}
		if f.Result != "" && f.Result != "PAM_SUCCESS" {
			s.StatusID = StatusFailure
		}
	case "modsnoop":
		s.set(KernelExtension, 1, "Load")
	case "opensnoop":
		s.set(FileSystem, 14, "Open")
		if failed(f.Errno) {
			s.StatusID = StatusFailure
		}
	case "bashreadline":
		s.set(Process, 99, "Shell Command")
	default:
		s.set(Base, 99, "Other")
	}
	return s
}

func (s *Shape) set(c Class, activity int, name string) {
	s.Class, s.ActivityID, s.ActivityName = c, activity, name
	s.TypeUID = c.UID*100 + activity
}
