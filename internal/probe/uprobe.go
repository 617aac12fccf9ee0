package probe

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
)

// Uprobes at many functions of one file attach with one uprobe-multi link
// (Linux 6.6+): one system call and one file descriptor for a thousand
// functions. A program attaches that way only when it was loaded for it
// (expected attach type BPF_TRACE_UPROBE_MULTI), and then only that way:
// PrepareUprobes sets that up before the load where the kernel has such
// links. Everywhere else, or for a program not prepared, UprobesAt
// attaches one uprobe per function.

// HaveUprobeMulti reports whether this kernel has uprobe-multi links
// (probed once per process).
func HaveUprobeMulti() bool {
	haveMultiOnce.Do(func() { haveMulti = features.HaveBPFLinkUprobeMulti() == nil })
	return haveMulti
}

var (
	haveMultiOnce sync.Once
	haveMulti     bool
)

// PrepareUprobes loads the named programs of cs (SEC("uprobe") or
// SEC("uretprobe") programs) for uprobe-multi links where the kernel has
// them; call it from the tool's Configure. Programs left alone attach one
// uprobe per offset.
func PrepareUprobes(cs *ebpf.CollectionSpec, progs ...string) error {
	if !HaveUprobeMulti() {
		return nil
	}
	for _, name := range progs {
		p := cs.Programs[name]
		if p == nil {
			return fmt.Errorf("program %s missing from the BPF object", name)
		}
		if p.Type != ebpf.Kprobe {
			return fmt.Errorf("program %s is a %v program, not a uprobe", name, p.Type)
		}
		p.AttachType = ebpf.AttachTraceUprobeMulti
	}
	return nil
}

// UprobesAt attaches prog at every offset of one file (uprobe-multi link
// where the kernel has it and PrepareUprobes prepared prog, else one
// uprobe each); cookies, when not nil, are handed to the program
// (bpf_get_attach_cookie) one per offset; ret makes them uretprobes; pid 0
// = all processes, else that process only (its threads included), which
// other processes then do not even trap into.
func UprobesAt(prog, path string, offsets, cookies []uint64, ret bool, pid int) Attachment {
	kind := "uprobe"
	if ret {
		kind = "uretprobe"
	}
	target := fmt.Sprintf("%s %s (%d offsets)", kind, path, len(offsets))
	if len(offsets) == 1 {
		target = fmt.Sprintf("%s %s+%#x", kind, path, offsets[0])
	}
	return Attachment{Program: prog, Target: target, pid: pid,
		attach: func(p *ebpf.Program) (link.Link, error) {
			return attachUprobes(p, path, offsets, nil, cookies, ret, pid)
		}}
}

// UprobeRefsAt is UprobesAt for USDT probes: refs[i], when not 0, is the
// file offset of offsets[i]'s semaphore, which the kernel increments
// while the uprobe is attached (and decrements when it goes, even if
// owl is killed), so that probes guarded by *_ENABLED() fire. each
// attaches one uprobe per offset even where uprobe-multi links exist.
func UprobeRefsAt(prog, path string, offsets, refs, cookies []uint64, each bool, pid int) Attachment {
	a := UprobesAt(prog, path, offsets, cookies, false, pid)
	a.attach = func(p *ebpf.Program) (link.Link, error) {
		if len(refs) != len(offsets) {
			return nil, fmt.Errorf("%d semaphores for %d offsets", len(refs), len(offsets))
		}
		if each {
			return attachEach(p, path, offsets, refs, cookies, false, pid)
		}
		return attachUprobes(p, path, offsets, refs, cookies, false, pid)
	}
	return a
}

// UprobeEachAt is UprobesAt with one uprobe per offset, never a
// uprobe-multi link: for programs not prepared with PrepareUprobes, and
// to test that path on kernels that have the links.
func UprobeEachAt(prog, path string, offsets, cookies []uint64, ret bool, pid int) Attachment {
	a := UprobesAt(prog, path, offsets, cookies, ret, pid)
	a.attach = func(p *ebpf.Program) (link.Link, error) {
		return attachEach(p, path, offsets, nil, cookies, ret, pid)
	}
	return a
}

// checkOffsets rejects what no attach can do.
func checkOffsets(offsets, cookies []uint64) error {
	if len(offsets) == 0 {
		return errors.New("no offsets to attach to")
	}
	if cookies != nil && len(cookies) != len(offsets) {
		return fmt.Errorf("%d cookies for %d offsets", len(cookies), len(offsets))
	}
	return nil
}

func attachUprobes(p *ebpf.Program, path string, offsets, refs, cookies []uint64, ret bool, pid int) (link.Link, error) {
	if err := checkOffsets(offsets, cookies); err != nil {
		return nil, err
	}
	if !HaveUprobeMulti() {
		return attachEach(p, path, offsets, refs, cookies, ret, pid)
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, err
	}
	opts := &link.UprobeMultiOptions{Addresses: offsets, RefCtrOffsets: refs, Cookies: cookies, PID: uint32(pid)}
	attach := ex.UprobeMulti
	if ret {
		attach = ex.UretprobeMulti
	}
	l, multiErr := attach(nil, p, opts)
	if multiErr == nil {
		return l, nil
	}
	// Not prepared for uprobe-multi (EINVAL): one uprobe each. A program
	// that was prepared fails that way too, and the first error says why.
	l, err = attachEach(p, path, offsets, refs, cookies, ret, pid)
	if err != nil {
		return nil, fmt.Errorf("uprobe-multi: %w; one uprobe each: %w", multiErr, err)
	}
	return l, nil
}

// attachEach attaches one uprobe per offset; refs, when not nil, are
// their semaphores' file offsets.
func attachEach(p *ebpf.Program, path string, offsets, refs, cookies []uint64, ret bool, pid int) (link.Link, error) {
	if err := checkOffsets(offsets, cookies); err != nil {
		return nil, err
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, err
	}
	all := &links{}
	for i, off := range offsets {
		opts := &link.UprobeOptions{Address: off, PID: pid}
		if cookies != nil {
			opts.Cookie = cookies[i]
		}
		if refs != nil {
			opts.RefCtrOffset = refs[i]
		}
		var l link.Link
		if ret {
			l, err = ex.Uretprobe("", p, opts)
		} else {
			l, err = ex.Uprobe("", p, opts)
		}
		if err != nil {
			all.Close()
			return nil, fmt.Errorf("offset %#x: %w", off, err)
		}
		all.add(l)
	}
	return all, nil
}

// links is several links as one: the uprobes of one UprobesAt where
// uprobe-multi links are missing. It embeds the first link because
// link.Link cannot be implemented outside cilium/ebpf.
type links struct {
	link.Link
	rest []link.Link
}

func (l *links) add(x link.Link) {
	if l.Link == nil {
		l.Link = x
		return
	}
	l.rest = append(l.rest, x)
}

// Close closes every link.
func (l *links) Close() error {
	var errs []error
	if l.Link != nil {
		errs = append(errs, l.Link.Close())
	}
	for _, x := range l.rest {
		errs = append(errs, x.Close())
	}
	l.Link, l.rest = nil, nil
	return errors.Join(errs...)
}

// Update, Pin and Unpin are not supported: the embedded link's would act
// on the first uprobe only. Info is the first uprobe's.
func (l *links) Update(*ebpf.Program) error {
	return fmt.Errorf("update a set of uprobes: %w", link.ErrNotSupported)
}

func (l *links) Pin(string) error {
	return fmt.Errorf("pin a set of uprobes: %w", link.ErrNotSupported)
}

func (l *links) Unpin() error {
	return fmt.Errorf("unpin a set of uprobes: %w", link.ErrNotSupported)
}

// Detach detaches every link.
func (l *links) Detach() error {
	var errs []error
	if l.Link != nil {
		errs = append(errs, l.Link.Detach())
	}
	for _, x := range l.rest {
		errs = append(errs, x.Detach())
	}
	return errors.Join(errs...)
}

// TracepointCookieAt attaches prog to the tracepoint group:name, handing
// it cookie (bpf_get_attach_cookie, Linux 5.15+): one program counts many
// tracepoints apart, as funccount's t:GROUP:NAME patterns.
func TracepointCookieAt(prog, group, name string, cookie uint64) Attachment {
	return Attachment{Program: prog, Target: group + ":" + name,
		attach: func(p *ebpf.Program) (link.Link, error) {
			return link.Tracepoint(group, name, p, &link.TracepointOptions{Cookie: cookie})
		}}
}
