package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	goruntime "runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal io_uring client for tests (raw io_uring_setup/io_uring_enter
// and the mmapped rings, no liburing): io_uring does its work without the
// syscalls that syscall-based tools hook, so tests must be able to make
// requests the way a server evading them would.

// io_uring opcodes (UAPI, stable).
const (
	OpAccept  = 13 // IORING_OP_ACCEPT
	OpConnect = 16 // IORING_OP_CONNECT
	OpOpenat  = 18 // IORING_OP_OPENAT
)

// SQE flags and request-specific values (UAPI).
const (
	SQEAsync = 1 << 4 // IOSQE_ASYNC: run the request in an io-wq worker thread

	AcceptMultishot = 1 << 0 // IORING_ACCEPT_MULTISHOT, in SQE.Ioprio
	// FileIndexAlloc in SQE.FileIndex installs the new file in a free slot
	// of the ring's fixed-file table instead of the process's fd table;
	// the completion's result is the slot. An accept then takes no
	// SOCK_CLOEXEC (EINVAL): clear its OpFlags.
	FileIndexAlloc = ^uint32(0) // IORING_FILE_INDEX_ALLOC

	CQEFMore = 1 << 1 // IORING_CQE_F_MORE: a multishot request goes on
)

const (
	offSQRing = 0          // IORING_OFF_SQ_RING
	offCQRing = 0x8000000  // IORING_OFF_CQ_RING
	offSQEs   = 0x10000000 // IORING_OFF_SQES

	enterGetEvents = 1 << 0 // IORING_ENTER_GETEVENTS
	registerFiles  = 2      // IORING_REGISTER_FILES
)

// SQE is struct io_uring_sqe (64 bytes).
type SQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64 // addr2
	Addr        uint64
	Len         uint32
	OpFlags     uint32 // accept_flags, open_flags, ...
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	FileIndex   uint32 // file_index (direct descriptors), splice_fd_in
	Addr3       uint64
	_           uint64
}

// CQE is struct io_uring_cqe (16 bytes).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// Err is the completion's error, nil when Res is not negative.
func (c CQE) Err() error {
	if c.Res < 0 {
		return unix.Errno(-c.Res)
	}
	return nil
}

// ringParams is struct io_uring_params (120 bytes).
type ringParams struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	_                                                                      [3]uint32
	SQOff                                                                  sqOffsets
	CQOff                                                                  cqOffsets
}

// sqOffsets is struct io_sqring_offsets: where the fields are in the SQ ring.
type sqOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, _ uint32
	UserAddr                                                    uint64
}

// cqOffsets is struct io_cqring_offsets.
type cqOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, _ uint32
	UserAddr                                                    uint64
}

// Ring is one io_uring instance. Submit and Wait may be called from
// different goroutines, but not Submit from two at once, nor Wait.
type Ring struct {
	fd                  int
	sqRing, cqRing, sqe []byte
	sqTail, cqHead      *uint32
	sqHead, cqTail      *uint32
	sqMask, cqMask      uint32
	sqArray             unsafe.Pointer
	cqes                unsafe.Pointer
	// Memory the kernel reads after Submit (addresses, paths) stays pinned
	// until Close: Go must not move or free it under a request.
	pinner goruntime.Pinner
}

// NewRing sets up a ring with room for entries requests.
func NewRing(entries uint32) (*Ring, error) {
	var p ringParams
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd)}
	var err error
	// Three separate mappings work on every kernel, with or without
	// IORING_FEAT_SINGLE_MMAP.
	if r.sqRing, err = r.mmap(offSQRing, int(p.SQOff.Array+p.SQEntries*4)); err != nil {
		return nil, err
	}
	if r.cqRing, err = r.mmap(offCQRing, int(p.CQOff.CQEs+p.CQEntries*uint32(unsafe.Sizeof(CQE{})))); err != nil {
		return nil, err
	}
	if r.sqe, err = r.mmap(offSQEs, int(p.SQEntries*uint32(unsafe.Sizeof(SQE{})))); err != nil {
		return nil, err
	}
	r.sqHead = (*uint32)(unsafe.Pointer(&r.sqRing[p.SQOff.Head]))
	r.sqTail = (*uint32)(unsafe.Pointer(&r.sqRing[p.SQOff.Tail]))
	r.sqMask = *(*uint32)(unsafe.Pointer(&r.sqRing[p.SQOff.RingMask]))
	r.sqArray = unsafe.Pointer(&r.sqRing[p.SQOff.Array])
	r.cqHead = (*uint32)(unsafe.Pointer(&r.cqRing[p.CQOff.Head]))
	r.cqTail = (*uint32)(unsafe.Pointer(&r.cqRing[p.CQOff.Tail]))
	r.cqMask = *(*uint32)(unsafe.Pointer(&r.cqRing[p.CQOff.RingMask]))
	r.cqes = unsafe.Pointer(&r.cqRing[p.CQOff.CQEs])
	return r, nil
}

func (r *Ring) mmap(off int64, size int) ([]byte, error) {
	b, err := unix.Mmap(r.fd, off, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("mmap io_uring at %#x: %w", off, err)
	}
	return b, nil
}

// Close unmaps and closes the ring, which cancels what is still in flight.
// Closing again does nothing.
func (r *Ring) Close() error {
	if r.fd < 0 {
		return nil
	}
	for _, b := range [][]byte{r.sqRing, r.cqRing, r.sqe} {
		if b != nil {
			unix.Munmap(b)
		}
	}
	r.sqRing, r.cqRing, r.sqe = nil, nil, nil
	err := unix.Close(r.fd)
	r.fd = -1
	r.pinner.Unpin()
	return err
}

// Submit queues one request and hands it to the kernel. A request whose
// work cannot be done at once (an accept with no connection waiting) is
// finished later by the submitting thread (task work) or an io-wq worker
// thread of this process.
func (r *Ring) Submit(s SQE) error {
	tail := atomic.LoadUint32(r.sqTail)
	if tail-atomic.LoadUint32(r.sqHead) > r.sqMask {
		return errors.New("io_uring submission queue full")
	}
	i := tail & r.sqMask
	*(*SQE)(unsafe.Pointer(&r.sqe[uintptr(i)*unsafe.Sizeof(SQE{})])) = s
	*(*uint32)(unsafe.Add(r.sqArray, 4*i)) = i
	// Go's atomics are sequentially consistent: the SQE is written before
	// the kernel can see the new tail.
	atomic.StoreUint32(r.sqTail, tail+1)
	for {
		n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 1, 0, 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
		if n != 1 {
			return fmt.Errorf("io_uring_enter submitted %d requests, want 1", n)
		}
		return nil
	}
}

// Wait returns the next completion, blocking until there is one.
func (r *Ring) Wait() (CQE, error) {
	for {
		head := atomic.LoadUint32(r.cqHead)
		if head != atomic.LoadUint32(r.cqTail) {
			c := *(*CQE)(unsafe.Add(r.cqes, uintptr(head&r.cqMask)*unsafe.Sizeof(CQE{})))
			atomic.StoreUint32(r.cqHead, head+1)
			return c, nil
		}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), 0, 1, enterGetEvents, 0, 0)
		if errno != 0 && errno != unix.EINTR {
			return CQE{}, fmt.Errorf("io_uring_enter(GETEVENTS): %w", errno)
		}
	}
}

// Do submits one request and waits for its completion (the only one in
// flight).
func (r *Ring) Do(s SQE) (CQE, error) {
	if err := r.Submit(s); err != nil {
		return CQE{}, err
	}
	return r.Wait()
}

// RegisterSparseFiles gives the ring a fixed-file table of n empty slots,
// for requests that install direct descriptors (FileIndexAlloc).
func (r *Ring) RegisterSparseFiles(n int) error {
	fds := make([]int32, n)
	for i := range fds {
		fds[i] = -1
	}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerFiles,
		uintptr(unsafe.Pointer(&fds[0])), uintptr(n), 0, 0)
	goruntime.KeepAlive(fds)
	if errno != 0 {
		return fmt.Errorf("io_uring_register(FILES): %w", errno)
	}
	return nil
}

// pin keeps p (Go memory) in place until Close and returns its address
// for an SQE.
func (r *Ring) pin(p unsafe.Pointer) uint64 {
	r.pinner.Pin(p)
	return uint64(uintptr(p))
}

// Accept is an IORING_OP_ACCEPT on the listening socket fd (the peer's
// address is not asked for). Set Ioprio, FileIndex or Flags for
// multishot, direct or async accepts.
func (r *Ring) Accept(fd int, userData uint64) SQE {
	return SQE{Opcode: OpAccept, Fd: int32(fd), OpFlags: unix.SOCK_CLOEXEC, UserData: userData}
}

// Connect is an IORING_OP_CONNECT of socket fd to ap.
func (r *Ring) Connect(fd int, ap netip.AddrPort, userData uint64) SQE {
	var addr unsafe.Pointer
	var size uintptr
	var port uint16 // in network order in memory
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&port))[:], ap.Port())
	if ap.Addr().Is4() {
		sa := &unix.RawSockaddrInet4{Family: unix.AF_INET, Port: port, Addr: ap.Addr().As4()}
		addr, size = unsafe.Pointer(sa), unsafe.Sizeof(*sa)
	} else {
		sa := &unix.RawSockaddrInet6{Family: unix.AF_INET6, Port: port, Addr: ap.Addr().As16()}
		addr, size = unsafe.Pointer(sa), unsafe.Sizeof(*sa)
	}
	// The address length goes in addr2 as a value, not a pointer.
	return SQE{Opcode: OpConnect, Fd: int32(fd), Addr: r.pin(addr), Off: uint64(size), UserData: userData}
}

// Openat is an IORING_OP_OPENAT of path relative to dirfd.
func (r *Ring) Openat(dirfd int, path string, flags int, mode uint32, userData uint64) (SQE, error) {
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		return SQE{}, err
	}
	return SQE{Opcode: OpOpenat, Fd: int32(dirfd), Addr: r.pin(unsafe.Pointer(p)), Len: mode,
		OpFlags: uint32(flags), UserData: userData}, nil
}
