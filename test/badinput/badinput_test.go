// Package badinput gives the owl binary ($OWL_BIN, else one built from
// ./cmd/owl) bad input, table-driven over every tool of the registry and
// every one of its flags: unknown flags, values that do not parse or are
// out of range, missing, truncated and non-ELF files, symbols that do not
// exist, malformed USDT notes, a Python of an unknown version, a pid that
// does not exist. Each must end with exactly one line on stderr ("owl:
// ..."), exit status 2, no stack trace, no "Tracing" line, and leave no
// BPF link behind.
package badinput

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/tools"
	"github.com/owlbpf/owl/test/internal/owltest"
)

func TestMain(m *testing.M) {
	e2e.Main(m, map[string]func([]string) error{
		// sleep: a process to point -p at, until killed.
		"sleep": func([]string) error { time.Sleep(time.Hour); return nil },
	})
	owltest.Cleanup()
}

// Target is a Go function of this test binary that the tools needing a
// function pattern are pointed at, so that only the bad input is wrong.
//
//go:noinline
func Target(i int) int { return i * 3 }

var _ = Target(1)

const targetSym = "github.com/owlbpf/owl/test/badinput.Target"

// env is what the cases refer to: files and processes made for the test.
type env struct {
	exe    string // this test binary: an ELF with Target
	text   string // a text file
	trunc  string // the first 4 KiB of exe
	empty  string // an empty file
	dir    string // a directory
	notes  string // exe with a malformed .note.stapsdt section
	child  int    // a process of ours (sleeping)
	fakePy int    // a process whose executable is named python3.99
	nopid  int    // a pid that does not exist
}

// base are arguments that make a tool's command line valid (function
// patterns, -p of a language tool), to which a case adds its bad input.
func (e *env) base(tool string) []string {
	switch tool {
	case "funccount", "funclatency", "stackcount":
		return []string{e.exe + ":" + targetSym}
	case "trace":
		return []string{"p:" + e.exe + ":" + targetSym}
	case "usdt":
		return []string{e.exe + ":owl:nope"} // checked after the flags
	case "ucalls", "uflow", "ugc":
		return []string{"-l", "python", "-p", strconv.Itoa(e.child)}
	case "uthreads":
		return []string{"-l", "c", "-p", strconv.Itoa(e.child)}
	}
	return nil
}

// badValues are values of a flag's type that do not parse or are out of
// range for every flag of that type; strings have their own, per flag.
var badValues = map[string][]string{
	"int":      {"x", "1.5", "99999999999999999999"},
	"duration": {"x", "5"},
	"bool":     {}, // given as --flag=maybe below
}

// stringFlags are the bad values of each string flag, by long name; a
// flag whose every value is valid (a prefix to match) has none. A new
// string flag fails the test until it is listed here.
func (e *env) stringFlags() map[string][]string {
	files := []string{"/nonexistent/owl", e.text, e.trunc, e.empty, e.dir}
	return map[string][]string{
		"output":         {"xml", ""},
		"hook":           {"nope", "kprobe,", "uprobe,nope"},
		"cgroup":         {"/nonexistent", e.dir},
		"mntns":          {"x", "0", "-1", "99999999999", "/nonexistent", e.text},
		"port":           {"0", "70000", "x", "1,,2", "-1", strings.Repeat("1,", 1025) + "1"},
		"line":           {"(", "[z-a]"},
		"name":           {"(", "[z-a]"},
		"lib":            files,
		"shared":         files,
		"bash":           files,
		"language":       {"cobol", "PYTHON "},
		"pprof":          {"/nonexistent/x.pb.gz", e.dir},
		"svg":            {"/nonexistent/x.svg", e.dir},
		"flag-filter":    {"O_NOPE", "wronly", ""},
		"opensnoop/name": nil, // a substring of the command name, as BCC's
		"class":          nil,
		"method":         nil,
		"filter":         nil,
	}
}

// intLimits are out-of-range values of int flags beyond what every int
// flag rejects (a parse failure), by long name.
var intLimits = map[string][]string{
	"pid":                {"0", "-1", "4194305"},
	"uid":                {"-2", "4294967295"},
	"duration":           {"0", "-1"},
	"interval":           {"0", "-1"},
	"summary":            {"0", "-1"},
	"max":                {"0", "-1"},
	"max-args":           {"0", "-1", "1000001"},
	"ppid":               {"0", "-1", "4194305"},
	"tid":                {"0", "-1", "4194305"},
	"stacks":             {"0", "-1"},
	"count":              {"0", "-1"},
	"cpu":                {"-2", "100000"},
	"frequency":          {"0", "-1", "10000000"},
	"hash-storage-size":  {"0", "-1"},
	"stack-storage-size": {"0", "-1"},
	"funcs":              {"0", "-1"},
	"max-methods":        {"0", "-1"},
	"top":                {"-1"},
	"minimum":            {"-1"},
	"ring-bytes":         {"0", "1000", "3000", "1099511627776"},
	"pending-entries":    {"0", "-1", "65537"},
}

// common are the flags of internal/cli.Common: every tool has them but
// --pending-entries, which tools with a pending table have (the first
// tool, tcpconnect, included).
var common = map[string]bool{"pid": true, "uid": true, "cgroup": true, "mntns": true, "duration": true,
	"output": true, "poll": true, "hook": true, "ring-bytes": true, "pending-entries": true}

// A bad is one bad command line.
type bad struct {
	args []string
	// says is a piece of the message it must end with ("" for any).
	says string
	// flag and value: the message must name the flag (long or short) or
	// the value.
	flag  *pflag.Flag
	value string
}

// flagCases are the bad values of every flag of every tool.
func (e *env) flagCases(t *testing.T) []bad {
	var cases []bad
	strs := e.stringFlags()
	for i, tl := range tools.All() {
		name, first := tl.Info().Name, i == 0
		base := append([]string{name}, e.base(name)...)
		cases = append(cases, bad{args: append(slices.Clone(base), "--no-such-flag"), says: "unknown flag"},
			bad{args: append(slices.Clone(base), "-@"), says: "unknown shorthand"})
		tl.Command().Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" {
				return
			}
			var vals []string
			switch typ := f.Value.Type(); typ {
			case "bool":
				cases = append(cases, bad{args: append(slices.Clone(base), "--"+f.Name+"=maybe"), flag: f, value: "maybe"})
				return
			case "string", "stringArray":
				v, ok := strs[name+"/"+f.Name]
				if !ok {
					v, ok = strs[f.Name]
				}
				if !ok {
					t.Errorf("%s --%s: a string flag without bad values: add it to stringFlags", name, f.Name)
				}
				vals = v
			case "int":
				vals = append(slices.Clone(badValues[typ]), intLimits[f.Name]...)
				if _, ok := intLimits[f.Name]; !ok {
					t.Errorf("%s --%s: an int flag without limits: add it to intLimits", name, f.Name)
				}
			default:
				vals = badValues[typ]
				if vals == nil {
					t.Errorf("%s --%s: no bad values for flags of type %s", name, f.Name, typ)
				}
			}
			if (common[f.Name] && !first || e2e.InGuest()) && len(vals) > 1 {
				// The common flags are one code (internal/cli): every
				// value for the first tool, one for each other tool. In
				// the qemu guests (TCG: every process start is slow) one
				// value of every flag.
				vals = vals[:1]
			}
			for _, v := range vals {
				cases = append(cases, bad{args: append(slices.Clone(base), "--"+f.Name, v), flag: f, value: v})
			}
		})
	}
	return cases
}

// inputCases are bad arguments and targets, tool by tool.
func (e *env) inputCases() []bad {
	exe, pid := e.exe, strconv.Itoa(e.child)
	var cases []bad
	for _, tl := range tools.All() {
		name := tl.Info().Name
		if !tl.Info().Task {
			continue
		}
		args := append([]string{name}, e.base(name)...)
		if i := slices.Index(args, "-p"); i > 0 {
			args[i+1] = strconv.Itoa(e.nopid)
		} else {
			args = append(args, "-p", strconv.Itoa(e.nopid))
		}
		cases = append(cases, bad{args: args, says: "no such process"})
	}
	for _, tl := range []string{"funccount", "funclatency", "stackcount"} {
		for _, f := range []string{"/nonexistent/owl", e.text, e.trunc, e.empty, e.dir} {
			cases = append(cases, bad{args: []string{tl, f + ":main.main"}, says: ""})
		}
		cases = append(cases,
			bad{args: []string{tl}, says: ""}, // no pattern
			bad{args: []string{tl, exe + ":owl_no_such_function*"}, says: "owl_no_such_function"},
			bad{args: []string{tl, "no-such-lib-owl:malloc"}, says: "no-such-lib-owl"},
			bad{args: []string{tl, exe + ":"}, says: ""},
			bad{args: []string{tl, ":"}, says: ""},
			bad{args: []string{tl, "t:no_such_group:no_such_event"}, says: "no_such"},
			bad{args: []string{tl, "t:syscalls"}, says: ""},
			bad{args: []string{tl, "-p", pid, "no-such-lib-owl:malloc"}, says: ""},
		)
	}
	for _, f := range []string{"/nonexistent/owl", e.text, e.trunc, e.empty, e.dir} {
		cases = append(cases, bad{args: []string{"trace", "p:" + f + ":main.main"}, says: ""})
	}
	for _, p := range []string{
		"", "p:", "x:" + exe + ":" + targetSym, "p:" + exe + ":owl_no_such_function",
		"p:" + exe + ":" + targetSym + ` "%d %d", arg1`, // fewer arguments than verbs
		"p:" + exe + ":" + targetSym + ` "%d", arg1, arg2`,
		"p:" + exe + ":" + targetSym + ` "%z", arg1`,
		"p:" + exe + ":" + targetSym + ` "%d", arg99`,
		"p:" + exe + ":" + targetSym + ` "%d`,
		"p:" + exe + ":" + targetSym + ` (arg1 ==) "%d", arg1`,
		"p:" + exe + ":" + targetSym + ` (arg1 == 1`,
		"p:" + exe + ":" + targetSym + ` "%d", retval`, // retval at entry
	} {
		cases = append(cases, bad{args: []string{"trace", p}, says: ""})
	}
	cases = append(cases, bad{args: []string{"trace"}, says: ""})
	for _, f := range []string{"/nonexistent/owl", e.text, e.trunc, e.empty, e.dir, e.notes} {
		cases = append(cases,
			bad{args: []string{"usdt", "-l", f}, says: ""},
			bad{args: []string{"usdt", f + ":python:gc__start"}, says: ""})
	}
	cases = append(cases,
		bad{args: []string{"usdt"}, says: ""},
		bad{args: []string{"usdt", exe + ":nope:nope"}, says: "nope"},
		bad{args: []string{"usdt", "-p", pid, "nope:nope"}, says: "nope"},
		bad{args: []string{"usdt", "-p", pid, "::"}, says: ""},
		bad{args: []string{"usdt", "-v", exe + ":a:b"}, says: ""},
		bad{args: []string{"usdt", exe + ":owl:nope", "%\n", "arg0"}, says: ""}, // a verb that is a newline
	)
	for _, tl := range []string{"ucalls", "uflow", "ugc", "uthreads"} {
		cases = append(cases,
			bad{args: []string{tl}, says: ""}, // no -p
			bad{args: []string{tl, "-p", strconv.Itoa(e.fakePy)}, says: ""},
			bad{args: []string{tl, "-l", "java", "-p", pid}, says: ""},
		)
		if tl != "uthreads" { // whose default is C's pthreads
			cases = append(cases, bad{args: []string{tl, "-p", pid}, says: ""})
		}
	}
	// Arguments to tools that take none.
	for _, tl := range tools.All() {
		if e.base(tl.Info().Name) == nil && !slices.Contains([]string{"funccount", "funclatency", "stackcount", "trace", "usdt"}, tl.Info().Name) {
			cases = append(cases, bad{args: []string{tl.Info().Name, "extra"}, says: ""})
		}
	}
	return append(cases,
		bad{args: []string{"nosuchtool"}, says: ""},
		bad{args: []string{"--no-such-flag"}, says: ""},
		bad{args: []string{"tcpconnect", "-4", "-6"}, says: ""},
		bad{args: []string{"funclatency", "-u", "-m", exe + ":" + targetSym}, says: ""},
	)
}

func TestBadInput(t *testing.T) {
	e2e.Require(t)
	e := setup(t)
	cases := append(e.flagCases(t), e.inputCases()...)
	if os.Getenv("OWL_HOOKS") != "" {
		// The forced-hook runs of the qemu guests change nothing here.
		t.Skip("bad input does not depend on OWL_HOOKS")
	}
	var failed int
	byTool := map[string][]bad{}
	var names []string
	for _, c := range cases {
		if byTool[c.args[0]] == nil {
			names = append(names, c.args[0])
		}
		byTool[c.args[0]] = append(byTool[c.args[0]], c)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			before := linkIDs(0)
			// A few at a time: most of a case is starting a process.
			cs := byTool[name]
			errs := make([]error, len(cs))
			var wg sync.WaitGroup
			sem := make(chan struct{}, 4)
			for i, c := range cs {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					errs[i] = run(t, c)
					<-sem
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					failed++
					t.Errorf("owl %q: %v", cs[i].args, err)
				}
			}
			if leaked := leakedLinks(before); len(leaked) > 0 {
				t.Errorf("BPF links %v left behind by nobody", leaked)
			}
		})
	}
	t.Logf("%d bad command lines, %d failed", len(cases), failed)
	writeCount(t, len(cases))
}

// writeCount leaves the number of cases for the report, when asked.
func writeCount(t *testing.T, n int) {
	if f := os.Getenv("BADINPUT_COUNT"); f != "" {
		os.WriteFile(f, []byte(strconv.Itoa(n)+"\n"), 0o644)
	}
}

// run runs one bad command line and says what is wrong with its end.
func run(t *testing.T, c bad) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := c.args
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--duration") }) {
		// A bad input taken for good traces for 3 s, not forever.
		args = append(slices.Clone(args), "--duration", "3")
	}
	cmd := exec.CommandContext(ctx, owltest.Bin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "OWL_HOOKS=")
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return err
	}
	msg := stderr.String()
	var problems []string
	if code != 2 {
		problems = append(problems, fmt.Sprintf("exit status %d, want 2", code))
	}
	lines := strings.Split(strings.TrimSuffix(msg, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "owl: ") || !strings.HasSuffix(msg, "\n") {
		problems = append(problems, fmt.Sprintf("stderr %q, want one line starting with owl:", msg))
	}
	if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") || strings.Contains(msg, "Tracing ") {
		problems = append(problems, "stderr has a panic, a stack or the Tracing line")
	}
	if c.says != "" && !strings.Contains(msg, c.says) {
		problems = append(problems, fmt.Sprintf("stderr %q does not say %q", msg, c.says))
	}
	if f := c.flag; f != nil && !strings.Contains(msg, f.Name) && (f.Shorthand == "" || !strings.Contains(msg, "-"+f.Shorthand)) &&
		(c.value == "" || !strings.Contains(msg, c.value)) {
		problems = append(problems, fmt.Sprintf("stderr %q names neither --%s nor %q", msg, f.Name, c.value))
	}
	if len(problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(problems, "; "))
}

// leakedLinks lists the BPF links made since before
// that no process holds: what an owl that attached and did not clean up
// would leave (pinned, or held by the kernel). Links of other tests
// running at the same time are held by their processes; a link is
// released a moment after its last descriptor closes, so an unheld one
// is looked at again.
func leakedLinks(before []uint32) []uint32 {
	var fresh []uint32
	for _, id := range linkIDs(0) {
		if !slices.Contains(before, id) {
			fresh = append(fresh, id)
		}
	}
	if len(fresh) == 0 {
		return nil
	}
	h := held()
	fresh = slices.DeleteFunc(fresh, func(id uint32) bool { return h[id] })
	if len(fresh) == 0 {
		return nil
	}
	time.Sleep(300 * time.Millisecond)
	now, h := linkIDs(0), held()
	return slices.DeleteFunc(fresh, func(id uint32) bool { return h[id] || !slices.Contains(now, id) })
}

// linkIDs lists the ids of the kernel's BPF links above after.
func linkIDs(after uint32) []uint32 {
	var ids []uint32
	for id := after; ; {
		next, err := nextLinkID(id)
		if err != nil {
			return ids
		}
		ids, id = append(ids, next), next
	}
}

// held is the set of BPF link ids the processes of this host hold.
func held() map[uint32]bool {
	ids := map[uint32]bool{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "fdinfo")
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			b, _ := os.ReadFile(filepath.Join(dir, fd.Name()))
			if i := bytes.Index(b, []byte("link_id:")); i >= 0 {
				f := strings.Fields(string(b[i+len("link_id:"):]))
				if len(f) > 0 {
					n, _ := strconv.Atoi(f[0])
					ids[uint32(n)] = true
				}
			}
		}
	}
	return ids
}

// setup makes the files and processes of env.
func setup(t *testing.T) *env {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	owltest.Bin(t) // built now, not within a case's time
	e := &env{exe: exe, dir: dir}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e.text = write("text", []byte("not an ELF file\n"))
	e.empty = write("empty", nil)
	whole, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	e.trunc = write("trunc", whole[:4096])
	e.notes = write("notes", malformedNotes(t, whole))
	e.child = start(t, exe)
	// A program named like a Python of a version owl does not know.
	e.fakePy = start(t, write("python3.99", whole))
	for e.nopid = 4194304; ; e.nopid-- {
		if _, err := os.Stat("/proc/" + strconv.Itoa(e.nopid)); err != nil {
			break
		}
	}
	return e
}

// start runs the sleep action of the binary at path until the test ends.
func start(t *testing.T, path string) int {
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), "OWL_E2E_CHILD=sleep")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// malformedNotes is the ELF file whole with its Go build-id note section
// renamed .note.stapsdt and filled with a note whose description is cut
// short: a USDT note table no parser should trust.
func malformedNotes(t *testing.T, whole []byte) []byte {
	ef, err := elf.NewFile(bytes.NewReader(whole))
	if err != nil {
		t.Fatal(err)
	}
	sec := ef.Section(".note.go.buildid")
	strtab := ef.Section(".shstrtab")
	if sec == nil || strtab == nil || sec.Size < 40 {
		t.Fatal("no .note.go.buildid section to turn into USDT notes")
	}
	out := slices.Clone(whole)
	// The section's name, in the section-name string table.
	names := out[strtab.Offset : strtab.Offset+strtab.Size]
	at := bytes.Index(names, []byte(".note.go.buildid\x00"))
	if at < 0 {
		t.Fatal("no .note.go.buildid in the section names")
	}
	copy(names[at:], append([]byte(".note.stapsdt"), make([]byte, len(".note.go.buildid")-len(".note.stapsdt"))...))
	note := out[sec.Offset : sec.Offset+sec.Size]
	clear(note)
	binary.LittleEndian.PutUint32(note[0:], 8)          // namesz
	binary.LittleEndian.PutUint32(note[4:], 0xfffffff0) // descsz: far beyond the section
	binary.LittleEndian.PutUint32(note[8:], 3)          // NT_STAPSDT
	copy(note[12:], "stapsdt\x00")
	copy(note[20:], bytes.Repeat([]byte{0xff}, len(note)-20))
	return out
}

// nextLinkID is BPF_LINK_GET_NEXT_ID: the id of the kernel's next BPF
// link after id (cilium/ebpf has no link iterator).
func nextLinkID(id uint32) (uint32, error) {
	const bpfLinkGetNextID = 31
	attr := [3]uint32{id} // start_id, next_id, open_flags
	_, _, e := unix.Syscall(unix.SYS_BPF, bpfLinkGetNextID, uintptr(unsafe.Pointer(&attr[0])), unsafe.Sizeof(attr))
	if e != 0 {
		return 0, e
	}
	return attr[1], nil
}
