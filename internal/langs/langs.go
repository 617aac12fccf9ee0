// Package langs knows the language runtimes the runtime tools (ucalls,
// uflow, ugc, uthreads) trace: how to tell a process's language from its
// executable and mappings, which USDT probes each runtime has, and where
// their arguments put names. A tool asks for probes by role; the attach
// cookie of each location tells its BPF program the role and which
// arguments to read (bpf/usdt.h, usdt_cookie_byte and usdt_str).
package langs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/syms"
	"github.com/owlbpf/owl/internal/usdt"
)

// Lang is a runtime's name, as -l takes it.
type Lang string

const (
	Java   Lang = "java"
	Python Lang = "python"
	Ruby   Lang = "ruby"
	C      Lang = "c" // no runtime probes: pthread_create (uthreads)
)

// Parse checks a -l value against the languages a tool supports.
func Parse(s string, supported ...Lang) (Lang, error) {
	var names []string
	for _, l := range supported {
		if string(l) == s {
			return l, nil
		}
		names = append(names, string(l))
	}
	return "", fmt.Errorf("language %q: want one of %s", s, strings.Join(names, ", "))
}

// Detect tells pid's language from its executable's name, then from the
// runtime libraries it maps (libjvm.so, libpython3.*, libruby*); a
// process with none of them is C.
func Detect(pid int) (Lang, error) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return "", fmt.Errorf("process %d: %w", pid, err)
	}
	if l, ok := byName(filepath.Base(exe)); ok {
		return l, nil
	}
	maps, err := syms.ReadMaps(pid)
	if err != nil {
		return "", fmt.Errorf("process %d: %w", pid, err)
	}
	for _, m := range maps {
		base := filepath.Base(m.Path)
		switch {
		case strings.HasPrefix(base, "libjvm.so"):
			return Java, nil
		case strings.HasPrefix(base, "libpython"):
			return Python, nil
		case strings.HasPrefix(base, "libruby"):
			return Ruby, nil
		}
	}
	return C, nil
}

func byName(exe string) (Lang, bool) {
	switch {
	case exe == "java":
		return Java, true
	case strings.HasPrefix(exe, "python"):
		return Python, true
	case strings.HasPrefix(exe, "ruby"):
		return Ruby, true
	}
	return "", false
}

// Provider is the USDT provider of a language's probes.
func Provider(l Lang) string {
	switch l {
	case Java:
		return "hotspot"
	case Python:
		return "python"
	case Ruby:
		return "ruby"
	}
	return ""
}

// None marks an unused argument slot of a Cookie; as a string's length
// argument it means the string is NUL-terminated.
const None = 0xff

// Cookie is what one probe location tells the BPF program, packed in its
// 64-bit attach cookie (usdt_cookie_byte(c, i) reads byte i): a role and
// kind of the tool's, two arguments to keep as values, and two strings,
// each a pointer argument and a length argument (None: NUL-terminated).
type Cookie struct {
	Role, Kind uint8
	Vals       [2]uint8
	Strs       [2]Str
}

// Str is a string argument: Ptr's value points to it, Len's is its
// length (hotspot passes (pointer, length) pairs, not C strings).
type Str struct{ Ptr, Len uint8 }

// NoStr is an unused string slot.
var NoStr = Str{None, None}

// CStr is a NUL-terminated string in argument i.
func CStr(i uint8) Str { return Str{i, None} }

// Value packs c.
func (c Cookie) Value() uint64 {
	b := [8]uint8{c.Role, c.Kind, c.Vals[0], c.Vals[1], c.Strs[0].Ptr, c.Strs[0].Len, c.Strs[1].Ptr, c.Strs[1].Len}
	var v uint64
	for i, x := range b {
		v |= uint64(x) << (8 * i)
	}
	return v
}

// Want is one probe a tool attaches, by name, with its cookie.
type Want struct {
	Name   string
	Cookie Cookie
	// Optional: the tool works without it (a runtime build that lacks it).
	Optional bool
}

// Probes finds the locations of each wanted probe of l's provider among
// the files pid maps, and their cookies, in the same order (for
// usdt.Configure). A missing probe that is not optional is an error.
func Probes(l Lang, pid int, want []Want) ([]usdt.Probe, []uint64, error) {
	all, err := usdt.List(usdt.Target{PID: pid})
	if err != nil {
		return nil, nil, err
	}
	var probes []usdt.Probe
	var cookies []uint64
	for _, w := range want {
		n := 0
		for _, p := range all {
			if p.Provider == Provider(l) && p.Name == w.Name {
				probes = append(probes, p)
				cookies = append(cookies, w.Cookie.Value())
				n++
			}
		}
		if n == 0 && !w.Optional {
			return nil, nil, fmt.Errorf("process %d (%s): no USDT probe %s:%s in its files (a runtime built without --enable-dtrace?)", pid, l, Provider(l), w.Name)
		}
	}
	return probes, cookies, nil
}

// Method is where a language's method probes put the names: class (or
// file) and method.
type Method struct {
	Entry, Return []string // probe names
	Class, Method Str
}

// Methods returns l's method probes. Ruby has two pairs: Ruby-defined
// methods (method__entry/return, which fire only while a TracePoint is
// on, see the tools' help) and C methods (cmethod__entry/return).
func Methods(l Lang) (Method, bool) {
	switch l {
	case Java:
		// method__entry(thread id, class, class len, method, method len,
		// signature, signature len).
		return Method{Entry: []string{"method__entry"}, Return: []string{"method__return"},
			Class: Str{1, 2}, Method: Str{3, 4}}, true
	case Python:
		// function__entry(filename, funcname, lineno).
		return Method{Entry: []string{"function__entry"}, Return: []string{"function__return"},
			Class: CStr(0), Method: CStr(1)}, true
	case Ruby:
		// method__entry(classname, methodname, filename, lineno).
		return Method{Entry: []string{"method__entry", "cmethod__entry"}, Return: []string{"method__return", "cmethod__return"},
			Class: CStr(0), Method: CStr(1)}, true
	}
	return Method{}, false
}

// ErrJavaFlag is the error for a JVM whose method probes cannot fire.
var ErrJavaFlag = errors.New("the JVM was started without -XX:+ExtendedDTraceProbes (or -XX:+DTraceMethodProbes): its method probes never fire; restart it with the flag (it slows calls down 25-70x even when nothing is attached)")

// JavaMethodProbes reports whether the JVM pid was started with
// -XX:+ExtendedDTraceProbes or -XX:+DTraceMethodProbes: on its command
// line, in JAVA_TOOL_OPTIONS, JDK_JAVA_OPTIONS or _JAVA_OPTIONS, or in
// the JVM arguments its hsperfdata file records (which include argument
// files); the last setting of a flag wins.
func JavaMethodProbes(pid int) bool {
	var sources [][]byte
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		sources = append(sources, b)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil {
		for _, kv := range bytes.Split(b, []byte{0}) {
			for _, k := range []string{"JAVA_TOOL_OPTIONS=", "JDK_JAVA_OPTIONS=", "_JAVA_OPTIONS="} {
				if bytes.HasPrefix(kv, []byte(k)) {
					sources = append(sources, kv)
				}
			}
		}
	}
	if b, ok := hsperfdata(pid); ok {
		sources = append(sources, b)
	}
	for _, s := range sources {
		if flagOn(s, "ExtendedDTraceProbes") || flagOn(s, "DTraceMethodProbes") {
			return true
		}
	}
	return false
}

// flagOn reports whether the last -XX:[+-]name in b is a +.
func flagOn(b []byte, name string) bool {
	plus := bytes.LastIndex(b, []byte("-XX:+"+name))
	minus := bytes.LastIndex(b, []byte("-XX:-"+name))
	return plus >= 0 && plus > minus
}

// hsperfdata reads the JVM's performance-data file,
// /tmp/hsperfdata_USER/NSPID as the JVM sees it, which holds its
// arguments (java.rt.vmArgs) as text.
func hsperfdata(pid int) ([]byte, bool) {
	nspid := strconv.Itoa(pid)
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" {
				nspid = f[len(f)-1]
			}
		}
	}
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/root/tmp/hsperfdata_*/%s", pid, nspid))
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			return b, true
		}
	}
	return nil, false
}

// Text is a name from a traced program (class, method, thread): text
// and JSON print it escaped (event.AppendEscaped), so that it cannot
// forge a line or reach the terminal.
type Text string

// Append appends the escaped text.
func (t Text) Append(b []byte) []byte { return event.AppendEscaped(b, []byte(t)) }

// MarshalJSON writes the escaped text as a JSON string.
func (t Text) MarshalJSON() ([]byte, error) { return json.Marshal(string(t.Append(nil))) }

// CString is b up to its first NUL.
func CString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// PythonNote is what the tools say of Debian's python3.11, whose
// function__entry probe fires only for generators and coroutines.
const PythonNote = "python 3.11 (before the 2025 fix of cpython#98894) fires function__entry only for generators and coroutines unless the program has a profile hook (sys.setprofile): calls are counted at function__return, which fires for every call"

// Int8String is a C string of a bpf2go char array up to its first NUL.
func Int8String(a []int8) string {
	b := make([]byte, 0, len(a))
	for _, c := range a {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// RubyNote is what the tools say when they saw Ruby's C methods but no
// method defined in Ruby.
const RubyNote = "ruby fires method__entry/return (methods defined in Ruby) only while the program has a TracePoint for :call and :return enabled; C methods were seen, Ruby-defined ones were not (see --help)"
