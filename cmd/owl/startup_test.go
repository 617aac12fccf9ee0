package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/tools"
)

// Every owl start, even owl --version, builds the command tree, whose help
// lists each tool's hooks: that must open no file. Tools find their
// targets (bash, libpam) when a hook is tried, not when it is listed.
// fanotify sees every open on the root filesystem, told apart by pid.
func TestListingHooksOpensNothing(t *testing.T) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_UNLIMITED_QUEUE,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		t.Skipf("fanotify: %v", err)
	}
	defer unix.Close(fd)
	// Where /bin/bash and the libraries are.
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_OPEN, unix.AT_FDCWD, "/"); err != nil {
		t.Skipf("fanotify mark of /: %v", err)
	}

	root := newRoot(tools.All())
	for _, tl := range tools.All() {
		tl.Info()
	}

	opened, err := opensBy(fd, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if len(opened) > 0 {
		t.Errorf("building owl's %d commands and listing their hooks opened %s", len(root.Commands()), strings.Join(opened, ", "))
	}
}

// opensBy reads the events queued on the fanotify fd and returns the files
// process pid opened.
func opensBy(fd, pid int) ([]string, error) {
	var opened []string
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return opened, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read fanotify events: %w", err)
		}
		for b := buf[:n]; len(b) >= int(unsafe.Sizeof(unix.FanotifyEventMetadata{})); {
			m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&b[0]))
			if m.Mask&unix.FAN_Q_OVERFLOW != 0 {
				return nil, errors.New("fanotify queue overflow")
			}
			if m.Fd >= 0 {
				if int(m.Pid) == pid {
					path, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", m.Fd))
					opened = append(opened, path)
				}
				unix.Close(int(m.Fd))
			}
			b = b[m.Event_len:]
		}
	}
}
