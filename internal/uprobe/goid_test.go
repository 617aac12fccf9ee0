package uprobe

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"testing"
)

// buildGoPair builds goSrc with its symbol table and DWARF, and stripped
// (-ldflags=-s), where the goid offset comes from the Go version.
func buildGoPair(t *testing.T) map[string]string {
	t.Helper()
	full, stripped := t.TempDir(), t.TempDir()
	return map[string]string{
		"full":     build(t, full, "goapp.go", goSrc),
		"stripped": build(t, stripped, "goapp.go", goSrc, "-ldflags=-s"),
	}
}

// The goid offset of the test's Go programs: from DWARF, and from the
// version table when stripped; both agree with this toolchain's runtime.
func TestGoidOffset(t *testing.T) {
	bins := buildGoPair(t)
	full, err := GoidOffset(bins["full"])
	if err != nil {
		t.Fatal(err)
	}
	fromDWARF, err := dwarfGoidFile(bins["full"])
	if err != nil || fromDWARF != full {
		t.Errorf("DWARF: %d, %v; goidOffset %d", fromDWARF, err, full)
	}
	if _, err := dwarfGoidFile(bins["stripped"]); err == nil {
		t.Error("stripped binary still has DWARF")
	}
	stripped, err := GoidOffset(bins["stripped"])
	if err != nil {
		t.Fatal(err)
	}
	minor, _ := goMinor(runtime.Version())
	if stripped != full || goidByVersion(minor) != full || full == 0 {
		t.Errorf("goid offset: DWARF %d, stripped %d, table for %s %d", full, stripped, runtime.Version(), goidByVersion(minor))
	}
}

func TestGoMinor(t *testing.T) {
	for v, want := range map[string]int{"go1.26.8": 26, "go1.23rc1": 23, "go1.17": 17, "go1.9.2": 9} {
		if got, ok := goMinor(v); !ok || got != want {
			t.Errorf("%s: %d %v, want %d", v, got, ok, want)
		}
	}
	for _, v := range []string{"devel go1.27-abc", "go2.0", "", "go1.", "go1.x"} {
		if got, ok := goMinor(v); ok {
			t.Errorf("%q parsed as %d", v, got)
		}
	}
	if goidByVersion(16) != 0 || goidByVersion(99) != 0 {
		t.Error("offsets for unknown versions")
	}
}

func FuzzGoMinor(f *testing.F) {
	f.Add("go1.26.8")
	f.Add("go1.23rc1")
	f.Fuzz(func(t *testing.T, v string) { goMinor(v) })
}

// dwarfGoid reads binaries given on the command line: malformed ELF and
// DWARF must give an error, not a panic.
func FuzzDwarfGoid(f *testing.F) {
	if exe, err := os.ReadFile("/proc/self/exe"); err == nil && len(exe) < 64<<20 {
		f.Add(exe[:min(len(exe), 4096)])
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) { dwarfGoid(bytes.NewReader(b)) })
}

const goSigSrc = `package main

import "errors"

type T struct{ a, b int }

//go:noinline
func f(i int, s string, x float64, b []byte, e error, p *T, t T, k uint8) (int, error) {
	if i == 3 {
		return 0, errors.New("three")
	}
	return i + len(s) + len(b) + int(k) + t.a + int(x), e
}

func main() { f(1, "a", 2, nil, nil, nil, T{}, 1) }
`

// Parameters and results of a Go function as the register ABI passes
// them, from DWARF; a stripped binary has none.
func TestGoSignatures(t *testing.T) {
	dir := t.TempDir()
	full := build(t, dir, "sig.go", goSigSrc)
	sigs, err := GoSignatures(full, []string{"main.f", "main.nothing"})
	if err != nil {
		t.Fatal(err)
	}
	sig, ok := sigs["main.f"]
	if !ok || len(sigs) != 1 {
		t.Fatalf("signatures %v", sigs)
	}
	want := []GoParam{
		{"i", "int", GoWord, 8, 1}, {"s", "string", GoString, 16, 2}, {"x", "float64", GoFloat, 8, 0},
		{"b", "[]uint8", GoSlice, 24, 3}, {"e", "error", GoInterface, 16, 2}, {"p", "*main.T", GoWord, 8, 1},
		{"t", "main.T", GoOther, 16, -1}, {"k", "uint8", GoWord, 1, 1},
	}
	if len(sig.Params) != len(want) {
		t.Fatalf("params %+v", sig.Params)
	}
	for i, p := range sig.Params {
		if p != want[i] {
			t.Errorf("param %d: %+v, want %+v", i, p, want[i])
		}
	}
	res := []GoParam{{"~r0", "int", GoWord, 8, 1}, {"~r1", "error", GoInterface, 16, 2}}
	if len(sig.Results) != 2 || sig.Results[0] != res[0] || sig.Results[1] != res[1] {
		t.Errorf("results %+v, want %+v", sig.Results, res)
	}
	stripped := build(t, t.TempDir(), "sig.go", goSigSrc, "-ldflags=-s")
	if _, err := GoSignatures(stripped, []string{"main.f"}); !errors.Is(err, ErrNoDWARF) {
		t.Errorf("stripped: %v, want ErrNoDWARF", err)
	}
}
