package pyframes

import (
	"debug/elf"
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/arch/x86/x86asm"
)

// tsd is where glibc keeps a thread's pthread_getspecific values, relative
// to the thread pointer: key k < 32 at first + k*size + data; larger keys in
// a block whose address is at second + k/32*8, at k%32*size + data.
type tsd struct {
	first, second, size, data uint32
}

// libcTSD reads the layout from the code of the libc's pthread_getspecific,
// rather than assuming one glibc's struct pthread.
func libcTSD(path string) (tsd, error) {
	if runtime.GOARCH != "amd64" {
		return tsd{}, fmt.Errorf("thread-specific data: decoding pthread_getspecific is implemented for x86-64 only, not %s", runtime.GOARCH)
	}
	ef, err := elf.Open(path)
	if err != nil {
		return tsd{}, err
	}
	defer ef.Close()
	addr := symbols(ef, "pthread_getspecific", "__pthread_getspecific")
	at := addr["pthread_getspecific"]
	if at == 0 {
		at = addr["__pthread_getspecific"]
	}
	if at == 0 {
		return tsd{}, errors.New("no pthread_getspecific")
	}
	code := make([]byte, 160)
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD && p.Vaddr <= at && at < p.Vaddr+p.Filesz {
			n := min(uint64(len(code)), p.Vaddr+p.Filesz-at)
			if _, err := p.ReadAt(code[:n], int64(at-p.Vaddr)); err != nil {
				return tsd{}, fmt.Errorf("read pthread_getspecific: %w", err)
			}
			code = code[:n]
			return decodeGetspecific(code)
		}
	}
	return tsd{}, errors.New("pthread_getspecific is in no loadable segment")
}

// decodeGetspecific follows x86-64 glibc's pthread_getspecific (2.34+, and
// the older ones of the same shape):
//
//	mov  %edi,%eax; add $IMM,%rax; shl $S,%rax; add %fs:0x10,%rax   first level
//	mov  DATA(%rax),%rdx                                            .data
//	mov  %fs:SECOND(,%rax,8),%rax; shl $S,%rdx                      second level
//
// giving first = IMM<<S, size = 1<<S.
func decodeGetspecific(code []byte) (tsd, error) {
	var t tsd
	var addImm, shift int64 = -1, -1
	var loaded bool // the first-level slot address is computed
	for off := 0; off < len(code); {
		in, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			break
		}
		off += in.Len
		switch in.Op {
		case x86asm.ADD:
			if imm, ok := in.Args[1].(x86asm.Imm); ok && addImm < 0 {
				addImm = int64(imm)
			}
			if m, ok := in.Args[1].(x86asm.Mem); ok && m.Segment == x86asm.FS && shift >= 0 {
				loaded = true
			}
		case x86asm.SHL:
			if imm, ok := in.Args[1].(x86asm.Imm); ok && shift < 0 {
				shift = int64(imm)
			}
		case x86asm.MOV:
			m, ok := in.Args[1].(x86asm.Mem)
			if !ok {
				continue
			}
			switch {
			case m.Segment == x86asm.FS && m.Index != 0 && m.Scale == 8 && t.second == 0:
				t.second = uint32(m.Disp)
			case m.Segment == 0 && loaded && t.data == 0 && m.Index == 0 && m.Disp > 0:
				t.data = uint32(m.Disp)
			}
		}
	}
	if addImm < 0 || shift < 0 || !loaded || t.data == 0 || t.second == 0 {
		return tsd{}, errors.New("pthread_getspecific: code of an unknown shape")
	}
	t.first = uint32(addImm << shift)
	t.size = 1 << shift
	if t.first > 1<<16 || t.size < 16 || t.data >= t.size {
		return tsd{}, fmt.Errorf("pthread_getspecific: implausible layout %+v", t)
	}
	return t, nil
}
