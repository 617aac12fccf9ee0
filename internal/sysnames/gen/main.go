// Command gen writes the name tables of package sysnames.
//
// It reads them from golang.org/x/sys/unix, the version go.mod pins, in the
// module cache: those files are themselves generated from the kernel's UAPI
// headers for each architecture (by running the C preprocessor with that
// architecture's include path), so they already resolve the asm-generic
// __NR3264_* indirections arm64 uses, and they are versioned, which makes
// "go generate" give the same output on every machine without apt or a C
// compiler. Run it from the package directory: go run ./gen [-out dir].
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// sysModule is where the tables come from. It must be a requirement in
// go.mod so that "go list -m" resolves the same version everywhere.
const sysModule = "golang.org/x/sys"

// arches are the GOARCH names sysnames has syscall tables for, which are
// also the x/sys file suffixes. All tables are always generated: syscall
// numbers differ between them and owl must name them right whichever
// machine it was built on. 386 is there for x86-64's ia32 emulation: a
// 64-bit kernel numbers a 32-bit syscall (a 32-bit process, or int $0x80
// from a 64-bit one) from the i386 table, so owl needs it on amd64.
var arches = []string{"amd64", "arm64", "386"}

// tableName is the Go identifier of arch's syscall table ("386Syscalls" is
// not one).
func tableName(arch string) string {
	if arch == "386" {
		return "ia32Syscalls"
	}
	return arch + "Syscalls"
}

// skipSyscalls are SYS_ constants that are not syscalls. On arm64
// __NR_arch_specific_syscall (244) only marks where the range reserved for
// architecture-specific calls starts; arm64 defines none there.
var skipSyscalls = map[string]bool{
	"SYS_ARCH_SPECIFIC_SYSCALL": true,
}

// minLastCap is the highest capability the package promises to name
// (CAP_CHECKPOINT_RESTORE, Linux 5.9). A source older than that is rejected
// rather than silently giving numbers.
const minLastCap = 40

// maxNr bounds the table size. Syscall numbers are small and dense (x32's
// 512+ numbers are not in the amd64 file); a huge one means a bad parse and
// would make a wasteful table.
const maxNr = 2048

type entry struct {
	nr   int
	name string
}

func main() {
	out := flag.String("out", ".", "directory to write the generated files to")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "sysnames/gen:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	dir, version, err := moduleDir(sysModule)
	if err != nil {
		return err
	}
	unixDir := filepath.Join(dir, "unix")
	source := sysModule + "@" + version

	syscalls := make(map[string][]entry)
	for _, arch := range arches {
		path := filepath.Join(unixDir, "zsysnum_linux_"+arch+".go")
		consts, err := readIntConsts(path, "SYS_")
		if err != nil {
			return err
		}
		var table []entry
		for _, c := range consts {
			if skipSyscalls[c.name] {
				continue
			}
			table = append(table, entry{c.nr, strings.ToLower(strings.TrimPrefix(c.name, "SYS_"))})
		}
		if err := checkTable(path, table); err != nil {
			return err
		}
		syscalls[arch] = table
	}

	capPath := filepath.Join(unixDir, "zerrors_linux.go")
	caps, err := readCaps(capPath)
	if err != nil {
		return err
	}

	// Errno numbers are the asm-generic ones on amd64, arm64 and 386, so
	// one table serves all; check that rather than assume it.
	var errnos []entry
	for i, arch := range arches {
		path := filepath.Join(unixDir, "zerrors_linux_"+arch+".go")
		list, err := readErrorList(path)
		if err != nil {
			return err
		}
		if err := checkTable(path, list); err != nil {
			return err
		}
		if i > 0 && !equalEntries(list, errnos) {
			return fmt.Errorf("%s: errno numbers differ from %s; sysnames.Errno would need a table per architecture", path, arches[0])
		}
		errnos = list
	}

	files := []struct {
		name string
		body func(*bytes.Buffer)
	}{
		{"zsyscalls.go", func(b *bytes.Buffer) {
			for _, arch := range arches {
				fmt.Fprintf(b, "// %s is indexed by syscall number; \"\" marks an unused number.\n", tableName(arch))
				fmt.Fprintf(b, "// From %s unix/zsysnum_linux_%s.go.\n", source, arch)
				writeTable(b, tableName(arch), syscalls[arch])
			}
		}},
		{"zcapabilities.go", func(b *bytes.Buffer) {
			fmt.Fprintf(b, "// capabilityNames is indexed by capability number.\n")
			fmt.Fprintf(b, "// From the CAP_* constants of %s unix/zerrors_linux.go.\n", source)
			writeTable(b, "capabilityNames", caps)
		}},
		{"zerrnos.go", func(b *bytes.Buffer) {
			fmt.Fprintf(b, "// errnoNames is indexed by errno; \"\" marks an unused number. %s\n", strings.Join(arches, ", "))
			fmt.Fprintf(b, "// share these numbers.\n")
			fmt.Fprintf(b, "// From errorList in %s unix/zerrors_linux_{%s}.go.\n", source, strings.Join(arches, ","))
			writeTable(b, "errnoNames", errnos)
		}},
	}
	for _, f := range files {
		var b bytes.Buffer
		fmt.Fprintf(&b, "// Code generated by \"go run ./gen\" from %s; DO NOT EDIT.\n\n", source)
		fmt.Fprintf(&b, "package sysnames\n\n")
		f.body(&b)
		src, err := format.Source(b.Bytes())
		if err != nil {
			return fmt.Errorf("%s: formatting generated code: %v", f.name, err)
		}
		if err := os.WriteFile(filepath.Join(out, f.name), src, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// moduleDir asks the go command where the version of module that go.mod
// requires lives, so the generator reads exactly the pinned version rather
// than whatever a hard-coded path happens to hold.
func moduleDir(module string) (dir, version string, err error) {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}\t{{.Version}}", module)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("go list -m %s: %v", module, err)
	}
	dir, version, _ = strings.Cut(strings.TrimSpace(string(out)), "\t")
	if dir == "" {
		return "", "", fmt.Errorf("%s %s is not in the module cache; run \"go mod download %s\"", module, version, module)
	}
	return dir, version, nil
}

// readIntConsts returns the integer constants of a Go file whose names start
// with prefix, sorted by value then name. Parsing the Go syntax rather than
// matching lines keeps working if x/sys changes its layout or uses hex.
func readIntConsts(path, prefix string) ([]entry, error) {
	file, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var consts []entry
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, ident := range vs.Names {
				if !strings.HasPrefix(ident.Name, prefix) {
					continue
				}
				if i >= len(vs.Values) {
					return nil, fmt.Errorf("%s: %s has no value", path, ident.Name)
				}
				nr, err := intLit(vs.Values[i])
				if err != nil {
					return nil, fmt.Errorf("%s: %s: %v", path, ident.Name, err)
				}
				consts = append(consts, entry{nr, ident.Name})
			}
		}
	}
	if len(consts) == 0 {
		return nil, fmt.Errorf("%s: no %s constants", path, prefix)
	}
	sortEntries(consts)
	return consts, nil
}

// readCaps returns CAP_CHOWN (0) to CAP_LAST_CAP and insists they have no
// gaps, because capabilities are assigned densely and a gap means the parse
// picked up something that is not a capability.
func readCaps(path string) ([]entry, error) {
	consts, err := readIntConsts(path, "CAP_")
	if err != nil {
		return nil, err
	}
	last := -1
	var caps []entry
	for _, c := range consts {
		if c.name == "CAP_LAST_CAP" {
			last = c.nr
			continue
		}
		caps = append(caps, c)
	}
	if last < minLastCap {
		return nil, fmt.Errorf("%s: CAP_LAST_CAP is %d, want at least %d", path, last, minLastCap)
	}
	if len(caps) != last+1 {
		return nil, fmt.Errorf("%s: %d CAP_ constants for CAP_LAST_CAP %d", path, len(caps), last)
	}
	for i, c := range caps {
		if c.nr != i {
			return nil, fmt.Errorf("%s: capability %d missing (found %s = %d)", path, i, c.name, c.nr)
		}
	}
	return caps, nil
}

// readErrorList returns the {num, name, desc} entries of x/sys's errorList,
// the table behind unix.ErrnoName. It holds one name per number (EAGAIN, not
// also EWOULDBLOCK), which is what a name table needs.
func readErrorList(path string) ([]entry, error) {
	file, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	for _, decl := range file.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.VAR {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			if len(vs.Names) != 1 || vs.Names[0].Name != "errorList" || len(vs.Values) != 1 {
				continue
			}
			lit, ok := vs.Values[0].(*ast.CompositeLit)
			if !ok {
				return nil, fmt.Errorf("%s: errorList is not a composite literal", path)
			}
			var list []entry
			for _, elt := range lit.Elts {
				row, ok := elt.(*ast.CompositeLit)
				if !ok || len(row.Elts) < 2 {
					return nil, fmt.Errorf("%s: unexpected errorList element", path)
				}
				nr, err := intLit(row.Elts[0])
				if err != nil {
					return nil, fmt.Errorf("%s: errorList: %v", path, err)
				}
				name, err := stringLit(row.Elts[1])
				if err != nil {
					return nil, fmt.Errorf("%s: errorList: %v", path, err)
				}
				list = append(list, entry{nr, name})
			}
			if len(list) == 0 {
				return nil, fmt.Errorf("%s: errorList is empty", path)
			}
			sortEntries(list)
			return list, nil
		}
	}
	return nil, fmt.Errorf("%s: no errorList", path)
}

// checkTable rejects what would make a bad slice table: negative or huge
// numbers, and two names for one number (the table could keep only one).
func checkTable(path string, table []entry) error {
	if len(table) == 0 {
		return fmt.Errorf("%s: empty table", path)
	}
	for i, e := range table {
		if e.nr < 0 || e.nr >= maxNr {
			return fmt.Errorf("%s: %s = %d is out of range [0, %d)", path, e.name, e.nr, maxNr)
		}
		if i > 0 && table[i-1].nr == e.nr {
			return fmt.Errorf("%s: %s and %s are both %d", path, table[i-1].name, e.name, e.nr)
		}
	}
	return nil
}

func intLit(expr ast.Expr) (int, error) {
	lit, ok := expr.(*ast.BasicLit)
	if !ok || lit.Kind != token.INT {
		return 0, errors.New("value is not an integer literal")
	}
	n, err := strconv.ParseInt(lit.Value, 0, 64)
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

func stringLit(expr ast.Expr) (string, error) {
	lit, ok := expr.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", errors.New("value is not a string literal")
	}
	return strconv.Unquote(lit.Value)
}

// sortEntries orders by number then name so the output never depends on the
// order of the source and re-running the generator gives no diff.
func sortEntries(list []entry) {
	sort.Slice(list, func(i, j int) bool {
		if list[i].nr != list[j].nr {
			return list[i].nr < list[j].nr
		}
		return list[i].name < list[j].name
	})
}

func equalEntries(a, b []entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// writeTable writes a keyed array literal: the index is the number, so a
// lookup is one bounds check and index, with no map and no allocation.
func writeTable(b *bytes.Buffer, name string, table []entry) {
	fmt.Fprintf(b, "var %s = [...]string{\n", name)
	for _, e := range table {
		fmt.Fprintf(b, "\t%d: %q,\n", e.nr, e.name)
	}
	fmt.Fprintf(b, "}\n\n")
}
