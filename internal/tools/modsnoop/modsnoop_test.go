package modsnoop

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

func TestMain(m *testing.M) { e2e.Main(m, nil) }

func TestTaints(t *testing.T) {
	for _, c := range []struct {
		t    Taints
		want string
	}{{0, "-"}, {1 << 12, "O"}, {1<<12 | 1<<13, "OE"}, {1 | 1<<10, "PC"}, {1 << 40, "[40]"}} {
		if got := string(c.t.Append(nil)); got != c.want {
			t.Errorf("%#x: got %q, want %q", uint64(c.t), got, c.want)
		}
	}
}

func TestModuleName(t *testing.T) {
	for file, want := range map[string]string{
		"/lib/modules/6.1.0-57-amd64/kernel/fs/nls/nls_iso8859-1.ko": "nls_iso8859_1",
		"/x/nls_ascii.ko.xz":      "nls_ascii",
		"e1000e.ko.zst":           "e1000e",
		"/tmp/snd-hda-core.ko.gz": "snd_hda_core",
	} {
		if got := ModuleName(file); got != want {
			t.Errorf("%s: got %q, want %q", file, got, want)
		}
	}
}

func TestJoinPath(t *testing.T) {
	if got := joinPath([]string{"a.ko", "nls", "lib"}, true); got != "/lib/nls/a.ko" {
		t.Errorf("complete: got %q", got)
	}
	if got := joinPath([]string{"a.ko", "deep"}, false); got != ".../deep/a.ko" {
		t.Errorf("too deep: got %q", got)
	}
	if got := joinPath(nil, true); got != "/" {
		t.Errorf("root: got %q", got)
	}
}

func TestHeader(t *testing.T) {
	want := "TIME     PID    COMM             MODULE               TAINTS  FILE\n"
	if got := string(table.AppendHeader(nil)); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// Modules small, without dependencies and without side effects, that
// Debian builds as modules: the first one found and not loaded is used.
var testModules = []string{"nls_iso8859-1", "nls_cp437", "nls_ascii"}

const moduleInitCompressedFile = 4 // MODULE_INIT_COMPRESSED_FILE

// findModule returns the file of a test module of the running kernel, its
// name and the finit_module flags it needs, or "" when none is there.
// make vmtest puts one, decompressed, into the guest's /lib/modules.
func findModule(t *testing.T) (file, name string, flags int) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]), "kernel/fs/nls")
	loaded, _ := os.ReadFile("/proc/modules")
	for _, m := range testModules {
		name := ModuleName(m)
		if strings.Contains("\n"+string(loaded), "\n"+name+" ") {
			continue
		}
		for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
			if _, err := os.Stat(filepath.Join(dir, m+ext)); err == nil {
				if ext != ".ko" {
					flags = moduleInitCompressedFile
				}
				return filepath.Join(dir, m+ext), name, flags
			}
		}
	}
	return "", "", 0
}

// load loads the module with finit_module from this thread and unloads it
// when the test ends.
func load(t *testing.T, file, name string, flags int) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil {
		t.Fatalf("finit_module %s: %v", file, err)
	}
	t.Cleanup(func() {
		if err := unix.DeleteModule(name, unix.O_NONBLOCK); err != nil {
			t.Errorf("delete_module %s: %v", name, err)
		}
	})
}

// On a kernel without modules (this project's 6.18) modsnoop says so, as
// a no-hook error (exit status 2), from Open and from the command.
func TestNoModules(t *testing.T) {
	e2e.Require(t)
	if haveModules() == nil {
		t.Skip("this kernel has modules: TestModuleLoad runs instead")
	}
	_, err := Open(Config{}, e2e.Own())
	if !errors.Is(err, ErrNoModules) || !errors.Is(err, probe.ErrNoHook) || err.Error() != "modsnoop: kernel built without module support" {
		t.Fatalf("Open: got %v, want modsnoop: kernel built without module support", err)
	}
	cmd := Tool.Command()
	cmd.SetArgs([]string{"-d", "1"})
	cmd.SetOut(new(strings.Builder))
	cmd.SetErr(new(strings.Builder))
	err = cmd.Execute()
	if cli.ExitCode(err) != 2 || !strings.Contains(err.Error(), "kernel built without module support") {
		t.Fatalf("owl modsnoop: got %v (status %d), want the no-module error, status 2", err, cli.ExitCode(err))
	}
}

// A module of the running kernel, loaded from Go with finit_module, shows
// with its name, taints and file: with owl's hook choice (or the one
// OWL_HOOKS forces) and with the syscalls hook.
func TestModuleLoad(t *testing.T) {
	e2e.Require(t)
	if err := haveModules(); err != nil {
		t.Skip("no modules here: TestNoModules checks the error")
	}
	file, name, flags := findModule(t)
	if file == "" {
		if os.Getenv("OWL_E2E") == "require" {
			t.Fatalf("no test module (%v) of this kernel in /lib/modules, or all loaded", testModules)
		}
		t.Skip("no test module in /lib/modules")
	}
	want, err := filepath.EvalSymlinks(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"chosen", Config{}}, {"syscalls", Config{syscalls: true}}} {
		t.Run(c.name, func(t *testing.T) {
			src, err := Open(c.cfg, e2e.Own())
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("hook: %s", src.Session.Hook.Name)
			events := e2e.Collect(t, src)
			load(t, file, name, flags)
			e := e2e.Wait(t, events, 10*time.Second, "the load of "+name, func(e Event) bool { return string(e.Module) == name })
			e2e.CheckTask(t, &e.Task)
			if string(e.File) != want {
				t.Errorf("file: got %q, want %q", e.File, want)
			}
			if c.cfg.syscalls != (e.Taints == nil) {
				t.Errorf("taints %v with the %s hook", e.Taints, src.Session.Hook.Name)
			}
			if e.Taints != nil {
				t.Logf("taints: %s", e.Taints.Append(nil))
			}
		})
	}
	// The registry starts it too (owl tools).
	s, err := Tool.Start(tool.Options{Task: e2e.Own().Task, Runtime: e2e.Options().Runtime, NoReader: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}
