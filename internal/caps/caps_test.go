package caps

import (
	"errors"
	"os"
	"testing"
)

// Tracing needs CAP_BPF and CAP_PERFMON (5.8+) or CAP_SYS_ADMIN, which
// covers both and is what older kernels want; other capabilities are
// named with what they are for.
func TestCheck(t *testing.T) {
	base := Need{Set: Base}
	ptrace := Need{Set: Base | SysPtrace, Why: map[Set]string{SysPtrace: "to read process 181"}}
	for _, tc := range []struct {
		need Need
		have Set
		old  bool
		want string // "" for none
	}{
		{base, 0, false, "missing capabilities CAP_BPF, CAP_PERFMON (needs CAP_BPF, CAP_PERFMON)"},
		{base, SysAdmin, false, ""},
		{Need{Set: SysAdmin}, SysAdmin, true, ""},
		{base, BPF | Perfmon, false, ""},
		{base, BPF, false, "missing capability CAP_PERFMON (needs CAP_BPF, CAP_PERFMON)"},
		{Need{Set: SysAdmin}, BPF | Perfmon, true, "missing capability CAP_SYS_ADMIN (needs CAP_SYS_ADMIN)"}, // before 5.8 these bits mean nothing
		{ptrace, Base, false, "missing capability CAP_SYS_PTRACE to read process 181 (needs CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE)"},
		{ptrace, SysAdmin, false, "missing capability CAP_SYS_PTRACE to read process 181 (needs CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE)"},
		{ptrace, Base | SysPtrace | Syslog, false, ""},
	} {
		err := check(tc.need, tc.have, tc.old)
		got := ""
		if err != nil {
			got = err.Error()
			if !errors.Is(err, ErrMissing) {
				t.Errorf("%v: not ErrMissing", err)
			}
		}
		if got != tc.want {
			t.Errorf("need %v, have %v (old %v): %q, want %q", tc.need.Set, tc.have, tc.old, got, tc.want)
		}
	}
	if os.Geteuid() == 0 {
		if have, _ := Effective(); have.Has(Base|SysPtrace|Syslog) && !have.Has(SysResource) == MemcgAccounting() {
			if err := Require(SysPtrace|Syslog, 1); err != nil {
				t.Errorf("as root: %v", err)
			}
		}
	}
}

func TestNames(t *testing.T) {
	if got := (SysPtrace | BPF | Syslog | Perfmon | DacReadSearch).String(); got != "CAP_BPF, CAP_PERFMON, CAP_DAC_READ_SEARCH, CAP_SYS_PTRACE, CAP_SYSLOG" {
		t.Errorf("names: %q", got)
	}
}

func TestKernelVersion(t *testing.T) {
	for _, tc := range []struct {
		release      string
		major, minor int
		ok           bool
	}{
		{"6.18.0", 6, 18, true},
		{"6.1.0-31-amd64", 6, 1, true},
		{"5.10.0-rc1+", 5, 10, true},
		{"5.11", 5, 11, true},
		{"4.19.0+", 4, 19, true},
		{"junk", 0, 0, false},
	} {
		major, minor, ok := KernelVersion(tc.release)
		if major != tc.major || minor != tc.minor || ok != tc.ok {
			t.Errorf("%q: %d.%d %v", tc.release, major, minor, ok)
		}
	}
}
