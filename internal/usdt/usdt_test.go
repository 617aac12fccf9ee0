package usdt

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func TestParseArgsX86(t *testing.T) {
	for _, c := range []struct {
		in   string
		want ArgSpec
	}{
		{"8@%rax", ArgSpec{Size: 8, Kind: ArgReg, Reg: "rax", Scale: 1}},
		{"-4@%eax", ArgSpec{Size: 4, Signed: true, Kind: ArgReg, Reg: "rax", Scale: 1}},
		{"2@%r9w", ArgSpec{Size: 2, Kind: ArgReg, Reg: "r9", Scale: 1}},
		{"1@%r14b", ArgSpec{Size: 1, Kind: ArgReg, Reg: "r14", Scale: 1}},
		{"-4@%r12d", ArgSpec{Size: 4, Signed: true, Kind: ArgReg, Reg: "r12", Scale: 1}},
		{"1@%al", ArgSpec{Size: 1, Kind: ArgReg, Reg: "rax", Scale: 1}},
		{"1@%ah", ArgSpec{Size: 1, Kind: ArgReg, Reg: "rax", Shift: 8, Scale: 1}},
		{"1@%sil", ArgSpec{Size: 1, Kind: ArgReg, Reg: "rsi", Scale: 1}},
		{"8@-8(%rbp)", ArgSpec{Size: 8, Kind: ArgMem, Reg: "rbp", Off: -8, Scale: 1}},
		{"-4@-40(%rbp)", ArgSpec{Size: 4, Signed: true, Kind: ArgMem, Reg: "rbp", Off: -40, Scale: 1}},
		{"8@16(%rsp)", ArgSpec{Size: 8, Kind: ArgMem, Reg: "rsp", Off: 16, Scale: 1}},
		{"8@(%rsp)", ArgSpec{Size: 8, Kind: ArgMem, Reg: "rsp", Scale: 1}},
		{"8@0x10(%r12)", ArgSpec{Size: 8, Kind: ArgMem, Reg: "r12", Off: 16, Scale: 1}},
		{"-4@$5", ArgSpec{Size: 4, Signed: true, Kind: ArgConst, Off: 5, Scale: 1}},
		{"-4@$-1", ArgSpec{Size: 4, Signed: true, Kind: ArgConst, Off: -1, Scale: 1}},
		{"8@(%rax,%rdx,8)", ArgSpec{Size: 8, Kind: ArgMem, Reg: "rax", Index: "rdx", Scale: 8}},
		{"4@12(%rax,%rdx)", ArgSpec{Size: 4, Kind: ArgMem, Reg: "rax", Index: "rdx", Off: 12, Scale: 1}},
		{"-4@counter(%rip)", ArgSpec{Size: 4, Signed: true, Kind: ArgMem, Reg: "rip", Symbol: "counter", Scale: 1}},
		{"8@table+16(%rip)", ArgSpec{Size: 8, Kind: ArgMem, Reg: "rip", Symbol: "table", Off: 16, Scale: 1}},
		{"8@table(,%rax,8)", ArgSpec{Size: 8, Kind: ArgMem, Index: "rax", Symbol: "table", Scale: 8}},
		{"4@counter", ArgSpec{Size: 4, Kind: ArgMem, Symbol: "counter", Scale: 1}},
	} {
		got, err := ParseArg(c.in, elf.EM_X86_64)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %+v, want %+v", c.in, got, c.want)
		}
		if back, err := ParseArg(got.String(), elf.EM_X86_64); err != nil || !reflect.DeepEqual(back, got) {
			t.Errorf("%s: String() %q reads back as %+v (%v)", c.in, got.String(), back, err)
		}
	}
}

func TestParseArgsARM64(t *testing.T) {
	got, err := ParseArgs("8@x0 -4@w1 8@[sp, 16] -8@[x29, -8] 4@[x2] -4@5 8@#-3 8@sp", elf.EM_AARCH64)
	if err != nil {
		t.Fatal(err)
	}
	want := []ArgSpec{
		{Size: 8, Kind: ArgReg, Reg: "x0", Scale: 1},
		{Size: 4, Signed: true, Kind: ArgReg, Reg: "x1", Scale: 1},
		{Size: 8, Kind: ArgMem, Reg: "sp", Off: 16, Scale: 1},
		{Size: 8, Signed: true, Kind: ArgMem, Reg: "x29", Off: -8, Scale: 1},
		{Size: 4, Kind: ArgMem, Reg: "x2", Scale: 1},
		{Size: 4, Signed: true, Kind: ArgConst, Off: 5, Scale: 1},
		{Size: 8, Kind: ArgConst, Off: -3, Scale: 1},
		{Size: 8, Kind: ArgReg, Reg: "sp", Scale: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	for _, a := range got {
		if a.Reg != "" {
			if _, ok := regOffset(elf.EM_AARCH64, a.Reg); !ok {
				t.Errorf("%s: no register offset", a.Reg)
			}
		}
	}
}

func TestParseArgsBad(t *testing.T) {
	for _, s := range []string{"%rax", "3@%rax", "8@%xyz", "8@", "8@(%rax", "8@(%rax,%rdx,3)", "8@16(%rip)",
		"8@()", "8@$", "8@$x", "8@--1(%rax)", "8@1(%rax,%rip,8)", "8@a b(%rax)", "@%rax", "-@%rax", "8@%rip",
		"8@(%ah)", "8@%rax%rbx"} {
		if a, err := ParseArg(s, elf.EM_X86_64); err == nil {
			t.Errorf("%q: parsed as %+v, want an error", s, a)
		}
	}
	for _, s := range []string{"8@x31", "8@[x0", "8@q0", "8@[sp, x]", "8@x01"} {
		if a, err := ParseArg(s, elf.EM_AARCH64); err == nil {
			t.Errorf("arm64 %q: parsed as %+v, want an error", s, a)
		}
	}
	if _, err := ParseArgs(strings.Repeat("8@%rax ", 13), elf.EM_X86_64); err == nil {
		t.Error("13 arguments parsed")
	}
}

// note builds one ELF64 note.
func note(owner string, typ uint32, desc []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(owner)+1))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
	b = binary.LittleEndian.AppendUint32(b, typ)
	b = append(b, owner+"\x00"...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	b = append(b, desc...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func sdtDesc(loc, base, sema uint64, strs ...string) []byte {
	d := binary.LittleEndian.AppendUint64(nil, loc)
	d = binary.LittleEndian.AppendUint64(d, base)
	d = binary.LittleEndian.AppendUint64(d, sema)
	for _, s := range strs {
		d = append(d, s+"\x00"...)
	}
	return d
}

func TestParseNotes(t *testing.T) {
	sec := note("stapsdt", 3, sdtDesc(0x1129, 0x2004, 0x4010, "prov", "probe1", "-4@%eax 8@%rbx"))
	sec = append(sec, note("GNU", 3, []byte{1, 2, 3, 4})...)     // another owner
	sec = append(sec, note("stapsdt", 1, []byte{1, 2, 3, 4})...) // another type
	sec = append(sec, note("stapsdt", 3, sdtDesc(0x2000, 0, 0, "prov", "noargs"))...)
	got, err := ParseNotes(sec, binary.LittleEndian, 8)
	if err != nil {
		t.Fatal(err)
	}
	want := []Note{
		{Provider: "prov", Name: "probe1", Loc: 0x1129, Base: 0x2004, Semaphore: 0x4010, Args: "-4@%eax 8@%rbx"},
		{Provider: "prov", Name: "noargs", Loc: 0x2000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range [][]byte{
		sec[:len(sec)-3],
		note("stapsdt", 3, []byte{1, 2, 3}),
		note("stapsdt", 3, sdtDesc(1, 2, 3, "prov")),
		note("stapsdt", 3, sdtDesc(1, 2, 3, "", "name", "")),
	} {
		if n, err := ParseNotes(bad, binary.LittleEndian, 8); err == nil {
			t.Errorf("%x: parsed %+v, want an error", bad, n)
		}
	}
}

func FuzzNotes(f *testing.F) {
	f.Add(note("stapsdt", 3, sdtDesc(0x1129, 0x2004, 0x4010, "prov", "probe1", "-4@%eax 8@%rbx")), 8)
	f.Add(note("stapsdt", 3, sdtDesc(0, 0, 0, "p", "n")), 4)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0}, 8)
	f.Fuzz(func(t *testing.T, sec []byte, addrSize int) {
		notes, err := ParseNotes(sec, binary.LittleEndian, addrSize)
		if err == nil && len(notes) > len(sec)/12 {
			t.Errorf("%d notes out of %d bytes", len(notes), len(sec))
		}
		for _, n := range notes {
			if n.Provider == "" || n.Name == "" || strings.ContainsRune(n.Provider+n.Name+n.Args, 0) {
				t.Errorf("bad note %+v", n)
			}
		}
	})
}

func FuzzArgs(f *testing.F) {
	for _, s := range []string{"8@%rax -4@%eax 2@%r9w 1@%r14b", "8@-8(%rbp) 8@(%rsp) -4@$5 8@(%rax,%rdx,8)",
		"-4@counter(%rip) 8@table+16(,%rax,8)", "8@x0 8@[sp, 16] -4@5", "1@%ah 8@0x10(%r12)"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, x86 bool) {
		m := elf.EM_AARCH64
		if x86 {
			m = elf.EM_X86_64
		}
		args, err := ParseArgs(s, m)
		if err != nil {
			return
		}
		if len(args) > MaxArgs {
			t.Fatalf("%d args", len(args))
		}
		for _, a := range args {
			if a.Size != 1 && a.Size != 2 && a.Size != 4 && a.Size != 8 {
				t.Errorf("%q: size %d", s, a.Size)
			}
			if a.Scale != 1 && a.Scale != 2 && a.Scale != 4 && a.Scale != 8 {
				t.Errorf("%q: scale %d", s, a.Scale)
			}
			for _, r := range []string{a.Reg, a.Index} {
				if r == "" || (r == "rip" && a.Symbol != "") {
					continue
				}
				if _, ok := regOffset(m, r); !ok {
					t.Errorf("%q: register %q has no offset", s, r)
				}
			}
			if _, err := encodeArg(a, m); err != nil {
				t.Errorf("%q: parsed but not encodable: %v", s, err)
			}
			if x86 {
				back, err := ParseArg(a.String(), m)
				if err != nil || !reflect.DeepEqual(back, a) {
					t.Errorf("%q: %+v writes as %q, reads back as %+v (%v)", s, a, a.String(), back, err)
				}
			}
		}
	})
}

// TestPython311 checks Debian's python3.11: 8 probes, all with
// semaphores, and the file offsets of function__entry and its semaphore
// (the PT_LOAD conversion: addresses are not offsets in this non-PIE
// executable).
func TestPython311(t *testing.T) {
	const py = "/usr/bin/python3.11"
	if _, err := os.Stat(py); err != nil {
		needFile(t, py)
	}
	probes, err := ReadFile(py)
	if err != nil {
		t.Fatal(err)
	}
	if len(probes) == 0 {
		t.Skipf("%s has no USDT notes (not Debian's build)", py)
	}
	if len(probes) != 8 {
		t.Errorf("%d probes, want 8", len(probes))
	}
	for _, p := range probes {
		if p.Provider != "python" || p.Semaphore == 0 || p.RefCtrOffset == 0 || p.ArgsErr != nil {
			t.Errorf("%+v: want provider python, a semaphore and readable arguments", p)
		}
		if p.Name == "function__entry" && p.Addr == 0x4f20a1 {
			if p.Offset != 0xf20a1 || p.Semaphore != 0xa84260 || p.RefCtrOffset != 0x683260 {
				t.Errorf("function__entry: offset %#x, semaphore %#x at offset %#x; want 0xf20a1, 0xa84260 at 0x683260",
					p.Offset, p.Semaphore, p.RefCtrOffset)
			}
			t.Logf("function__entry: %#x = offset %#x, semaphore %#x = offset %#x, args %s",
				p.Addr, p.Offset, p.Semaphore, p.RefCtrOffset, p.ArgsText)
		}
	}
	checkReadelf(t, py, probes)
}

// TestLibjvm counts libjvm's notes as readelf does.
func TestLibjvm(t *testing.T) {
	const jvm = "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so"
	needFile(t, jvm)
	probes, err := ReadFile(jvm)
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, p := range probes {
		if p.ArgsErr != nil {
			bad++
			t.Errorf("%s at %#x: %v", p.ID(), p.Addr, p.ArgsErr)
		}
		if p.Semaphore != 0 {
			t.Errorf("%s: semaphore %#x; libjvm has none", p.ID(), p.Semaphore)
		}
	}
	t.Logf("%d probe locations, %d with unreadable arguments", len(probes), bad)
	checkReadelf(t, jvm, probes)
}

func needFile(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s: %v", p, err)
	}
}

// checkReadelf compares probes with what readelf -n prints of the file:
// as many notes, the same names, addresses and argument strings.
func checkReadelf(t *testing.T, path string, probes []Probe) {
	t.Helper()
	readelf, err := exec.LookPath("readelf")
	if err != nil {
		t.Logf("no readelf to compare with")
		return
	}
	out, err := exec.Command(readelf, "-nW", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		// -W puts "Provider: NAME" at the end of the note's header line.
		if _, prov, ok := strings.Cut(l, "Provider: "); ok {
			lines = append(lines, strings.TrimSpace(prov))
			continue
		}
		l = strings.TrimSpace(l)
		switch {
		case len(lines) == 0:
		case strings.HasPrefix(l, "Name: "):
			lines[len(lines)-1] += ":" + strings.TrimPrefix(l, "Name: ")
		case strings.HasPrefix(l, "Location: "):
			lines[len(lines)-1] += " " + strings.TrimSuffix(strings.Fields(l)[1], ",")
		case strings.HasPrefix(l, "Arguments:"):
			lines[len(lines)-1] += " " + strings.TrimSpace(strings.TrimPrefix(l, "Arguments:"))
		}
	}
	if len(lines) != len(probes) {
		t.Fatalf("readelf lists %d notes, ReadFile %d probes", len(lines), len(probes))
	}
	for i, p := range probes {
		mine := strings.TrimSpace(fmt.Sprintf("%s 0x%016x %s", p.ID(), p.Addr, p.ArgsText))
		if mine != strings.TrimSpace(lines[i]) {
			t.Fatalf("probe %d: %q, readelf %q", i, mine, lines[i])
		}
	}
}
