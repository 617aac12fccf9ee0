package detect

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config holds every detector's thresholds and allowlists. In YAML (owl
// detect --config, owl agent's detect key) each rule is a section; keys
// not given keep Defaults' values, unknown keys are errors.
type Config struct {
	// Evidence bounds the events kept in a finding (the first ones).
	Evidence int `yaml:"evidence"`
	// UpdateEvery is the least time between two updates of one finding
	// while it keeps changing; its last state goes out when it closes.
	UpdateEvery time.Duration `yaml:"update-every"`
	// MaxKeys bounds the groups (addresses, users, processes) each
	// detector remembers; events of new groups past it are counted
	// (Stats.Dropped) and not evaluated.
	MaxKeys int `yaml:"max-keys"`

	PortScan     PortScan     `yaml:"port-scan"`
	BruteForce   BruteForce   `yaml:"brute-force"`
	PrivEsc      PrivEsc      `yaml:"privilege-escalation"`
	ModuleLoad   ModuleLoad   `yaml:"module-load"`
	ReverseShell ReverseShell `yaml:"reverse-shell"`
}

// Windowed are the settings every windowed rule has.
type Windowed struct {
	Disabled bool `yaml:"disabled"`
	// Window is how far back events are counted.
	Window time.Duration `yaml:"window"`
	// CloseAfter closes a finding whose group saw no event for this
	// long (default: Window); a later event starts a new finding.
	CloseAfter time.Duration `yaml:"close-after"`
}

// PortScan: per remote address, Ports distinct local ports answered with a
// reset for want of a socket (tcpreset NO_SOCKET) or accepted (tcpaccept)
// within Window.
type PortScan struct {
	Windowed `yaml:",inline"`
	Ports    int `yaml:"ports"`
	// Ignore lists remote networks never reported (CIDR or address).
	Ignore []string `yaml:"ignore"`
}

// BruteForce: per (remote host, user, service), Failures PAM
// authentication failures within Window (Services overrides the count by
// PAM service: sshd: 20); and a success after at least SuccessAfter
// failures, within SuccessWithin of the last one.
type BruteForce struct {
	Windowed      `yaml:",inline"`
	Failures      int            `yaml:"failures"`
	Services      map[string]int `yaml:"services"`
	SuccessAfter  int            `yaml:"success-after"`
	SuccessWithin time.Duration  `yaml:"success-within"`
	Ignore        []string       `yaml:"ignore"` // remote hosts (CIDR, address or name)
}

// PrivEsc: a process of a non-root uid that makes its uid or euid 0
// through the setuid family, unless its executable is in Allow (paths,
// globs as path.Match); and per process, as many denials of a capability
// as Caps gives for it within Window. The capability tracepoint also sees
// checks that are not audited: an sshd session makes ~105 CAP_SYS_ADMIN
// denials as it starts, a Python start ~46, hence CAP_SYS_ADMIN's 500.
type PrivEsc struct {
	Windowed `yaml:",inline"`
	Allow    []string       `yaml:"allow"`
	Caps     map[string]int `yaml:"caps"`
}

// ModuleLoad: any kernel module load whose name is not in Allow (globs).
type ModuleLoad struct {
	Disabled bool     `yaml:"disabled"`
	Allow    []string `yaml:"allow"`
}

// ReverseShell: an exec of a program in Shells (basename globs) with fd 0,
// 1 or 2 a TCP or UDP socket, unless the remote is in Ignore.
type ReverseShell struct {
	Disabled bool     `yaml:"disabled"`
	Shells   []string `yaml:"shells"`
	Ignore   []string `yaml:"ignore"`
}

// Defaults are the thresholds when nothing is configured: port scans as
// Elastic's rule (50 ports in 60 s), brute force 60 failures in 30 s.
func Defaults() Config {
	return Config{
		Evidence:    10,
		UpdateEvery: 10 * time.Second,
		MaxKeys:     16384,
		PortScan:    PortScan{Windowed: Windowed{Window: time.Minute}, Ports: 50},
		BruteForce: BruteForce{Windowed: Windowed{Window: 30 * time.Second}, Failures: 60,
			SuccessAfter: 25, SuccessWithin: 15 * time.Second},
		PrivEsc: PrivEsc{Windowed: Windowed{Window: 10 * time.Second},
			Caps: map[string]int{"CAP_SYS_ADMIN": 500, "CAP_SYS_MODULE": 5},
			Allow: []string{"/usr/bin/su", "/usr/bin/sudo", "/usr/bin/sudoedit", "/usr/bin/login", "/usr/sbin/sshd",
				"/usr/lib/openssh/sshd-session", "/usr/bin/passwd", "/usr/bin/newgrp", "/usr/bin/chsh", "/usr/bin/chfn",
				"/usr/bin/gpasswd", "/usr/bin/pkexec", "/usr/lib/policykit-1/polkit-agent-helper-1",
				"/usr/lib/polkit-1/polkit-agent-helper-1", "/usr/bin/doas", "/usr/sbin/cron", "/usr/sbin/unix_chkpwd",
				"/usr/bin/fusermount", "/usr/bin/fusermount3", "/usr/bin/crontab", "/usr/bin/at",
				"/usr/lib/dbus-1.0/dbus-daemon-launch-helper", "/usr/bin/newuidmap", "/usr/bin/newgidmap"},
		},
		ReverseShell: ReverseShell{Shells: []string{"sh", "ash", "bash", "dash", "zsh", "ksh", "mksh", "csh", "tcsh",
			"fish", "busybox", "python*", "perl*", "ruby*", "php*", "lua*", "node", "tclsh*", "awk", "gawk", "mawk"}},
	}
}

// ReadFile reads a YAML config onto c; unknown keys are errors.
func (c *Config) ReadFile(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := c.Parse(data); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// Parse reads YAML onto c.
func (c *Config) Parse(data []byte) error {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Check validates c and fills the defaults that follow from other keys.
func (c *Config) Check() error {
	if c.Evidence < 1 || c.MaxKeys < 1 || c.UpdateEvery <= 0 {
		return errors.New("evidence, max-keys and update-every: want positive values")
	}
	for _, w := range []struct {
		name string
		w    *Windowed
		n    int
	}{{"port-scan", &c.PortScan.Windowed, c.PortScan.Ports}, {"brute-force", &c.BruteForce.Windowed, c.BruteForce.Failures},
		{"privilege-escalation", &c.PrivEsc.Windowed, 1}} {
		if w.w.Window <= 0 || w.n < 1 {
			return fmt.Errorf("%s: want a positive window and threshold", w.name)
		}
		if w.w.CloseAfter <= 0 {
			w.w.CloseAfter = w.w.Window
		}
	}
	for capName, n := range c.PrivEsc.Caps {
		if n < 1 {
			return fmt.Errorf("privilege-escalation: caps: %s: want a positive count, not %d", capName, n)
		}
	}
	for svc, n := range c.BruteForce.Services {
		if n < 1 {
			return fmt.Errorf("brute-force: services: %s: want a positive count, not %d", svc, n)
		}
	}
	if c.BruteForce.SuccessAfter < 1 || c.BruteForce.SuccessWithin <= 0 {
		return errors.New("brute-force: success-after and success-within: want positive values")
	}
	for _, l := range [][]string{c.PortScan.Ignore, c.ReverseShell.Ignore} {
		if _, err := parseNets(l); err != nil {
			return err
		}
	}
	for _, globs := range [][]string{c.PrivEsc.Allow, c.ModuleLoad.Allow, c.ReverseShell.Shells} {
		for _, g := range globs {
			if _, err := path.Match(g, ""); err != nil {
				return fmt.Errorf("bad pattern %q: %w", g, err)
			}
		}
	}
	return nil
}

// parseNets parses CIDRs and addresses.
func parseNets(list []string) ([]netip.Prefix, error) {
	var ps []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			ps = append(ps, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("ignore: want a CIDR or an address, not %q", s)
		}
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	return ps, nil
}

func inNets(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// matchAny reports whether s matches one of the globs.
func matchAny(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}
