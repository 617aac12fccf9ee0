package setuids

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
)

func init() {
	scripts["ia32"] = ia32Script
}

// ia32Script makes every ia32 set*id call: the eight of the i386 table with
// 16-bit ids (whose -1 is 0xffff) and the eight with 32-bit ids, as root,
// then two refused ones as nobody. Numbers are the i386 table's.
var ia32Script = []step{
	{208, [3]uint32{unchanged, unchanged, unchanged}, true, "ia32:setresuid32 ruid=-1 euid=-1 suid=-1 (0)", 0},
	{208, [3]uint32{unchanged, 3000000000, unchanged}, true, "ia32:setresuid32 ruid=-1 euid=3000000000 suid=-1 (0)", 0},
	{208, [3]uint32{unchanged, 0, unchanged}, true, "ia32:setresuid32 ruid=-1 euid=0 suid=-1 (0)", 0},
	{164, [3]uint32{0xffff, 0, 0xffff}, true, "ia32:setresuid ruid=-1 euid=0 suid=-1 (0)", 0},
	{203, [3]uint32{unchanged, 0}, true, "ia32:setreuid32 ruid=-1 euid=0 (0)", 0},
	{70, [3]uint32{0xffff, 0}, true, "ia32:setreuid ruid=-1 euid=0 (0)", 0},
	{213, [3]uint32{0}, true, "ia32:setuid32 uid=0 (0)", 0},
	{23, [3]uint32{0}, true, "ia32:setuid uid=0 (0)", 0},
	{210, [3]uint32{unchanged, 0, unchanged}, true, "ia32:setresgid32 rgid=-1 egid=0 sgid=-1 (0)", 0},
	{170, [3]uint32{0xffff, 0, 0xffff}, true, "ia32:setresgid rgid=-1 egid=0 sgid=-1 (0)", 0},
	{204, [3]uint32{unchanged, 0}, true, "ia32:setregid32 rgid=-1 egid=0 (0)", 0},
	{71, [3]uint32{0xffff, 0}, true, "ia32:setregid rgid=-1 egid=0 (0)", 0},
	{214, [3]uint32{0}, true, "ia32:setgid32 gid=0 (0)", 0},
	{46, [3]uint32{0}, true, "ia32:setgid gid=0 (0)", 0},
	{215, [3]uint32{4294967294}, true, "ia32:setfsuid32 uid=4294967294 (prevuid=0)", 0},
	{215, [3]uint32{0}, true, "ia32:setfsuid32 uid=0 (prevuid=4294967294)", 0},
	{138, [3]uint32{0xffff}, true, "ia32:setfsuid uid=-1 (prevuid=0)", 0},
	{216, [3]uint32{0}, true, "ia32:setfsgid32 gid=0 (prevgid=0)", 0},
	{139, [3]uint32{0xffff}, true, "ia32:setfsgid gid=-1 (prevgid=0)", 0},
	// A native call between them: the same thread, told apart.
	{unix.SYS_SETRESUID, [3]uint32{65534, 65534, 65534}, false, "setresuid ruid=65534 euid=65534 suid=65534 (0)", 0},
	{213, [3]uint32{0}, true, "ia32:setuid32 uid=0 (-EPERM)", 65534},
	{23, [3]uint32{0}, true, "ia32:setuid uid=0 (-EPERM)", 65534},
}

// Issue 8 item 1: an ia32 setresuid32 that succeeded was not seen at all
// (the syscalls:* tracepoints ignore compat syscalls).
func TestIA32Calls(t *testing.T) {
	e2e.Require(t)
	e2e.RequireIA32(t)
	runScript(t, "ia32")
}
