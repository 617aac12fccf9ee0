package event

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

func TestComm(t *testing.T) {
	var c Comm
	copy(c[:], "sshd")
	if c.String() != "sshd" || string(c.Bytes()) != "sshd" {
		t.Errorf("got %q", c.String())
	}
	copy(c[:], "0123456789abcdef")
	if c.String() != "0123456789abcdef" {
		t.Errorf("full comm without NUL: %q", c.String())
	}
	b, _ := json.Marshal(struct{ C Comm }{c})
	if string(b) != `{"C":"0123456789abcdef"}` {
		t.Errorf("json: %s", b)
	}
}

func TestAddrs(t *testing.T) {
	a, b := [16]byte{127, 0, 0, 1}, [16]byte{10, 1, 2, 3}
	f, x, y := Addrs(2, &a, &b)
	if f != 4 || x.String() != "127.0.0.1" || y.String() != "10.1.2.3" {
		t.Errorf("v4: %d %v %v", f, x, y)
	}
	a6 := [16]byte{15: 1}
	f, x, _ = Addrs(10, &a6, &a6)
	if f != 6 || x.String() != "::1" {
		t.Errorf("v6: %d %v", f, x)
	}
	if f, x, _ = Addrs(1, &a, &b); f != 0 || x.IsValid() {
		t.Errorf("AF_UNIX: %d %v", f, x)
	}
}

func TestEscape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"sshd", "sshd"},
		{"", ""},
		{"kworker/0:1 x", "kworker/0:1 x"},
		{"a\n9999   fake", `a\x0a9999   fake`},
		{"\x1b[31mred", `\x1b[31mred`},
		{`back\slash`, `back\x5cslash`},
		{"del\x7f", `del\x7f`},
		{"bad\xff\xfeutf8", `bad\xff\xfeutf8`},
		{"cut\xe2\x82", `cut\xe2\x82`},         // a truncated 3-byte character
		{"héllo wörld ✓", "héllo wörld ✓"},     // printable UTF-8 stays
		{"rlo\u202etxt", `rlo\xe2\x80\xaetxt`}, // RIGHT-TO-LEFT OVERRIDE
		{"nbsp\u00a0", `nbsp\xc2\xa0`},
		{"\ufffd", "\ufffd"}, // a real U+FFFD is printable
	} {
		got := string(AppendEscaped(nil, []byte(c.in)))
		if got != c.want {
			t.Errorf("AppendEscaped(%q) = %q, want %q", c.in, got, c.want)
		}
		back, err := Unescape(nil, []byte(got))
		if err != nil || string(back) != c.in {
			t.Errorf("Unescape(%q) = %q, %v; want %q", got, back, err, c.in)
		}
	}
	// Every byte pair round-trips, and the escaped form has no control
	// bytes and is valid UTF-8.
	for i := range 256 {
		for j := range 256 {
			in := []byte{byte(i), byte(j), 'x'}
			esc := AppendEscaped(nil, in)
			if !utf8.Valid(esc) || bytes.ContainsFunc(esc, func(r rune) bool { return !unicode.IsPrint(r) }) {
				t.Fatalf("%q escaped to %q", in, esc)
			}
			if back, err := Unescape(nil, esc); err != nil || !bytes.Equal(back, in) {
				t.Fatalf("%q escaped to %q, back to %q (%v)", in, esc, back, err)
			}
		}
	}
	for _, bad := range []string{`\`, `\x`, `\x1`, `\y12`, `\xzz`} {
		if _, err := Unescape(nil, []byte(bad)); err == nil {
			t.Errorf("Unescape(%q) accepted", bad)
		}
	}
}

func TestCommEscaped(t *testing.T) {
	var c Comm
	copy(c[:], "a\n9 fake\x1b[31m\xff\\")
	if got := string(c.Append(nil)); got != `a\x0a9 fake\x1b[31m\xff\x5c` {
		t.Errorf("Append: %q", got)
	}
	if got := string(c.AppendMax(nil, 3)); got != `a\x0a9` {
		t.Errorf("AppendMax 3: %q, want the first 3 bytes escaped", got)
	}
	var u Comm
	copy(u[:], "été")
	if got := string(u.AppendMax(nil, 4)); got != "ét" {
		t.Errorf("AppendMax 4 of %q: %q, want whole characters", u.String(), got)
	}
	// JSON: the same escapes inside the string; decoding gives back the
	// bytes, which encoding/json's U+FFFD replacement would lose.
	b, err := json.Marshal(struct{ C Comm }{c})
	if err != nil || string(b) != `{"C":"a\\x0a9 fake\\x1b[31m\\xff\\x5c"}` {
		t.Errorf("json: %s %v", b, err)
	}
	var back struct{ C Comm }
	if err := json.Unmarshal(b, &back); err != nil || back.C != c {
		t.Errorf("json round trip: %q (%v), want %q", back.C.String(), err, c.String())
	}
	if err := json.Unmarshal([]byte(`{"C":"0123456789abcdefg"}`), &back); err == nil {
		t.Error("a 17-byte comm was accepted")
	}
}

func TestTimeJSON(t *testing.T) {
	at := time.Date(2026, 11, 30, 10, 47, 35, 631464800, time.FixedZone("CET", 3600))
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{at, `"2026-11-30T09:47:35.631464800Z"`},
		{at.Truncate(time.Second), `"2026-11-30T09:47:35.000000000Z"`},
		{time.Unix(0, 1).In(time.Local), `"1970-01-01T00:00:00.000000001Z"`},
	} {
		b, err := json.Marshal(Time{c.t})
		if err != nil || string(b) != c.want {
			t.Errorf("%v: %s (%v), want %s", c.t, b, err, c.want)
		}
		var back Time
		if err := json.Unmarshal(b, &back); err != nil || !back.Equal(c.t) {
			t.Errorf("%s: decoded %v (%v), want %v", b, back, err, c.t)
		}
	}
	// Fixed width: lines sort as text in time order.
	a, _ := json.Marshal(Time{at})
	b, _ := json.Marshal(Time{at.Add(400 * time.Nanosecond)}) // .6314652: 7 digits with time.Time
	if len(a) != len(b) || string(a) >= string(b) {
		t.Errorf("%s and %s do not sort as text", a, b)
	}
	if _, err := json.Marshal(Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("year 10000 accepted")
	}
	// As a field, with time.Time's methods at hand.
	e := struct {
		Time Time `json:"time"`
	}{Time{at}}
	if b, _ := json.Marshal(e); string(b) != `{"time":"2026-11-30T09:47:35.631464800Z"}` || e.Time.Unix() != at.Unix() {
		t.Errorf("field: %s", b)
	}
}

// Task's time prints in the fixed format where Task is embedded in an
// event, its fields first (a MarshalJSON on Task would be promoted to the
// event and hide the event's own fields).
func TestTaskJSON(t *testing.T) {
	e := struct {
		Task
		X int `json:"x"`
	}{Task: Task{Time: Time{time.Date(2026, 11, 30, 9, 47, 35, 631464800, time.UTC)}, PID: 1, TID: 2, UID: 3, CgroupID: 4, MntNS: 5}, X: 6}
	copy(e.Comm[:], "sh")
	b, err := json.Marshal(&e)
	want := `{"time":"2026-11-30T09:47:35.631464800Z","pid":1,"tid":2,"uid":3,"comm":"sh","cgroup_id":4,"mntns_id":5,"x":6}`
	if err != nil || string(b) != want {
		t.Errorf("got %s (%v), want %s", b, err, want)
	}
}
