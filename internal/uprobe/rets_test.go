package uprobe

import (
	"bytes"
	"debug/elf"
	"slices"
	"testing"
)

func TestRets(t *testing.T) {
	// push rbp; mov rbp,rsp; test edi,edi; js +2; pop rbp; ret; mov eax,-1; pop rbp; ret; int3
	amd64 := []byte{0x55, 0x48, 0x89, 0xe5, 0x85, 0xff, 0x78, 0x02, 0x5d, 0xc3, 0xb8, 0xff, 0xff, 0xff, 0xff, 0x5d, 0xc3, 0xcc}
	got, err := rets(bytes.NewReader(append(make([]byte, 0x40), amd64...)), elf.EM_X86_64, 0x40, uint64(len(amd64)))
	if err != nil || !slices.Equal(got, []uint64{0x40 + 9, 0x40 + 16}) {
		t.Errorf("amd64: %#x, %v", got, err)
	}
	// stp x29,x30,[sp,#-16]!; ret; nop; ret
	arm64 := []byte{0xfd, 0x7b, 0xbf, 0xa9, 0xc0, 0x03, 0x5f, 0xd6, 0x1f, 0x20, 0x03, 0xd5, 0xc0, 0x03, 0x5f, 0xd6}
	got, err = rets(bytes.NewReader(arm64), elf.EM_AARCH64, 0, uint64(len(arm64)))
	if err != nil || !slices.Equal(got, []uint64{4, 12}) {
		t.Errorf("arm64: %#x, %v", got, err)
	}
	for name, c := range map[string]struct {
		code []byte
		size uint64
	}{
		"no return":   {[]byte{0x55, 0xcc}, 2},
		"truncated":   {[]byte{0x48, 0x89}, 2},
		"beyond file": {[]byte{0xc3}, 2},
		"no size":     {[]byte{0xc3}, 0},
		"huge":        {[]byte{0xc3}, 1 << 40},
	} {
		if got, err := rets(bytes.NewReader(c.code), elf.EM_X86_64, 0, c.size); err == nil {
			t.Errorf("%s: %#x, want an error", name, got)
		}
	}
}
