package pamsnoop

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/uprobe"
)

// ErrNoPAM is wrapped when a file has no pam_start.
var ErrNoPAM = errors.New("not libpam: it has no pam_start")

// findLib finds the functions of one libpam: the file path (a path, or ""
// for libpam found as process pid sees it, or as owl does when pid is 0).
func findLib(path string, pid int) (Lib, error) {
	sp := uprobe.Spec{Target: path, Func: "pam_*"}
	if path == "" {
		sp.Target = "pam"
	} else if _, err := os.Stat(path); err != nil {
		return Lib{}, err // names the file
	}
	found, err := uprobe.Resolve(sp, uprobe.Options{PID: pid})
	if errors.Is(err, uprobe.ErrNoMatch) {
		return Lib{}, fmt.Errorf("%s: %w", sp.Target, ErrNoPAM)
	}
	if err != nil {
		return Lib{}, err
	}
	l := Lib{Path: found[0].Path, Offsets: make([]uint64, len(funcs))}
	for _, f := range found {
		for id := range funcs {
			if f.Symbol == funcs[id].name {
				l.Offsets[id] = f.Offset
			}
		}
	}
	if l.Offsets[0] == 0 {
		return Lib{}, fmt.Errorf("%s: %w", l.Path, ErrNoPAM)
	}
	return l, nil
}

// findLibs returns the libpam files to probe: lib itself when given; else
// the one the -p process uses, or that of the --mntns namespace; else the
// host's and that of every other mount namespace that has a process now,
// each file once (a container that bind-mounts the host's /usr shares
// its inode, and uprobes are per inode).
func findLibs(lib string, task probe.TaskFilter) ([]Lib, error) {
	switch {
	case lib != "":
		l, err := findLib(lib, 0)
		return []Lib{l}, err
	case task.PID != 0:
		l, err := findLib("", task.PID)
		return []Lib{l}, err
	}
	spaces, err := mountNamespaces()
	if err != nil {
		return nil, err
	}
	if task.MntNS != 0 {
		pid, ok := spaces[task.MntNS]
		if !ok {
			return nil, fmt.Errorf("no process in mount namespace %d to find its libpam through; give it with -l /proc/PID/root/PATH", task.MntNS)
		}
		l, err := findLib("", pid)
		return []Lib{l}, err
	}
	host, err := findLib("", 0)
	if err != nil {
		return nil, err
	}
	libs := []Lib{host}
	seen := map[[2]uint64]bool{}
	if id, ok := fileID(host.Path); ok {
		seen[id] = true
	}
	// In namespace order, so that runs list the same files.
	var ids []uint32
	for ns := range spaces {
		ids = append(ids, ns)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, ns := range ids {
		// A namespace without libpam (musl, distroless), or whose
		// process just exited, has nothing to probe.
		l, err := findLib("", spaces[ns])
		if err != nil {
			continue
		}
		id, ok := fileID(l.Path)
		if !ok || seen[id] {
			continue
		}
		seen[id] = true
		libs = append(libs, l)
	}
	return libs, nil
}

// fileID is a file's device and inode.
func fileID(path string) ([2]uint64, bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return [2]uint64{}, false
	}
	return [2]uint64{uint64(st.Dev), st.Ino}, true
}

// mountNamespaces maps each mount namespace that has a process to the
// lowest pid in it.
func mountNamespaces() (map[uint32]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	spaces := map[uint32]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns, err := mntns(e.Name())
		if err != nil {
			continue // exited
		}
		if old, ok := spaces[ns]; !ok || pid < old {
			spaces[ns] = pid
		}
	}
	return spaces, nil
}

// mntns reads the mount namespace inode of /proc/PID.
func mntns(pid string) (uint32, error) {
	l, err := os.Readlink("/proc/" + pid + "/ns/mnt")
	if err != nil {
		return 0, err
	}
	s, ok := strings.CutPrefix(l, "mnt:[")
	if !ok || !strings.HasSuffix(s, "]") {
		return 0, fmt.Errorf("/proc/%s/ns/mnt: %q", pid, l)
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 32)
	return uint32(n), err
}
