package uprobe

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A Go function that calls others opens with a stack check: its entry
// probe goes past the check's branch (so morestack's jump back to the
// start does not count the call twice); a leaf without one keeps its
// first instruction. Built for both architectures the probes support.
func TestGoEntry(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "goapp.go")
	if err := os.WriteFile(src, []byte(bigFrameSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	goTool := tool(t, "go")
	for _, arch := range []string{"amd64", "arm64"} {
		for _, ldflags := range []string{"", "-s -w"} {
			bin := filepath.Join(dir, "goapp-"+arch)
			cmd := exec.Command(goTool, "build", "-ldflags="+ldflags, "-o", bin, src)
			cmd.Env = append(os.Environ(), "GO111MODULE=off", "CGO_ENABLED=0", "GOARCH="+arch)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", cmd, err, out)
			}
			leaf := resolve(t, bin+":main.work", Options{})[0]
			if leaf.Entry != leaf.Offset {
				t.Errorf("%s %q: leaf main.work: entry %#x, want its start %#x", arch, ldflags, leaf.Entry, leaf.Offset)
			}
			for _, name := range []string{"main.main", "main.deep"} {
				m := resolve(t, bin+":"+name, Options{})[0]
				if m.Entry <= m.Offset || m.Entry > m.Offset+32 {
					t.Fatalf("%s %q: %s: entry %#x, start %#x: want just past the stack check", arch, ldflags, name, m.Entry, m.Offset)
				}
				code := make([]byte, m.Entry-m.Offset)
				f, err := os.Open(bin)
				if err != nil {
					t.Fatal(err)
				}
				_, err = f.ReadAt(code, int64(m.Offset))
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				// The instruction before the entry is the branch to morestack.
				switch arch {
				case "amd64":
					n := len(code)
					if !(code[n-2] == 0x76 || (n >= 6 && code[n-6] == 0x0f && code[n-5] == 0x86)) {
						t.Errorf("amd64 %q: %s prologue % x does not end in JBE", ldflags, name, code)
					}
				case "arm64":
					if w := binary.LittleEndian.Uint32(code[len(code)-4:]); w&0xff00001f != 0x54000009 {
						t.Errorf("arm64 %q: %s prologue ends in %#08x, not B.LS", ldflags, name, w)
					}
				}
			}
		}
	}
}

// main.deep's 4 KiB frame makes the longer check: wrap-around first.
const bigFrameSrc = `package main

import "fmt"

//go:noinline
func work(i int) int { return i*2 + 1 }

//go:noinline
func deep(n int) int {
	var buf [4096]byte
	buf[n] = 1
	if n == 0 {
		return int(buf[0])
	}
	return deep(n-1) + int(buf[0])
}

func main() { fmt.Println(work(3) + deep(5)) }
`

func FuzzGoEntry(f *testing.F) {
	f.Add([]byte{0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x55})
	f.Add([]byte{0x90, 0x0b, 0x40, 0xf9, 0xff, 0x63, 0x30, 0xeb, 0x49, 0x02, 0x00, 0x54})
	f.Fuzz(func(t *testing.T, code []byte) {
		if n := stackCheckAMD64(code); n > uint64(len(code)) {
			t.Fatalf("amd64: entry %d past the %d bytes read", n, len(code))
		}
		if n := stackCheckARM64(code); n > uint64(len(code)) || n%4 != 0 {
			t.Fatalf("arm64: entry %d of %d bytes", n, len(code))
		}
	})
}
