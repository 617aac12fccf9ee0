package trace

import (
	"strings"
	"testing"

	"github.com/owlbpf/owl/internal/uprobe"
)

func TestParse(t *testing.T) {
	p, err := Parse(`r:./app:work (arg1 == 500 || !(retval > -2) && arg2 != 0x10) "n=%lld %s %%%x", arg1, arg2, retval`)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Return || p.Target != (uprobe.Spec{Target: "./app", Func: "work"}) {
		t.Errorf("probe %+v", p)
	}
	if got := p.Format.Lits; len(got) != 4 || got[0] != "n=" || got[1] != " " || got[2] != " %" || got[3] != "" {
		t.Errorf("literals %q", got)
	}
	if v := p.Format.Verbs; len(v) != 3 || v[0].Bits != 64 || v[0].Conv != 'd' || v[1].Conv != 's' || v[2].Conv != 'x' || v[2].Bits != 32 {
		t.Errorf("verbs %+v", v)
	}
	if len(p.Args) != 3 || p.Args[2] != (Operand{Ret: true, N: 1}) || p.Args[1].String() != "arg2" {
		t.Errorf("args %+v", p.Args)
	}
	// || binds looser than &&.
	if p.Filter.Op != "||" || p.Filter.R.Op != "&&" || p.Filter.R.L.Op != "!" {
		t.Errorf("filter tree %+v", p.Filter)
	}
	for s, want := range map[string]Probe{
		`c:open`:                                {Target: uprobe.Spec{Target: "c", Func: "open"}},
		`p:c:open "%s", arg1`:                   {Target: uprobe.Spec{Target: "c", Func: "open"}},
		`r:c:open ret=%d, retval`:               {Return: true, Target: uprobe.Spec{Target: "c", Func: "open"}},
		`work (arg1)`:                           {Target: uprobe.Spec{Func: "work"}},
		`./app:Shape::area "%d", arg1`:          {Target: uprobe.Spec{Target: "./app", Func: "Shape::area"}},
		`r:./g:main.f "%d %e", retval, retval2`: {Return: true, Target: uprobe.Spec{Target: "./g", Func: "main.f"}},
	} {
		p, err := Parse(s)
		if err != nil || p.Return != want.Return || p.Target != want.Target {
			t.Errorf("%s: %+v, %v", s, p, err)
		}
	}
	if p, _ := Parse(`r:c:open ret=%d, retval`); p.Format.Lits[0] != "ret=" || len(p.Args) != 1 {
		t.Errorf("unquoted format: %+v", p)
	}
	for _, s := range []string{"", `c:open "%d"`, `c:open "%d", arg1, arg2`, `c:open (`, `c:open ()`, `c:open (arg1 ==)`,
		`c:open "%q", arg1`, `c:open "%lls", arg1`, `c:open "%d", arg0`, `c:open "%d", arg10`, `c:open "%d", foo`,
		`p:c:open "%d", retval`, `u:lib:probe`, `c:f+0x10`, `c:f(int x)`, `c:open "%s %s %s %s %s", arg1, arg1, arg1, arg1, arg1`,
		`c:open (arg1 == "x")`, "c:open\n", `c:open (1 2)`, `c:open (arg1 == -)`, `c:open "\q"`} {
		if p, err := Parse(s); err == nil {
			t.Errorf("%q parsed: %+v", s, p)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error of several lines: %v", s, err)
		}
	}
}

// The compiled filter means what the expression says, as the kernel's
// evaluator runs it (eval mirrors trace.bpf.c's filter_step).
func TestFilterCompiles(t *testing.T) {
	where := func(o Operand) (slot, error) {
		if o.Ret {
			return slot{idx: uregWords + o.N - 1, words: 1}, nil
		}
		return slot{idx: o.N - 1, words: 1}, nil
	}
	for _, c := range []struct {
		filter string
		args   []int64
		ret    int64
		want   bool
	}{
		{"(arg1 == 500)", []int64{500}, 0, true},
		{"(arg1 == 500)", []int64{499}, 0, false},
		{"(arg1 < 0)", []int64{-3}, 0, true},
		{"(retval)", nil, 0, false},
		{"(!retval)", nil, 0, true},
		{"(arg1 > 1 && arg2 <= 2 || retval == -1)", []int64{2, 3}, -1, true},
		{"(arg1 > 1 && (arg2 <= 2 || retval == -1))", []int64{1, 0}, -1, false},
		{"(arg1 != arg2)", []int64{4, 4}, 0, false},
		{"(arg1 >= 0xffffffffffffffff)", []int64{-1}, 0, true},
	} {
		e, err := ParseFilter(c.filter)
		if err != nil {
			t.Fatalf("%s: %v", c.filter, err)
		}
		ops, err := compile(e, where)
		if err != nil {
			t.Fatalf("%s: %v", c.filter, err)
		}
		var w [nWords]uint64
		for i, a := range c.args {
			w[i] = uint64(a)
		}
		w[uregWords] = uint64(c.ret)
		if got := eval(ops, &w); got != c.want {
			t.Errorf("%s with %v, %d: %v", c.filter, c.args, c.ret, got)
		}
	}
	deep := "(" + strings.Repeat("(arg1 == 1 || ", 9) + "1" + strings.Repeat(")", 10)
	e, err := ParseFilter(deep)
	if err == nil {
		if _, err = compile(e, where); err == nil {
			t.Errorf("%s compiled beyond the kernel evaluator's stack", deep)
		}
	}
}

// Formatting of the words the kernel sends: C's widths, Go's sizes,
// strings cut and unreadable, errors.
func TestMessage(t *testing.T) {
	p, err := Parse(`r:c:f "%d %u %x %hd %c %ld %p [%s] [%s] [%s]", arg1, arg1, arg1, arg1, arg2, arg1, arg3, arg4, arg5, arg6`)
	if err != nil {
		t.Fatal(err)
	}
	fn := uprobe.Func{Name: "f"}
	ts, err := plan(0, p, []uprobe.Func{fn}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var r record
	r.words[0] = 0xffffffff // an int of -1 in a 64-bit register
	r.words[1] = 'A'
	r.words[2] = 0x1000
	r.words[3], r.words[4], r.words[5] = 0x10, 0, 0x20
	r.strs[0].data = []byte("hello\n")
	r.strs[1].data = nil
	r.strs[2].flags, r.strs[2].data = strTrunc, []byte("abc")
	msg, vals := ts[0].message(nil, nil, &r, nil)
	if want := `-1 4294967295 ffffffff -1 A 4294967295 0x1000 [hello\x0a] [(null)] [abc...]`; string(msg) != want {
		t.Errorf("message %q, want %q", msg, want)
	}
	if len(vals) != 10 || vals[0] != int64(-1) || vals[7] != "hello\n" || vals[8] != nil || vals[9] != "abc..." {
		t.Errorf("values %#v", vals)
	}

	// Go: int is 64 bits; an error is nil, or its type and message.
	p, _ = Parse(`r:./g:main.f "%d %e %e", retval, retval2, arg1`)
	gfn := uprobe.Func{Name: "main.f", Symbol: "main.f", Path: "./g", Go: true}
	sig := uprobe.GoSignature{
		Params:  []uprobe.GoParam{{Name: "e", Type: "error", Kind: uprobe.GoInterface, Size: 16, Words: 2}},
		Results: []uprobe.GoParam{{Name: "~r0", Type: "int", Kind: uprobe.GoWord, Size: 8, Words: 1}, {Name: "~r1", Type: "error", Kind: uprobe.GoInterface, Size: 16, Words: 2}},
	}
	ts, err = plan(0, p, []uprobe.Func{gfn}, map[string]map[string]uprobe.GoSignature{"./g": {"main.f": sig}}, false)
	if err != nil {
		t.Fatal(err)
	}
	r = record{}
	r.words[uregWords] = 1 << 40
	r.words[uregWords+1] = 0x5000 // a non-nil itab
	r.strs[0].data = []byte("boom")
	msg, _ = ts[0].message(nil, nil, &r, nil)
	if want := `1099511627776 error(?) nil`; string(msg) != want {
		t.Errorf("Go message %q, want %q", msg, want)
	}
	b, v := appendError(nil, 1, 2, 0, []byte("boom"), &goTypes{cache: map[uint64]string{2: "*errors.errorString"}})
	if string(b) != `error(*errors.errorString) "boom"` || v.(*ErrorValue).Msg != "boom" {
		t.Errorf("error %q %+v", b, v)
	}
	if b, _ = appendError(nil, 1, 2, 0, []byte("x"), &goTypes{cache: map[uint64]string{2: "*os.PathError"}}); string(b) != `error(*os.PathError)` {
		t.Errorf("error %q", b)
	}
	// Layout errors: a string printed as an integer, floats, beyond the
	// registers.
	for _, s := range []string{`p:./g:main.f "%d", arg1`, `p:./g:main.f "%d", arg3`} {
		p, _ := Parse(s)
		if _, err := plan(0, p, []uprobe.Func{gfn}, map[string]map[string]uprobe.GoSignature{"./g": {"main.f": sig}}, false); err == nil {
			t.Errorf("%s planned", s)
		}
	}
	p, _ = Parse(`p:./g:main.f "%d %d %s %s %s %s", arg1, arg2, arg3, arg4, arg5, arg6`)
	if _, err := plan(0, p, []uprobe.Func{gfn}, nil, false); err == nil || !strings.Contains(err.Error(), "beyond the 9") {
		t.Errorf("stripped, 10 words: %v", err)
	}
}

func FuzzTraceSpec(f *testing.F) {
	for _, s := range []string{
		`r:./app:work "%d -> %d", arg1, retval`,
		`p:./app:work (arg1 == 500) "%d", arg1`,
		`c:open "%s", arg1`,
		`r:c:open ret=%d, retval`,
		`r:./g:main.f (!(arg1 < -1) || retval2 >= 0x10) "%s %e %hhx %%", arg1, retval2, arg3`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error of several lines: %v", err)
			}
			return
		}
		if len(p.Args) != len(p.Format.Verbs) || (len(p.Format.Verbs) > 0 && len(p.Format.Lits) != len(p.Format.Verbs)+1) {
			t.Fatalf("%q: %d args, %d verbs, %d literals", s, len(p.Args), len(p.Format.Verbs), len(p.Format.Lits))
		}
		for _, fn := range []uprobe.Func{{Name: "c"}, {Name: "g", Go: true}} {
			plan(0, p, []uprobe.Func{fn}, nil, false)
		}
	})
}
