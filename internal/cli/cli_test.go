package cli

import (
	"errors"
	"testing"

	"github.com/owlbpf/owl/internal/probe"
)

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts("22, 80,65535")
	if err != nil || len(got) != 3 || got[2] != 65535 {
		t.Errorf("got %v %v", got, err)
	}
	for _, bad := range []string{"0", "65536", "-1", "x", "80,,81"} {
		if _, err := ParsePorts(bad); ExitCode(err) != 2 {
			t.Errorf("%q: got %v, want a usage error", bad, err)
		}
	}
}

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{Usagef("bad"), 2},
		{&probe.NoHookError{Tool: "x"}, 2},
		{errors.New(`unknown command "x" for "owl"`), 2},
		{Fail(errors.New("ring buffer broke")), 1},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Common{{Output: "xml"}, {Output: "text", PID: -3}, {Output: "text", PID: 1 << 30}, {Output: "json", Duration: -1}} {
		if err := c.Validate(); ExitCode(err) != 2 {
			t.Errorf("%+v: got %v, want a usage error", c, err)
		}
	}
	c := Common{Output: "json", PID: 1}
	if err := c.Validate(); err != nil || c.Format != "json" {
		t.Errorf("valid flags: %v", err)
	}
}
