package ocsf

import "testing"

func TestOf(t *testing.T) {
	i := func(v int64) *int64 { return &v }
	for _, c := range []struct {
		tool            string
		f               Fields
		class, activity int
		status, typeUID int
	}{
		{"tcpconnect", Fields{}, 4001, 1, StatusSuccess, 400101},
		{"tcpconnect", Fields{Errno: i(111)}, 4001, 5, StatusFailure, 400105},
		{"tcpconnect", Fields{Errno: i(113)}, 4001, 4, StatusFailure, 400104},
		{"tcpaccept", Fields{}, 4001, 1, StatusSuccess, 400101},
		{"tcpreset", Fields{}, 4001, 3, StatusSuccess, 400103},
		{"execsnoop", Fields{Ret: i(0)}, 1007, 1, StatusSuccess, 100701},
		{"execsnoop", Fields{Ret: i(-2)}, 1007, 1, StatusFailure, 100701},
		{"setuids", Fields{Ret: i(0)}, 1007, 5, StatusSuccess, 100705},
		{"capable", Fields{Verdict: "deny"}, 1007, 99, StatusFailure, 100799},
		{"pamsnoop", Fields{Event: "pam_authenticate", Result: "PAM_AUTH_ERR"}, 3002, 1, StatusFailure, 300201},
		{"pamsnoop", Fields{Event: "pam_close_session", Result: "PAM_SUCCESS"}, 3002, 2, StatusSuccess, 300202},
		{"modsnoop", Fields{}, 1002, 1, StatusSuccess, 100201},
		{"opensnoop", Fields{Errno: i(2)}, 1001, 14, StatusFailure, 100114},
		{"ucalls", Fields{}, 0, 99, StatusSuccess, 99},
	} {
		s := Of(c.tool, c.f)
		if s.UID != c.class || s.ActivityID != c.activity || s.StatusID != c.status || s.TypeUID != c.typeUID || s.Version != Version {
			t.Errorf("%s %+v: got %+v", c.tool, c.f, s)
		}
	}
}
