// Package container tells which container a task runs in, from the
// cgroup path of its process (/proc/PID/cgroup) as the runtimes name it:
// docker, containerd (cri-containerd), cri-o, podman (libpod), and on
// Kubernetes the pod UID of the kubepods hierarchy. Both cgroup managers'
// spellings are understood: systemd's (docker-ID.scope,
// kubepods-burstable-podUID.slice) and cgroupfs' (/docker/ID,
// /kubepods/burstable/podUID/ID).
package container

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Info is a task's container; the zero value is "not in a container".
type Info struct {
	ID      string `json:"id,omitempty"`
	Runtime string `json:"runtime,omitempty"` // docker, containerd, cri-o, podman
	PodUID  string `json:"pod_uid,omitempty"`
}

// The patterns are compiled at first use, not at start: every owl command
// links this package, and only the agent needs them.
var (
	// A container id is 64 hex digits in every runtime listed: the last
	// such path element (a scope or a directory) is the container.
	idRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`/(?:docker-|cri-containerd-|crio-|libpod-)?([0-9a-f]{64})(?:\.scope)?(?:/|$)`)
	})
	podRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})`)
	})
)

// FromPath reads a container from one cgroup path.
func FromPath(path string) Info {
	var in Info
	if m := podRE().FindStringSubmatch(path); m != nil && strings.Contains(path, "kubepods") {
		in.PodUID = strings.ReplaceAll(m[1], "_", "-")
	}
	ms := idRE().FindAllStringSubmatchIndex(path, -1)
	if ms == nil {
		return in
	}
	m := ms[len(ms)-1]
	in.ID = path[m[2]:m[3]]
	// The runtime is named by the element's prefix or a parent
	// (/docker/ID, /libpod_parent/libpod-ID); cgroupfs kubepods paths
	// name none.
	switch prefix := path[:m[2]]; {
	case strings.Contains(prefix, "libpod"):
		in.Runtime = "podman"
	case strings.Contains(prefix, "crio"):
		in.Runtime = "cri-o"
	case strings.Contains(prefix, "containerd"):
		in.Runtime = "containerd"
	case strings.Contains(prefix, "docker"):
		in.Runtime = "docker"
	}
	return in
}

// FromCgroupFile reads a container from the content of /proc/PID/cgroup:
// the first line whose path names one (cgroup v1 has a line per
// hierarchy, v2 one line "0::PATH").
func FromCgroupFile(data []byte) Info {
	var best Info
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		in := FromPath(parts[2])
		if in.ID != "" {
			return in
		}
		if in.PodUID != "" {
			best = in
		}
	}
	return best
}

// Resolver finds the container of tasks, cached by mount namespace: a
// short-lived process (an exec in a container that is already gone when
// its event is read) is attributed through any other process of its
// mount namespace.
type Resolver struct {
	proc   string // /proc
	hostNS uint32 // the agent's own mount namespace: the host, no container

	mu    sync.Mutex
	byNS  map[uint32]entry
	scans time.Time // last /proc scan, rate-limited
}

type entry struct {
	in   Info
	seen time.Time
}

// cacheTTL bounds how long a mount namespace keeps its container: inode
// numbers are reused once a namespace is gone.
const cacheTTL = 5 * time.Minute

// maxCache bounds the cache; past it the oldest half is dropped.
const maxCache = 4096

// NewResolver reads the agent's own mount namespace from proc ("/proc").
func NewResolver(proc string) *Resolver {
	r := &Resolver{proc: proc, byNS: map[uint32]entry{}}
	r.hostNS, _ = r.mntns("self")
	return r
}

// Lookup returns the container of pid, in mount namespace mntns (0 when
// unknown).
func (r *Resolver) Lookup(pid, mntns uint32) Info {
	if mntns != 0 && mntns == r.hostNS {
		return Info{}
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.byNS[mntns]; ok && mntns != 0 && now.Sub(e.seen) < cacheTTL {
		return e.in
	}
	in, ok := r.read(strconv.Itoa(int(pid)), mntns)
	if !ok && mntns != 0 && now.Sub(r.scans) > 100*time.Millisecond {
		// The process is gone: find another in its mount namespace.
		r.scans = now
		in, ok = r.scan(mntns)
	}
	if ok && mntns != 0 {
		if len(r.byNS) >= maxCache {
			for ns, e := range r.byNS {
				if now.Sub(e.seen) > cacheTTL/2 || len(r.byNS) >= maxCache {
					delete(r.byNS, ns)
				}
			}
		}
		r.byNS[mntns] = entry{in, now}
	}
	return in
}

// read reads one process's container, checking it is still in mntns (a
// recycled pid would be another process).
func (r *Resolver) read(pid string, mntns uint32) (Info, bool) {
	if mntns != 0 {
		if ns, err := r.mntns(pid); err != nil || ns != mntns {
			return Info{}, false
		}
	}
	data, err := os.ReadFile(r.proc + "/" + pid + "/cgroup")
	if err != nil {
		return Info{}, false
	}
	return FromCgroupFile(data), true
}

func (r *Resolver) scan(mntns uint32) (Info, bool) {
	ents, err := os.ReadDir(r.proc)
	if err != nil {
		return Info{}, false
	}
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		if in, ok := r.read(e.Name(), mntns); ok {
			return in, true
		}
	}
	return Info{}, false
}

// mntns reads the inode of /proc/PID/ns/mnt ("mnt:[4026531841]").
func (r *Resolver) mntns(pid string) (uint32, error) {
	link, err := os.Readlink(r.proc + "/" + pid + "/ns/mnt")
	if err != nil {
		return 0, err
	}
	s := strings.TrimSuffix(strings.TrimPrefix(link, "mnt:["), "]")
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("mount namespace of %s: %q", pid, link)
	}
	return uint32(n), nil
}
