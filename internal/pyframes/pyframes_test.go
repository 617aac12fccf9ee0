package pyframes

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/owlbpf/owl/internal/pyframes/pyprog"
	"github.com/owlbpf/owl/internal/syms"
)

// dumpLines prints, for the code objects of a sample, the line table, the
// first line and the line of every instruction as the interpreter itself
// computes it (co_lines from 3.10, dis.findlinestarts before).
const dumpLines = `import dis, json, sys
src = '''
def f(a,
      b):
    x = a + 1

    if x > 2:
        y = [i for i in range(x)]
    else:
        y = None
    try:
        z = b(x)
    except Exception:
        z = 0
    return (x,
            y, z)
'''
def walk(co):
    yield co
    for c in co.co_consts:
        if hasattr(c, "co_code"):
            yield from walk(c)
out = []
for co in walk(compile(src, "<s>", "exec")):
    n = len(co.co_code)
    lines = [0] * (n // 2)
    if sys.version_info >= (3, 10):
        table = co.co_linetable
        for start, end, line in co.co_lines():
            for off in range(start, end, 2):
                lines[off // 2] = line or 0
    else:
        table = co.co_lnotab
        starts = dict(dis.findlinestarts(co))
        line = co.co_firstlineno
        for off in range(0, n, 2):
            line = starts.get(off, line)
            lines[off // 2] = line
    out.append({"name": co.co_name, "first": co.co_firstlineno, "table": table.hex(), "lines": lines})
print(json.dumps({"minor": sys.version_info[1], "codes": out}))
`

// The line of every instruction of sample code objects, from the raw line
// table, as each interpreter present computes it.
func TestLineTables(t *testing.T) {
	for _, py := range pyprog.Interps(t) {
		t.Run(py.Name, func(t *testing.T) {
			out, err := exec.Command(py.Path, "-c", dumpLines).Output()
			if err != nil {
				t.Fatal(err)
			}
			var d struct {
				Minor int
				Codes []struct {
					Name  string
					First int
					Table string
					Lines []int
				}
			}
			if err := json.Unmarshal(out, &d); err != nil {
				t.Fatal(err)
			}
			checked := 0
			for _, c := range d.Codes {
				table, err := hex.DecodeString(c.Table)
				if err != nil {
					t.Fatal(err)
				}
				for i, want := range c.Lines {
					var got int
					switch {
					case d.Minor >= 11:
						got = lineOfLocations(table, c.First, i)
					case d.Minor == 10:
						got = lineOf310(table, c.First, 2*i)
					default:
						got = lineOfLnotab(table, c.First, 2*i)
					}
					if got != want {
						t.Errorf("%s: instruction %d: line %d, want %d", c.Name, i, got, want)
					}
					checked++
				}
			}
			if checked < 20 {
				t.Errorf("only %d instructions checked", checked)
			}
		})
	}
}

// detect finds each interpreter present and names its code objects and
// strings (ASCII, Latin-1 and UCS-2 names) from its memory, as the
// interpreter itself gives them.
func TestDetectAndReadCode(t *testing.T) {
	const prog = `import sys
def plain(): pass
class K:
    def métho(self): pass
    def ĉapelo(self): pass
for f in (plain, K.métho, K.ĉapelo):
    c = f.__code__
    print(id(c), getattr(c, "co_qualname", c.co_name), c.co_firstlineno, flush=True)
sys.stdin.read()
`
	for _, py := range pyprog.Interps(t) {
		t.Run(py.Name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "names.py")
			if err := os.WriteFile(path, []byte(prog), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(py.Path, path)
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Wait() }()
			buf := make([]byte, 4096)
			var text string
			for strings.Count(text, "\n") < 3 {
				n, err := stdout.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				text += string(buf[:n])
			}
			in, err := detect(uint32(cmd.Process.Pid), newFiles())
			if err != nil || in == nil {
				t.Fatalf("detect: %v %v", in, err)
			}
			if !strings.Contains(py.Path, "python3."+strconv.Itoa(in.minor)) {
				t.Errorf("minor %d for %s", in.minor, py.Path)
			}
			for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
				f := strings.Fields(line)
				addr, _ := strconv.ParseUint(f[0], 10, 64)
				first, _ := strconv.Atoi(f[2])
				c, err := in.readCode(memory(cmd.Process.Pid), addr)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				if c.name != f[1] || c.file != path || c.firstLine != first {
					t.Errorf("code %s: %q %q %d, want %q %q %d", f[0], c.name, c.file, c.firstLine, f[1], path, first)
				}
			}
			// Anything else at an address is refused, not misread.
			if _, err := in.readCode(memory(cmd.Process.Pid), in.codeType); err == nil {
				t.Error("PyCode_Type itself read as a code object")
			}
		})
	}
}

// A Python owl has no layout for is reported, not guessed at.
func TestUnsupportedVersion(t *testing.T) {
	p := "/root/.pyenv/versions/3.7.16/bin/python3.7"
	if _, err := os.Stat(p); err != nil {
		t.Skipf("pyenv 3.7.16 not installed here (%s)", p)
	}
	cmd := exec.Command(p, "-c", "import sys; print(flush=True); sys.stdin.read()")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	stdout.Read(make([]byte, 1))
	_, err := detect(uint32(cmd.Process.Pid), newFiles())
	var u *UnsupportedError
	if !errors.As(err, &u) || u.Version != "3.7" {
		t.Errorf("detect: %v, want Python 3.7 unsupported", err)
	}
}

// This machine's glibc (2.36) pthread_getspecific, as objdump shows it,
// and what it says of struct pthread: specific_1stblock at 0x310 of
// 16-byte {seq, data} entries, specific[] at 0x510.
func TestDecodeGetspecific(t *testing.T) {
	code, _ := hex.DecodeString("83ff1f773b89f84883c03148c1e004644803042510000000488b50084885d27457" +
		"89ff488d0d56af1400488b3048c1e70448393439753948" + "89d0c30f1f440000" +
		"81ffff030000773089fa89f883e21fc1e80564488b04c510050000" + "4885c0741848c1e2044801d0ebaf")
	got, err := decodeGetspecific(code)
	if err != nil {
		t.Fatal(err)
	}
	if want := (tsd{first: 0x310, second: 0x510, size: 16, data: 8}); got != want {
		t.Errorf("%+v, want %+v", got, want)
	}
	if _, err := decodeGetspecific(code[:20]); err == nil {
		t.Error("a cut function decoded")
	}
	// And the libc here, whatever its version, decodes.
	if _, err := libcTSD("/lib/x86_64-linux-gnu/libc.so.6"); err != nil {
		t.Error(err)
	}
}

func frames(names ...string) []syms.Frame {
	var out []syms.Frame
	for _, n := range names {
		mod, sym, _ := strings.Cut(n, ":")
		out = append(out, syms.Frame{Symbol: sym, Module: mod})
	}
	return out
}

func names(st []syms.Frame) string {
	var b []string
	for _, f := range st {
		if f.Lang != "" {
			b = append(b, "py:"+f.Symbol)
		} else {
			b = append(b, f.Module+":"+f.Symbol)
		}
	}
	return strings.Join(b, " ")
}

// Merging: each eval frame takes its group of Python frames (up to an
// entry frame), the interpreter's other frames go, other files' stay; with
// no eval frame (no frame pointers) the Python frames follow the native
// frames above the interpreter.
func TestMerge(t *testing.T) {
	py := Stack{module: "libpython3.12.so", Frames: []syms.Frame{
		{Symbol: "c", Lang: "python"}, {Symbol: "b", Lang: "python"}, {Symbol: "a", Lang: "python"}, {Symbol: "<module>", Lang: "python"},
	}, entry: []bool{true, false, true, true}}
	for _, c := range []struct{ native, want string }{
		{"libc.so.6:read libpython3.12.so:_Py_read libpython3.12.so:_PyEval_EvalFrameDefault ext.so:callback " +
			"libpython3.12.so:_PyObject_Call libpython3.12.so:_PyEval_EvalFrameDefault libpython3.12.so:_PyEval_EvalFrameDefault.cold " +
			"libpython3.12.so:Py_RunMain python3.12:main libc.so.6:__libc_start_main",
			"libc.so.6:read py:c ext.so:callback py:b py:a py:<module> python3.12:main libc.so.6:__libc_start_main"},
		{"libc.so.6:open64 :[unknown]", "libc.so.6:open64 py:c py:b py:a py:<module>"},
		{"libc.so.6:open64 libpython3.12.so:_Py_open libpython3.12.so:[unknown] libc.so.6:start_thread",
			"libc.so.6:open64 py:c py:b py:a py:<module> libc.so.6:start_thread"},
		// Past the interpreter, an address in no file is no frame.
		{"ext.so:[unknown] libpython3.12.so:_PyEval_EvalFrameDefault :[unknown] libpython3.12.so:_PyEval_EvalFrameDefault",
			"ext.so:[unknown] py:c py:b py:a py:<module>"},
		// An eval frame short of groups: the rest go at the end.
		{"libc.so.6:read libpython3.12.so:_PyEval_EvalFrameDefault", "libc.so.6:read py:c py:b py:a py:<module>"},
	} {
		var native []syms.Frame
		for _, n := range strings.Fields(c.native) {
			native = append(native, frames(n)...)
		}
		if got := names(Merge(native, py)); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.native, got, c.want)
		}
	}
	if got := Merge(frames("libc.so.6:read"), Stack{}); names(got) != "libc.so.6:read" {
		t.Errorf("no Python frames: %s", names(got))
	}
}

// What looking at a Python process costs (owl does it once per process).
func BenchmarkDetect(b *testing.B) {
	cmd := exec.Command(pyprog.Debian, "-c", "import sys; print(flush=True); sys.stdin.read()")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	stdout.Read(make([]byte, 1))
	fs := newFiles()
	for b.Loop() {
		if in, err := detect(uint32(cmd.Process.Pid), fs); in == nil || err != nil {
			b.Fatal(in, err)
		}
	}
}

// What merging costs per stack (once per event).
func BenchmarkMerge(b *testing.B) {
	py := Stack{module: "python3.11", Frames: make([]syms.Frame, 5), entry: make([]bool, 5)}
	native := frames("libc.so.6:open64", ":[unknown]")
	for b.Loop() {
		Merge(native, py)
	}
}
