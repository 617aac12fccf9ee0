package e2e

import (
	"testing"
)

// recorder is a testing.TB that notes the first Fatalf or Skipf instead of
// ending the test, so that what Need does can be checked.
type recorder struct {
	testing.TB
	first string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(string, ...any) {
	if r.first == "" {
		r.first = "fail"
	}
}

func (r *recorder) Skipf(string, ...any) {
	if r.first == "" {
		r.first = "skip"
	}
}

// Need finds programs in PATH and files by path; a missing one fails the
// test under OWL_E2E=require on the host only.
func TestNeed(t *testing.T) {
	for _, c := range []struct {
		what, e2e, programs string
		want                string // "" (found), "fail" or "skip"
	}{
		{"sh", "require", "", ""},
		{"/proc/self/exe", "require", "", ""},
		{"owl-no-such-program", "require", "", "fail"},
		{"/owl/no/such/file", "require", "", "fail"},
		{"owl-no-such-program", "", "", "skip"},
		{"owl-no-such-program", "require", "/tests/programs", "skip"}, // a qemu guest
		{"/owl/no/such/file", "require", "/tests/programs", "skip"},
	} {
		t.Setenv("OWL_E2E", c.e2e)
		t.Setenv(ProgramsEnv, c.programs)
		r := &recorder{TB: t}
		p := Need(r, c.what)
		if r.first != c.want || (c.want == "") != (p != "") {
			t.Errorf("Need(%q) with OWL_E2E=%q %s=%q: %q, path %q; want %q", c.what, c.e2e, ProgramsEnv, c.programs, r.first, p, c.want)
		}
	}
}
