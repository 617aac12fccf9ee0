// Package uprobe turns user-space probe specifiers, [PATH_OR_LIB:]FUNC_GLOB
// as BCC's tools take them ("c:malloc", "/usr/bin/python3.11:PyObject_*",
// "./app:main.*", "work" with -p), into the functions to attach uprobes
// to: the file (a path, a library found as the dynamic loader would, or a
// process's own mappings), every matching function of its symbol tables or
// Go pclntab, C++ and Rust names demangled, and the file offsets uprobes
// want. It is shared by funccount, funclatency, trace and stackcount, and
// knows nothing of BPF.
package uprobe

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// Spec is a parsed [PATH_OR_LIB:]FUNC_GLOB ("c:malloc",
// "/usr/bin/python3.11:PyObject_*", "./app:main.*", "work").
type Spec struct {
	// Target is the path or library name as written; "" means the
	// executable of the -p process (an error without -p).
	Target string
	// Func is a glob in path.Match syntax over demangled and raw names,
	// except that * and ? also match '/' (Go package paths have them).
	Func string
}

// String is the specifier as Parse reads it back.
func (s Spec) String() string {
	if s.Target == "" {
		return s.Func
	}
	return s.Target + ":" + s.Func
}

// maxSpec bounds a specifier: a path is at most PATH_MAX (4096), and no
// symbol a linker writes is longer than a few KiB.
const maxSpec = 16 << 10

// Parse reads [PATH_OR_LIB:]FUNC_GLOB. The target ends at the last ':'
// that is not part of a C++ or Rust "::" scope, so "./app:Shape::*" is
// the file ./app and the glob Shape::*, and "Shape::*" alone is a glob in
// the -p process's executable. A function name never holds a lone ':',
// whereas a path may.
func Parse(s string) (Spec, error) {
	if s == "" {
		return Spec{}, errors.New("empty probe specifier: want [PATH_OR_LIB:]FUNCTION")
	}
	if len(s) > maxSpec {
		return Spec{}, fmt.Errorf("probe specifier of %d bytes: at most %d", len(s), maxSpec)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return Spec{}, fmt.Errorf("probe specifier %q holds a NUL byte", s)
	}
	sep := -1
	for i := 0; i < len(s); {
		if s[i] != ':' {
			i++
			continue
		}
		j := i
		for j < len(s) && s[j] == ':' {
			j++
		}
		switch j - i {
		case 1:
			sep = i
		case 2: // a scope, part of a name
		default:
			return Spec{}, fmt.Errorf("probe specifier %q: %d colons in a row; want PATH_OR_LIB:FUNCTION, with :: only inside C++ or Rust names", s, j-i)
		}
		i = j
	}
	sp := Spec{Func: s}
	if sep >= 0 {
		sp = Spec{Target: s[:sep], Func: s[sep+1:]}
	}
	if sp.Func == "" {
		return Spec{}, fmt.Errorf("probe specifier %q: no function after the ':'", s)
	}
	if _, err := path.Match(slashless(sp.Func), ""); err != nil {
		return Spec{}, fmt.Errorf("probe specifier %q: bad pattern %q (%v)", s, sp.Func, err)
	}
	return sp, nil
}

// Glob reports whether the function part has wildcards: a plain name
// that matches nothing is "no such function", a glob "no match".
func (s Spec) Glob() bool { return strings.ContainsAny(s.Func, `*?[\`) }

// Match reports whether name matches the function glob.
func (s Spec) Match(name string) bool {
	ok, _ := path.Match(slashless(s.Func), slashless(name))
	return ok
}

// slashless hides '/' from path.Match, whose * stops at it: Go names
// (github.com/x/y.F) and C++ operators (operator/) have slashes that a
// pattern's * should match as any other byte. A NUL cannot be in a
// pattern (Parse refuses it) nor in a symbol name (they are C strings).
func slashless(s string) string { return strings.ReplaceAll(s, "/", "\x00") }
