package event

import (
	"encoding/json"
	"testing"
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
