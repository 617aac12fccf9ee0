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
	} {
		if got := c.f.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.f, got, c.want)
		}
	}
	b, _ := json.Marshal(Frame{Addr: 1, Symbol: "f", Offset: 2, Module: "m"})
	if string(b) != `{"addr":1,"symbol":"f","offset":2,"module":"m"}` {
		t.Errorf("json: %s", b)
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
