// Command agent measures owl agent's start-up with its default set of
// tools (exec until its "ready" log line) and its memory (VmRSS when ready
// and after an idle second, VmHWM), and, to show the agent's dependencies
// cost plain tools nothing at start, `owl tcpconnect` start-up (exec until
// "Tracing") of this binary and of another one (-before), runs alternated.
//
//	sudo go run ./bench/agent [-n 15] [-owl PATH] [-before PATH]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/owlbpf/owl/bench/internal/harness"
)

func main() {
	n := flag.Int("n", 15, "runs of each measurement")
	owl := flag.String("owl", "", "owl binary (default: build ./cmd/owl)")
	before := flag.String("before", "", "another owl binary to compare `owl tcpconnect` start-up with")
	flag.Parse()
	if err := harness.EnsureTracefs(); err != nil {
		fail(err)
	}
	if *owl == "" {
		dir, err := os.MkdirTemp("", "owl-bench")
		if err != nil {
			fail(err)
		}
		defer os.RemoveAll(dir)
		if *owl, _, err = harness.BuildOwl(dir); err != nil {
			fail(err)
		}
	}
	fmt.Printf("owl %s\n", harness.Revision(*owl))
	var ready, rssReady, rssIdle, hwm []float64
	for range *n {
		r, m1, m2, h, err := agentRun(*owl)
		if err != nil {
			fail(err)
		}
		ready, rssReady, rssIdle, hwm = append(ready, r), append(rssReady, m1), append(rssIdle, m2), append(hwm, h)
	}
	fmt.Printf("owl agent (default tools, --json /dev/null): ready in %.1f ms (median of %d), VmRSS %.1f MiB when ready, %.1f MiB idle 1 s later, VmHWM %.1f MiB\n",
		harness.Median(ready), *n, harness.Median(rssReady)/1024, harness.Median(rssIdle)/1024, harness.Median(hwm)/1024)

	bins := []string{*owl}
	if *before != "" {
		bins = append(bins, *before)
	}
	times := make([][]float64, len(bins))
	for range *n {
		for i, b := range bins {
			ms, err := toolRun(b)
			if err != nil {
				fail(err)
			}
			times[i] = append(times[i], ms)
		}
	}
	for i, b := range bins {
		st, _ := os.Stat(b)
		fmt.Printf("owl tcpconnect %s (%.1f MB): tracing in %.1f ms (median of %d)\n", b, float64(st.Size())/1e6, harness.Median(times[i]), *n)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// startUntil starts cmd and returns the milliseconds until a stderr line
// contains marker.
func startUntil(cmd *exec.Cmd, marker string) (float64, error) {
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), marker) {
			ms := float64(time.Since(start).Microseconds()) / 1000
			go func() {
				for sc.Scan() {
				}
			}()
			return ms, nil
		}
	}
	cmd.Wait()
	return 0, fmt.Errorf("%v: no %q line", cmd.Args, marker)
}

func stop(cmd *exec.Cmd) {
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
}

func agentRun(owl string) (ready, rssReady, rssIdle, hwm float64, err error) {
	cmd := exec.Command(owl, "agent", "--json", "/dev/null")
	ready, err = startUntil(cmd, "msg=ready")
	if err != nil {
		return
	}
	defer stop(cmd)
	rssReady = status(cmd.Process.Pid, "VmRSS:")
	time.Sleep(time.Second)
	return ready, rssReady, status(cmd.Process.Pid, "VmRSS:"), status(cmd.Process.Pid, "VmHWM:"), nil
}

func toolRun(owl string) (float64, error) {
	cmd := exec.Command(owl, "tcpconnect")
	ms, err := startUntil(cmd, "Tracing")
	if err == nil {
		stop(cmd)
	}
	return ms, err
}

// status reads a KiB field of /proc/PID/status.
func status(pid int, field string) float64 {
	data, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return f
		}
	}
	return 0
}
