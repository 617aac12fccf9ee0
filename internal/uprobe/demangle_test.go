package uprobe

import "testing"

// C++ and Rust (legacy and v0) names match by their demangled forms, with
// or without parameters, and show demangled; other names as they are.
func TestMatchName(t *testing.T) {
	for _, c := range []struct {
		raw, glob, shown string
		match            bool
	}{
		{"_ZNK5Shape4areaEv", "Shape::*", "Shape::area() const", true},
		{"_ZNK5Shape4areaEv", "Shape::area", "Shape::area() const", true},
		{"_ZNK5Shape4areaEv", "*const", "Shape::area() const", true},
		{"_ZNK5Shape4areaEv", "_ZNK5Shape*", "Shape::area() const", true},
		{"_ZN5Shape5scaleEd", "Shape::area*", "Shape::scale(double)", false},
		{"_ZN4core3fmt5write17h0123456789abcdefE", "core::fmt::*", "core::fmt::write", true},
		{"_RNvCs1234_7mycrate3foo", "mycrate::foo", "mycrate::foo", true},
		{"main.work", "main.*", "main.work", true},
		{"malloc", "m*", "malloc", true},
		{"_Znot_really_mangled", "_Znot*", "_Znot_really_mangled", true},
	} {
		shown, ok := matchName(Spec{Func: c.glob}, c.raw)
		if ok != c.match || (ok && shown != c.shown) {
			t.Errorf("%q against %q: %q, %v; want %q, %v", c.raw, c.glob, shown, ok, c.shown, c.match)
		}
	}
}
