package syms

import (
	"os"
	"reflect"
	"syscall"
	"testing"
)

func TestLRU(t *testing.T) {
	l := newLRU[string, int](2)
	l.put("a", 1)
	l.put("b", 2)
	if v, ok := l.get("a"); !ok || v != 1 {
		t.Errorf("get(a) = %d, %v", v, ok)
	}
	l.put("c", 3) // drops b, the least recently used
	if got, want := l.keys(), []string{"c", "a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
	if _, ok := l.peek("b"); ok {
		t.Error("b kept")
	}
	l.peek("a") // does not count as a use
	l.put("c", 4)
	l.put("d", 5)
	if got, want := l.keys(), []string{"d", "c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
	if v, _ := l.get("c"); v != 4 {
		t.Errorf("c = %d, want 4", v)
	}
	l.remove("c")
	l.remove("zz")
	if l.len() != 1 {
		t.Errorf("len = %d, want 1", l.len())
	}

	one := newLRU[int, int](0)
	one.put(1, 1)
	one.put(2, 2)
	if got := one.keys(); !reflect.DeepEqual(got, []int{2}) {
		t.Errorf("size 0: keys = %v, want the last one", got)
	}
}

// TestCacheLRU bounds the cache of ELF tables: a file dropped is parsed
// again when next loaded, one recently used is kept.
func TestCacheLRU(t *testing.T) {
	dir := t.TempDir()
	var bins []string
	for i, flags := range [][]string{{"-fPIE", "-pie"}, {"-fno-pie", "-no-pie"}, {"-fPIE", "-pie", "-rdynamic"}} {
		bins = append(bins, buildC(t, dir, "owl-lru"+string(rune('a'+i)), flags...))
	}
	c := NewCacheSize(2)
	load := func(bin string) *table {
		t.Helper()
		st, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		m := Mapping{Path: bin, Inode: st.Sys().(*syscall.Stat_t).Ino} // a key also without build-id
		tab, err := c.load(m, []string{bin})
		if err != nil {
			t.Fatal(err)
		}
		return tab
	}
	a, b := load(bins[0]), load(bins[1])
	if a == b {
		t.Fatal("two files share a table")
	}
	if load(bins[0]) != a {
		t.Error("a loaded twice")
	}
	load(bins[2]) // drops b
	if c.Len() != 2 {
		t.Errorf("cache holds %d tables, want 2", c.Len())
	}
	if load(bins[0]) != a {
		t.Error("a, recently used, was dropped")
	}
	if load(bins[1]) == b {
		t.Error("b, least recently used, was kept")
	}
	if c.Len() != 2 {
		t.Errorf("cache holds %d tables, want 2", c.Len())
	}
}
