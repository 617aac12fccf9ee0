// Package setuids traces the eight privilege-changing syscalls: setuid,
// setgid, setreuid, setregid, setresuid, setresgid, setfsuid, setfsgid;
// on x86-64 also their 32-bit (ia32) forms, which the i386 table has twice:
// with 16-bit ids (setuid) and with 32-bit ids (setuid32).
package setuids

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"github.com/cilium/ebpf"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/sysnames"
	"github.com/owlbpf/owl/internal/tool"
)

// call describes one traced syscall: its argument names and, for setfs*,
// the name of what it returns (the previous id, not an error).
type call struct {
	name   string
	args   []string
	prev   string
	bits16 bool // ia32's old calls: 16-bit ids, whose -1 is 0xffff
}

var calls = []call{
	{"setuid", []string{"uid"}, "", false},
	{"setgid", []string{"gid"}, "", false},
	{"setreuid", []string{"ruid", "euid"}, "", false},
	{"setregid", []string{"rgid", "egid"}, "", false},
	{"setresuid", []string{"ruid", "euid", "suid"}, "", false},
	{"setresgid", []string{"rgid", "egid", "sgid"}, "", false},
	{"setfsuid", []string{"uid"}, "prevuid", false},
	{"setfsgid", []string{"gid"}, "prevgid", false},
}

// ia32Calls are the calls of the i386 table that x86-64 runs for 32-bit
// syscalls: each of calls with 16-bit ids under its own name, and with
// 32-bit ids as name+"32". configure hands their numbers to the BPF
// programs.
var ia32Calls = func() []call {
	var cs []call
	for _, c := range calls {
		c16, c32 := c, c
		c16.bits16 = true
		c32.name += "32"
		cs = append(cs, c16, c32)
	}
	return cs
}()

// Event is one completed call. Its task part was taken at exit, except
// UID: the caller's uid before the call.
type Event struct {
	event.Task
	// Syscall is the name in the table of the call's ABI: for an ia32
	// call the i386 table's (setresuid32, or setresuid with 16-bit ids).
	Syscall string `json:"syscall"`
	// IA32 marks a 32-bit syscall of x86-64: int $0x80 in a 64-bit
	// process, or any syscall of a 32-bit one.
	IA32 bool `json:"ia32"`
	Args Args `json:"args"`
	// Ret is the return value: 0 or -errno, or for setfsuid/setfsgid the
	// previous fsuid/fsgid.
	Ret int64 `json:"ret"`
}

// Unchanged is the id that means "leave unchanged": (uid_t)-1, shown as -1.
// A 16-bit call's 0xffff is its -1 and is given as Unchanged too, as the
// kernel reads it. Every other id, 2^31 and above included, is an id.
const Unchanged = ^uint32(0)

// Args are a call's ids by name.
type Args struct {
	call *call
	vals [3]uint32
}

// Get returns the value of the named argument; Unchanged is -1.
func (a Args) Get(name string) (uint32, bool) {
	if a.call == nil {
		return 0, false
	}
	for i, n := range a.call.args {
		if n == name {
			return a.vals[i], true
		}
	}
	return 0, false
}

// appendID appends id in decimal, or -1 for Unchanged.
func appendID(b []byte, id uint32) []byte {
	if id == Unchanged {
		return append(b, "-1"...)
	}
	return strconv.AppendUint(b, uint64(id), 10)
}

// AppendText appends "ruid=-1 euid=0 suid=-1".
func (a Args) AppendText(b []byte) []byte {
	if a.call == nil {
		return b
	}
	for i, n := range a.call.args {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, n...)
		b = append(b, '=')
		b = appendID(b, a.vals[i])
	}
	return b
}

// MarshalJSON gives {"ruid":-1,"euid":0,"suid":-1}.
func (a Args) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	if a.call != nil {
		for i, n := range a.call.args {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendQuote(b, n)
			b = append(b, ':')
			b = appendID(b, a.vals[i])
		}
	}
	return append(b, '}'), nil
}

// Config is setuids' own configuration: it has none; the task filters are
// in tool.Options.
type Config struct{}

// hookName says both parts of the hook. raw_syscalls is attached on
// x86-64 only, where the kernel runs 32-bit code (ia32Possible): elsewhere
// there are no ia32 calls to see (arm64's 32-bit tasks are not covered)
// and it would cost two programs on every syscall. They are raw tracepoint
// programs, which get the registers instead of a copied record: the
// cheapest way to run on every syscall.
const hookName = "tracepoint syscalls:sys_{enter,exit}_set*id + raw_syscalls:sys_{enter,exit} (ia32)"

func hooks(Config) []probe.Hook {
	h := probe.Hook{Kind: probe.Tracepoint, Name: hookName}
	for _, c := range calls {
		h.Attachments = append(h.Attachments,
			probe.TracepointAt(setuidsProgTpEnter, "syscalls", "sys_enter_"+c.name),
			probe.TracepointAt(setuidsProgTpExit, "syscalls", "sys_exit_"+c.name))
	}
	if ia32Possible() {
		h.Attachments = append(h.Attachments,
			probe.RawTracepointAt(setuidsProgTpRawEnter, "sys_enter"),
			probe.RawTracepointAt(setuidsProgTpRawExit, "sys_exit"))
	}
	return []probe.Hook{h}
}

// ia32Possible tells whether this kernel can run 32-bit x86 code: only
// then (CONFIG_IA32_EMULATION) does it have the abi.vsyscall32 sysctl.
func ia32Possible() bool {
	if runtime.GOARCH != "amd64" {
		return false
	}
	_, err := os.Stat("/proc/sys/abi/vsyscall32")
	return err == nil
}

// configure gives the BPF programs the ia32 set*id numbers, as the bitmap
// ia32_setid_nrs (bit n for number n).
func configure(_ Config, spec *ebpf.CollectionSpec) error {
	var v setuidsVariableSpecs
	if err := spec.Assign(&v); err != nil {
		return err
	}
	var nrs [4]uint64 // IA32_MAX_NR bits
	for _, c := range ia32Calls {
		nr, ok := sysnames.SyscallNr(sysnames.IA32, c.name)
		if !ok {
			return fmt.Errorf("no %s in the i386 syscall table", c.name)
		}
		if nr >= 64*len(nrs) {
			return fmt.Errorf("ia32 %s is %d, past the %d numbers the BPF bitmap holds", c.name, nr, 64*len(nrs))
		}
		nrs[nr/64] |= 1 << (nr % 64)
	}
	return v.Ia32SetidNrs.Set(nrs)
}

var spec = tool.Spec[Config, Event]{
	Name:    "setuids",
	Group:   "security",
	Summary: "Trace privilege-changing syscalls (set*uid, set*gid, setfs*)",
	Long: `Trace the privilege-changing syscalls setuid, setgid, setreuid, setregid,
setresuid, setresgid, setfsuid and setfsgid, with their arguments and result.
UID is the caller's uid when it made the call. Ids are unsigned; an argument
of -1 (4294967295, or 65535 for the 16-bit calls) means "unchanged". The
result is 0 or -ERRNO, except for setfsuid and setfsgid, which return the
previous fsuid/fsgid: shown as (prevuid=N) / (prevgid=N).

On x86-64, 32-bit syscalls (int $0x80, or a 32-bit process) are traced too
and named from the i386 table: setuid32 and the like, or setuid and the
like for the old calls with 16-bit ids. SYSCALL shows them as ia32:NAME;
in JSON "ia32" is true.`,
	Task: true,
	// Syscall rate: a loop can make 300k events a second, faster than the
	// reader formats them on a loaded machine: the ring holds the backlog
	// of a burst. 512 KiB lost 4% of a 300k-call storm in bench (2 CPUs,
	// load 10-20); 4 MiB none. A ring counts twice its size in RSS.
	RingBytes: 4 << 20,
	Load:      loadSetuids,
	Default:   func() Config { return Config{} },
	Hooks:     hooks,
	Configure: configure,
	Decoder: func(_ Config, s *probe.Session) (func([]byte, *Event) bool, error) {
		d := newDecoder()
		return func(raw []byte, e *Event) bool { return d.decode(s, raw, e) }, nil
	},
}

// Tool is setuids' registry entry.
var Tool = tool.Register(&spec, command)

// Open loads and attaches setuids.
func Open(cfg Config, opts tool.Options) (*tool.Source[Event], error) {
	return tool.Open(&spec, cfg, opts)
}

// callsByNr maps arch's syscall numbers to the calls of cs.
func callsByNr(arch string, cs []call) map[int32]*call {
	m := make(map[int32]*call, len(cs))
	for i := range cs {
		if nr, ok := sysnames.SyscallNr(arch, cs[i].name); ok {
			m[int32(nr)] = &cs[i]
		}
	}
	return m
}

// decoder names records by number, from the native table or, for ia32
// calls, from the i386 one: the two never mix (ia32 213 is setuid32,
// native 213 epoll_create).
type decoder struct {
	native, ia32 map[int32]*call
}

func newDecoder() *decoder {
	return &decoder{native: callsByNr(sysnames.Native(), calls), ia32: callsByNr(sysnames.IA32, ia32Calls)}
}

func (d *decoder) decode(s *probe.Session, raw []byte, e *Event) bool {
	r, ok := probe.View[setuidsEvent](raw)
	if !ok {
		return false
	}
	byNr := d.native
	if r.Ia32 != 0 {
		byNr = d.ia32
	}
	c := byNr[r.Nr]
	if c == nil {
		return false
	}
	*e = Event{
		Task:    s.Task(raw),
		Syscall: c.name,
		IA32:    r.Ia32 != 0,
		Args:    Args{call: c, vals: [3]uint32{c.id(r.Args[0]), c.id(r.Args[1]), c.id(r.Args[2])}},
		Ret:     r.Ret,
	}
	return true
}

// id is an argument as the kernel reads it: a 16-bit call takes the low 16
// bits, and its 0xffff means -1.
func (c *call) id(arg uint32) uint32 {
	if !c.bits16 {
		return arg
	}
	if arg&0xffff == 0xffff {
		return Unchanged
	}
	return arg & 0xffff
}

// AppendResult appends "(0)", "(-EPERM)" or, for setfs*, "(prevuid=1000)".
func (e *Event) AppendResult(b []byte) []byte {
	b = append(b, '(')
	switch {
	case e.Ret < 0:
		// setfs* return an id (0 to 2^32-1 in a long), so for them too a
		// negative result is an error: one a seccomp filter made, say.
		b = append(b, '-')
		b = append(b, sysnames.Errno(int(-e.Ret))...)
	case e.Args.call != nil && e.Args.call.prev != "":
		b = append(b, e.Args.call.prev...)
		b = append(b, '=')
		b = strconv.AppendInt(b, e.Ret, 10)
	default:
		b = strconv.AppendInt(b, e.Ret, 10)
	}
	return append(b, ')')
}
