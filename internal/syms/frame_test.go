package syms

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFrame(t *testing.T) {
	for _, c := range []struct {
		f    Frame
		want string
	}{
		{Frame{Symbol: "vfs_read", Offset: 0x1a}, "vfs_read+0x1a"},
		{Frame{Symbol: "main", Module: "cat"}, "main+0x0"},
		{Frame{Symbol: Unknown, Module: "libc.so.6"}, "[unknown] (libc.so.6)"},
		{Frame{Symbol: Unknown}, "[unknown]"},
		{Frame{}, "[unknown]"},
		{Frame{Symbol: "K.leaf", Lang: "python", File: "/srv/app.py", Line: 12}, "K.leaf (/srv/app.py:12)"},
		{Frame{Symbol: Unknown, Lang: "python"}, "[unknown] (python)"},
	} {
		if got := c.f.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.f, got, c.want)
		}
	}
	b, _ := json.Marshal(Frame{Addr: 1, Symbol: "f", Offset: 2, Module: "m"})
	if string(b) != `{"addr":"0x1","symbol":"f","offset":2,"module":"m"}` {
		t.Errorf("json: %s", b)
	}
}

// Addresses above 2^53 are hex strings in JSON, which float64 readers (jq
// 1.6) cannot round; names a user chose are escaped; JSON round-trips.
func TestFrameJSON(t *testing.T) {
	f := Frame{Addr: 0xffffffff81234567, Symbol: "do_sys_open", Offset: 0x17, Module: ""}
	b, err := json.Marshal([]Frame{f})
	if err != nil || string(b) != `[{"addr":"0xffffffff81234567","symbol":"do_sys_open","offset":23,"module":""}]` {
		t.Errorf("json: %s, %v", b, err)
	}
	var m []map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m[0]["addr"] != "0xffffffff81234567" {
		t.Errorf("decoded as %v (%v), want the address as a hex string", m, err)
	}
	py := Frame{Addr: 0x7f00, Symbol: "leaf", Lang: "python", File: "/tmp/a\nb.py", Line: 3}
	if b, _ := json.Marshal(py); string(b) != `{"addr":"0x7f00","symbol":"leaf","offset":0,"module":"","lang":"python","file":"/tmp/a\\x0ab.py","line":3}` {
		t.Errorf("json: %s", b)
	}
	for _, want := range []Frame{f, {Addr: 1<<64 - 1, Symbol: "main\n\x1b[31m\xff", Offset: 1, Module: "evil\n.so"}, {}, py} {
		b, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		var got Frame
		if err := json.Unmarshal(b, &got); err != nil || got != want {
			t.Errorf("%s: decoded %+v (%v), want %+v", b, got, err, want)
		}
	}
	b, _ = json.Marshal(Frame{Addr: 0x7f0000001000, Symbol: "main\n\x1b[31m\xff", Module: "evil\\.so"})
	if want := `{"addr":"0x7f0000001000","symbol":"main\\x0a\\x1b[31m\\xff","offset":0,"module":"evil\\x5c.so"}`; string(b) != want {
		t.Errorf("json: %s, want %s", b, want)
	}
	if s := (Frame{Symbol: "f\n", Module: "m"}).String(); s != `f\x0a+0x0` {
		t.Errorf("String: %q, want the newline escaped", s)
	}
	if s := (Frame{Module: "a\x1bb"}).String(); s != `[unknown] (a\x1bb)` {
		t.Errorf("String: %q, want ESC escaped", s)
	}
}

func TestParseMaps(t *testing.T) {
	in := `55d5c1a00000-55d5c1a02000 r--p 00000000 08:01 1234                       /usr/bin/cat
55d5c1a02000-55d5c1a06000 r-xp 00002000 fd:1a 1234                       /opt/my app/bin (deleted)
7f0000000000-7f0000001000 rwxp 00000000 00:00 0 
7ffd1000000-7ffd1021000 rw-p 00000000 00:00 0                          [stack]
`
	maps, err := ParseMaps(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 4 {
		t.Fatalf("%d mappings: %+v", len(maps), maps)
	}
	m := maps[1]
	if m.Start != 0x55d5c1a02000 || m.End != 0x55d5c1a06000 || m.Offset != 0x2000 || m.Major != 0xfd || m.Minor != 0x1a ||
		m.Inode != 1234 || m.Path != "/opt/my app/bin (deleted)" || !m.Exec() || !m.Deleted() || !m.File() || m.Module() != "bin" {
		t.Errorf("deleted mapping: %+v", m)
	}
	if maps[0].Exec() || maps[0].Module() != "cat" {
		t.Errorf("cat: %+v", maps[0])
	}
	if maps[2].Path != "" || maps[2].File() || !maps[2].Exec() {
		t.Errorf("anonymous: %+v", maps[2])
	}
	if maps[3].File() || maps[3].Module() != "[stack]" {
		t.Errorf("stack: %+v", maps[3])
	}
	if _, err := ParseMaps(strings.NewReader("zz-10 r--p 0 0:0 0\n")); err == nil {
		t.Error("bad line accepted")
	}
}
