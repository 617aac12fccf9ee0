package usdt

import (
	"strings"
	"testing"
)

// FuzzFormat: any format and arguments parse, or fail with one line;
// what parses formats any values without panicking, and names no
// argument it was not given.
func FuzzFormat(f *testing.F) {
	for _, s := range []string{"%d %s:%d", "%lld %hhx %% %c %p %X", "%s%s%s%s", "x%", "%q", "100%%"} {
		f.Add(s, "arg0 arg1 arg2")
	}
	f.Add("%d", "arg11")
	f.Add("%u", "arg12")
	f.Fuzz(func(t *testing.T, format, args string) {
		fields := strings.Fields(args)
		fm, err := ParseFormat(format, fields)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of several lines: %v", err)
			}
			return
		}
		if fm.MaxArg() >= 12 || len(fm.Strings) > maxStrs {
			t.Fatalf("%q %q: arg%d, %d strings", format, args, fm.MaxArg(), len(fm.Strings))
		}
		vals := []uint64{0, 1, 1 << 63, ^uint64(0)}
		strs := make([][]byte, len(fm.Strings))
		for i := range strs {
			strs[i] = []byte("s\x00\n\xff")
		}
		fm.Append(nil, vals, strs)
		fm.Append(nil, nil, nil)
	})
}

// FuzzProbe: [TARGET:]PROVIDER:NAME splits into a provider and a name,
// both set, or fails with one line.
func FuzzProbe(f *testing.F) {
	for _, s := range []string{"python:gc__start", "/usr/bin/python3.11:python:function__return", "ruby-3.1:ruby:cmethod__entry", ":", "a::b", "a:b:", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		target, provider, name, err := ParseProbe(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of several lines: %v", err)
			}
			return
		}
		if provider == "" || name == "" || strings.Contains(provider+name, ":") {
			t.Errorf("%q: target %q provider %q name %q", s, target, provider, name)
		}
	})
}
