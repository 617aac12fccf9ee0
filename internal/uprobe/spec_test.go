package uprobe

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in           string
		target, glob string
	}{
		{"c:malloc", "c", "malloc"},
		{"/usr/bin/python3.11:PyObject_*", "/usr/bin/python3.11", "PyObject_*"},
		{"./app:main.*", "./app", "main.*"},
		{"work", "", "work"},
		{":work", "", "work"},
		{"./app:Shape::*", "./app", "Shape::*"},
		{"Shape::area", "", "Shape::area"},
		{"./app:ns::Shape::area() const", "./app", "ns::Shape::area() const"},
		{"/srv/a:b/app:main", "/srv/a:b/app", "main"}, // a path may hold a ':'
		{"libc.so.6:str*", "libc.so.6", "str*"},
		{"./goapp:github.com/x/y.(*T).M", "./goapp", "github.com/x/y.(*T).M"},
		{"c:[a-c]alloc", "c", "[a-c]alloc"},
	} {
		s, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if s.Target != c.target || s.Func != c.glob {
			t.Errorf("Parse(%q) = %+v, want target %q func %q", c.in, s, c.target, c.glob)
		}
	}
	for _, in := range []string{"", "c:", "./app:", "c:[", "a:::b", "x\x00y", "c:ma[lloc", strings.Repeat("a", maxSpec+1)} {
		if s, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", in, s)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q): error of several lines: %q", in, err)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		glob, name string
		want       bool
	}{
		{"malloc", "malloc", true},
		{"malloc", "__libc_malloc", false},
		{"*alloc", "__libc_malloc", true},
		{"main.*", "main.work", true},
		{"*.work", "github.com/x/y.work", true}, // * crosses '/'
		{"github.com/x/*", "github.com/x/y/z.F", true},
		{"Shape::*", "Shape::area() const", true},
		{"operator?", "operator/", true},
		{"a\\*b", "a*b", true},
		{"a\\*b", "axb", false},
	} {
		s := Spec{Func: c.glob}
		if got := s.Match(c.name); got != c.want {
			t.Errorf("%q matches %q: %v, want %v", c.glob, c.name, got, c.want)
		}
	}
}

// FuzzParse: any input parses or fails with one line, never panics, and
// what parses prints back as itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"c:malloc", "./app:Shape::*", "work", "/a:b/c:d", "a:::b", "c:[", ":x", "t:sched:sched_switch"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("Parse(%q): error of several lines: %q", in, err)
			}
			return
		}
		if s.Func == "" {
			t.Fatalf("Parse(%q) = %+v: empty function", in, s)
		}
		again, err := Parse(s.String())
		if err != nil || again != s {
			t.Fatalf("Parse(%q) = %+v, printed %q, parsed back as %+v (%v)", in, s, s.String(), again, err)
		}
		s.Match(in)
	})
}
