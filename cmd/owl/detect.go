package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/owlbpf/owl/internal/agent"
	"github.com/owlbpf/owl/internal/agent/sinks"
	"github.com/owlbpf/owl/internal/cli"
	"github.com/owlbpf/owl/internal/detect"
	"github.com/owlbpf/owl/internal/probe"
	"github.com/owlbpf/owl/internal/tool"
)

// detectCommand is `owl detect`: the detectors standalone, findings on
// stdout.
func detectCommand(registry []tool.Tool) *cobra.Command {
	var configPath, format string
	var seconds int
	cmd := &cobra.Command{
		Use:   "detect",
		Short: "Detect port scans, brute force, privilege escalation, module loads and reverse shells",
		Long: `owl detect runs windowed detection rules over the events of owl's tools
(tcpreset, tcpaccept, pamsnoop, setuids, capable, modsnoop, execsnoop) on
this host and prints findings, not events:

  port-scan               per remote address, 50 distinct local ports answered
                          with a reset for want of a socket or accepted, in 60 s
  brute-force             per (remote host, user, PAM service), 60 failed
                          authentications in 30 s (services: {sshd: N} to lower)
  success-after-failures  a success after 25 failures, within 15 s of the last
  privilege-escalation    a non-root process gains uid or euid 0 through the
                          setuid family; executables in the allowlist (su, sudo,
                          login, sshd, passwd, newgrp ...) excepted
  capability-denials      per process, 500 denied CAP_SYS_ADMIN or 5 denied
                          CAP_SYS_MODULE checks in 10 s
  module-load             any kernel module load not in the allowlist
  reverse-shell           a shell or interpreter exec'd with fd 0, 1 or 2 a
                          TCP or UDP socket

A finding is made once (Create), updated at most every 10 s while its rule
keeps matching (Update), and closed when its group was quiet for the rule's
window (Close, with the final counts). Text output is one line per state:
time, rule, activity, severity, finding id, message. -o json prints each
state as an OCSF 1.3.0 Detection Finding (class 2004) with the rule, the
severity, the actor process, the remote address and up to 10 events of
evidence (the tools' own JSON).

--config reads a YAML file of thresholds and allowlists; every key is
optional (defaults above):

  evidence: 10             # events kept per finding
  update-every: 10s
  max-keys: 16384          # groups per rule; more are counted, not evaluated
  port-scan: {ports: 50, window: 60s, close-after: 60s, ignore: [10.0.0.0/8]}
  brute-force: {failures: 60, window: 30s, services: {sshd: 10},
                success-after: 25, success-within: 15s, ignore: [192.0.2.7]}
  privilege-escalation: {allow: [/usr/bin/sudo], window: 10s,
                         caps: {CAP_SYS_ADMIN: 500, CAP_SYS_MODULE: 5}}
  module-load: {allow: ["nls_*"]}
  reverse-shell: {shells: [bash, "python*"], ignore: []}

Each section also takes disabled: true. A tool this kernel cannot run
(modsnoop without modules) is reported and its rules are off; the others
run. owl agent runs the same detectors with --detect default|FILE.`,
		Example: `  owl detect                          # all rules, default thresholds, text
  owl detect -o json -d 60            # OCSF Detection Findings for a minute
  owl detect --config detect.yaml`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return cli.Usagef("-o %s: want text or json", format)
			}
			d, err := cli.Seconds(cmd, "duration", seconds)
			if err != nil {
				return err
			}
			cfg, err := detectConfig(configPath)
			if err != nil {
				return &cli.UsageError{Err: err}
			}
			prefer, err := cli.HooksEnv()
			if err != nil {
				return err
			}
			if err := cli.Privileged(0, 0); err != nil { // each tool checks its own set when it opens
				return err
			}
			if err := probe.EnsureTracefs(); err != nil {
				return err
			}
			out := bufio.NewWriter(cmd.OutOrStdout())
			var mu sync.Mutex
			product := detect.Product{Name: "owl", Vendor: "owl", Version: versionLine()}
			host, _ := os.Hostname()
			var writeErr error
			eng := detect.New(cfg, detect.Options{Emit: func(f detect.Finding) {
				mu.Lock()
				defer mu.Unlock()
				if format == "json" {
					js, err := f.OCSF(product, host)
					if err != nil {
						writeErr = err
						return
					}
					out.Write(js)
					out.WriteByte('\n')
				} else {
					out.WriteString(f.Text())
					out.WriteByte('\n')
				}
				if err := out.Flush(); err != nil && writeErr == nil {
					writeErr = err
				}
			}})
			opts := tool.DefaultOptions()
			opts.Runtime, opts.Prefer = probe.NewRuntime(), prefer
			started := detect.Start(&cfg, findTool(registry), opts)
			stderr := cmd.ErrOrStderr()
			var names []string
			for _, s := range started {
				if s.Err != nil {
					fmt.Fprintf(stderr, "owl: %s not running (rules %s off): %s\n", s.Name,
						strings.Join(detect.Tools[s.Name], ", "), cli.Message(s.Err))
					continue
				}
				names = append(names, s.Name)
			}
			c := cli.Common{Duration: int(d / time.Second)}
			ctx, stop := c.Context(cmd.Context())
			defer stop()
			if len(names) > 0 {
				fmt.Fprintf(stderr, "Detecting with %s... Hit Ctrl-C to end.\n", strings.Join(names, ", "))
			}
			stats, err := detect.Run(ctx, eng, started)
			if err != nil {
				return err
			}
			for name, st := range stats {
				if st.Lost() > 0 {
					fmt.Fprintf(stderr, "owl: %s lost events: %s\n", name, st.Message())
				}
			}
			if s := eng.Stats(); s.Dropped > 0 {
				fmt.Fprintf(stderr, "owl: %d events not evaluated: max-keys groups were full\n", s.Dropped)
			}
			mu.Lock()
			defer mu.Unlock()
			return writeErr
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "YAML `FILE` of thresholds and allowlists")
	cmd.Flags().StringVarP(&format, "output", "o", "text", "text or json (OCSF Detection Findings)")
	cmd.Flags().IntVarP(&seconds, "duration", "d", 0, "stop after `SECONDS`")
	return cmd
}

// detectConfig is the defaults with FILE read over them ("" or "default":
// none), checked.
func detectConfig(file string) (detect.Config, error) {
	cfg := detect.Defaults()
	if file != "" && file != "default" {
		if err := cfg.ReadFile(file); err != nil {
			return cfg, err
		}
	}
	return cfg, cfg.Check()
}

func findTool(registry []tool.Tool) func(string) tool.Tool {
	return func(name string) tool.Tool {
		for _, t := range registry {
			if t.Info().Name == name {
				return t
			}
		}
		return nil
	}
}

// versionLine is the first line of version() without "owl ".
func versionLine() string {
	v, _, _ := strings.Cut(version(), "\n")
	return strings.TrimPrefix(v, "owl ")
}

// agentDetector makes the agent's detector for its detect key ("" none);
// its findings go to a through the returned setter, once a exists.
func agentDetector(key string) (agent.Detector, func(*agent.Agent), error) {
	if key == "" {
		return nil, func(*agent.Agent) {}, nil
	}
	cfg, err := detectConfig(key)
	if err != nil {
		return nil, nil, fmt.Errorf("detect: %w", err)
	}
	var a *agent.Agent
	product := detect.Product{Name: "owl", Vendor: "owl", Version: versionLine()}
	eng := detect.New(cfg, detect.Options{Emit: func(f detect.Finding) {
		if a == nil {
			return
		}
		js, err := f.OCSF(product, a.Host().Name)
		if err != nil {
			return
		}
		a.Finding(sinks.Finding{Rule: f.Rule.ID, UID: f.UID, Activity: int(f.Activity), Severity: int(f.Rule.Severity),
			Time: f.Time, JSON: js})
	}})
	return eng, func(ag *agent.Agent) { a = ag }, nil
}
