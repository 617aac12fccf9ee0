package probe

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// One program at many kernel functions. A kprobe program attaches
// anywhere: KprobeMultiAt gives it every function in one link (Linux 5.18+
// with CONFIG_FPROBE), KprobesEachAt one kprobe each. fentry, fexit and
// LSM programs are bound to their target when loaded, so TracingEachAt
// loads one copy per target, sharing the collection's maps. Either way the
// cookie of each target (bpf_get_attach_cookie) tells the program which
// one fired: counting tools use it as an index.
//
// fentry and fexit links take a cookie only on newer kernels (Debian's
// 6.1 refuses one: ErrTracingCookie); there a program can tell its target
// by bpf_get_func_ip instead, given no cookies.
//
// Where targets are attached one by one, one that fails (a function the
// kernel will not trace, an LSM hook BPF may not use) is skipped and
// listed in Session.Skipped with the reason: the others still count. The
// hook fails only when no target attaches.

// KprobeMultiAt attaches prog (a SEC("kprobe.multi") program) to the entry
// of every symbol in one kprobe-multi link, handing cookies[i] to
// symbols[i]. The kernel takes them all or none.
func KprobeMultiAt(prog string, symbols []string, cookies []uint64) Attachment {
	return Attachment{Program: prog, Target: plural(symbols, "function"),
		attach: func(p *ebpf.Program) (link.Link, error) {
			if err := checkCookies(len(symbols), cookies); err != nil {
				return nil, err
			}
			return link.KprobeMulti(p, link.KprobeMultiOptions{Symbols: symbols, Cookies: cookies})
		}}
}

// KprobesEachAt attaches prog (a SEC("kprobe") program) with one kprobe
// per symbol, handing cookies[i] to symbols[i]; a symbol that fails is
// skipped (Session.Skipped).
func KprobesEachAt(prog string, symbols []string, cookies []uint64) Attachment {
	return Attachment{Program: prog, Target: plural(symbols, "function"),
		each: &perTarget{targets: symbols, cookies: cookies, kprobe: true}}
}

// TracingEachAt loads a copy of prog (a fentry, fexit or LSM program) for
// each target (a kernel function, or an LSM hook name such as file_open)
// and attaches it with cookies[i] (none when cookies is nil); a target
// that fails to load or attach is skipped (Session.Skipped). A kernel
// whose links take no cookie fails the attachment with ErrTracingCookie.
func TracingEachAt(prog string, targets []string, cookies []uint64) Attachment {
	return Attachment{Program: prog, Target: plural(targets, "target"),
		each: &perTarget{targets: targets, cookies: cookies}}
}

// ErrTracingCookie is the error of TracingEachAt with cookies where the
// kernel's fentry/fexit (or LSM) links take none.
var ErrTracingCookie = errors.New("this kernel's tracing links take no cookie")

func plural(names []string, what string) string {
	if len(names) == 1 {
		return names[0]
	}
	return fmt.Sprintf("%d %ss", len(names), what)
}

func checkCookies(n int, cookies []uint64) error {
	if n == 0 {
		return errors.New("no targets to attach to")
	}
	if cookies != nil && len(cookies) != n {
		return fmt.Errorf("%d cookies for %d targets", len(cookies), n)
	}
	return nil
}

// notSupportedLimit is how many targets must fail as not supported
// (ebpf.ErrNotSupported) before any attaches for the kernel, rather than
// the targets, to be taken to lack the feature.
const notSupportedLimit = 8

// perTarget is an attachment of one program at many targets, one link
// each.
type perTarget struct {
	targets []string
	cookies []uint64
	kprobe  bool // one kprobe each; else a loaded copy per target
}

func (pt *perTarget) cookie(i int) uint64 {
	if pt.cookies == nil {
		return 0
	}
	return pt.cookies[i]
}

// attach attaches every target, skipping (and listing) those that fail.
// cs is the spec coll was loaded from; prog names the program in both.
func (pt *perTarget) attach(cs *ebpf.CollectionSpec, coll *ebpf.Collection, prog string, cache *btf.Cache) (link.Link, []Failure, error) {
	if err := checkCookies(len(pt.targets), pt.cookies); err != nil {
		return nil, nil, err
	}
	all := &eachLinks{}
	var skipped []Failure
	unsupported := 0
	for i, target := range pt.targets {
		var l link.Link
		var err error
		if pt.kprobe {
			l, err = link.Kprobe(target, coll.Programs[prog], &link.KprobeOptions{Cookie: pt.cookie(i)})
		} else {
			l, err = attachCopy(cs, coll, prog, target, pt.cookie(i), cache)
			// cilium/ebpf falls back to a raw tracepoint link where
			// the kernel will not make a tracing link, and those take
			// no cookie: a non-zero one is refused as not supported.
			// (A zero cookie attaches: the first target often has it.)
			if pt.cookie(i) != 0 && errors.Is(err, ebpf.ErrNotSupported) {
				all.Close()
				return nil, nil, fmt.Errorf("%s: %w (%v)", target, ErrTracingCookie, err)
			}
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			// Either this target's fault (6.1's x86 trampolines take
			// at most 6 arguments: security_compute_sid has 8) or the
			// kernel's (no trampolines at all): the first targets
			// tell, so that a kernel without the feature is not
			// asked once per target.
			unsupported++
			if all.Link == nil && unsupported == notSupportedLimit {
				return nil, nil, fmt.Errorf("the first %d targets: %s: %w", unsupported, target, err)
			}
		}
		if err != nil {
			skipped = append(skipped, Failure{Hook: target, Err: err})
			continue
		}
		all.add(l)
	}
	if all.Link == nil {
		return nil, skipped, fmt.Errorf("none of %d targets attached; %s: %w", len(pt.targets), skipped[0].Hook, skipped[0].Err)
	}
	return all, skipped, nil
}

// attachCopy loads prog again bound to target, with the maps of coll, and
// attaches it. The copy's file descriptor is closed once linked: the link
// holds the program.
func attachCopy(cs *ebpf.CollectionSpec, coll *ebpf.Collection, prog, target string, cookie uint64, cache *btf.Cache) (link.Link, error) {
	ps := cs.Programs[prog].Copy()
	ps.AttachTo = target
	one := &ebpf.CollectionSpec{
		Maps:      cs.Maps,
		Programs:  map[string]*ebpf.ProgramSpec{prog: ps},
		ByteOrder: cs.ByteOrder,
		Types:     cs.Types,
	}
	c, err := ebpf.NewCollectionWithOptions(one, ebpf.CollectionOptions{MapReplacements: coll.Maps, Cache: cache})
	if err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load: %w", verr)
		}
		return nil, fmt.Errorf("load: %w", err)
	}
	defer c.Close()
	p := c.Programs[prog]
	if ps.Type == ebpf.LSM {
		return link.AttachLSM(link.LSMOptions{Program: p, Cookie: cookie})
	}
	// The attach type makes cilium/ebpf create a tracing link, the only
	// kind that takes a cookie (without it, a raw tracepoint).
	return link.AttachTracing(link.TracingOptions{Program: p, AttachType: ps.AttachType, Cookie: cookie})
}

// closeAtOnce is how many links of one attachment close at a time. In the
// TCG guests, 287 kprobes closed one after another took 33-36 s on 6.1,
// 16-23 s this way; fentry links gained nothing (317: ~46 s before, 51-63 s
// this way on 6.12, 285: 47-59 s on 6.1): the kernel retires their
// trampolines one at a time whoever asks.
const closeAtOnce = 16

// eachLinks are the links of a per-target attachment, closed concurrently
// (closeAtOnce at a time), so that the waits of kprobe closes overlap.
type eachLinks struct{ links }

// Close closes every link.
func (l *eachLinks) Close() error {
	all := l.links.rest
	if l.links.Link != nil {
		all = append([]link.Link{l.links.Link}, all...)
	}
	l.links.Link, l.links.rest = nil, nil
	errs := make([]error, len(all))
	slots := make(chan struct{}, closeAtOnce)
	var wg sync.WaitGroup
	for i, x := range all {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			errs[i] = x.Close()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
