// Package harness holds what owl's benchmark programs share: building owl,
// naming the revisions measured, mounting tracefs, small statistics.
package harness

import (
	"bytes"
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// EnsureTracefs mounts tracefs where bpftrace looks for it; owl would mount
// it itself, bpftrace would not.
func EnsureTracefs() error {
	if _, err := os.Stat("/sys/kernel/tracing/events"); err == nil {
		return nil
	}
	if err := unix.Mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, ""); err != nil {
		return fmt.Errorf("mount tracefs on /sys/kernel/tracing: %w", err)
	}
	return nil
}

// BuildOwl builds ./cmd/owl of the module the harness runs in into dir. It
// returns the binary and the git revision it was built from.
func BuildOwl(dir string) (bin, rev string, err error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", "", errors.New("not inside the owl module: run from the repository or pass -owl")
	}
	root := filepath.Dir(gomod)
	bin = filepath.Join(dir, "owl")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/owl")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("go build ./cmd/owl in %s: %w", root, err)
	}
	return bin, gitRevision(root), nil
}

// gitRevision describes the commit checked out in dir and whether tracked
// files differ from it. It reads only: no index refresh, no lock.
func gitRevision(dir string) string {
	head, err := exec.Command("git", "-C", dir, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown revision: git rev-parse: " + err.Error()
	}
	rev := "revision " + strings.TrimSpace(string(head))
	status, err := exec.Command("git", "-C", dir, "--no-optional-locks", "status", "--porcelain", "--untracked-files=no").Output()
	switch {
	case err != nil:
		rev += ", status unknown: " + err.Error()
	case len(bytes.TrimSpace(status)) > 0:
		rev += " with uncommitted changes"
	}
	return rev
}

// Revision is the VCS revision a Go binary was built from, as far as its
// build info tells.
func Revision(path string) string {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return "no build info: " + err.Error()
	}
	rev, modified := "unknown revision", ""
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = "revision " + s.Value[:min(12, len(s.Value))]
		case s.Key == "vcs.modified" && s.Value == "true":
			modified = " with uncommitted changes"
		}
	}
	return rev + modified + ", " + info.GoVersion
}

func BpftraceVersion(path string) string {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "version unknown"
	}
	return strings.TrimSpace(string(out))
}

func LastLines(s []string) string {
	if len(s) == 0 {
		return "no stderr output"
	}
	return strings.Join(s[max(0, len(s)-10):], " | ")
}

// Median of v, in any order.
func Median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
