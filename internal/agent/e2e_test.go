package agent_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/owlbpf/owl/internal/e2e"
)

// owlBin is the owl binary the tests run `owl agent` from: $OWL_BIN, or
// one built from ../../cmd/owl for this run.
var owlBin string

func TestMain(m *testing.M) {
	owlBin = os.Getenv("OWL_BIN")
	if owlBin == "" && os.Getenv("OWL_E2E_CHILD") == "" {
		dir, err := os.MkdirTemp("", "owl-agent-test")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer os.RemoveAll(dir)
		owlBin = filepath.Join(dir, "owl")
		build := exec.Command("go", "build", "-o", owlBin, "../../cmd/owl")
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "PATH="+os.Getenv("PATH")+":/usr/local/go/bin")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build owl:", err)
			os.Exit(1)
		}
	}
	e2e.Main(m, nil)
}

// freePort returns a loopback port nothing listens on (bound, released).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// collector is an OpenTelemetry Collector (built by .ci/run from
// deploy/collector/builder.yaml) receiving OTLP on loopback and writing
// what it gets to a file.
type collector struct {
	t                  *testing.T
	bin, dir           string
	grpcPort, httpPort int
	cmd                *exec.Cmd
	files              []string
	netns              string // a /proc/PID/ns/net path to run in, "" for the test's own
}

func newCollector(t *testing.T) *collector {
	bin := os.Getenv("OWL_OTELCOL")
	if bin == "" {
		bin, _ = filepath.Abs("../../bin/otelcol-owl/otelcol-owl")
	}
	e2e.Need(t, bin) // make deps-test builds it (deploy/collector/build.sh)
	return &collector{t: t, bin: bin, dir: t.TempDir(), grpcPort: freePort(t), httpPort: freePort(t)}
}

func (c *collector) HTTP() string { return fmt.Sprintf("http://127.0.0.1:%d", c.httpPort) }
func (c *collector) GRPC() string { return fmt.Sprintf("http://127.0.0.1:%d", c.grpcPort) }

// start starts the collector, writing to a new file, and waits until it
// accepts connections.
func (c *collector) start(host string) {
	t := c.t
	t.Helper()
	out := filepath.Join(c.dir, fmt.Sprintf("out%d.json", len(c.files)))
	c.files = append(c.files, out)
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc: {endpoint: "%[1]s:%[2]d"}
      http: {endpoint: "%[1]s:%[3]d"}
exporters:
  file: {path: %[4]q, flush_interval: 100ms}
service:
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
  pipelines:
    logs: {receivers: [otlp], exporters: [file]}
`, host, c.grpcPort, c.httpPort, out)
	path := filepath.Join(c.dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(c.bin, "--config", path)
	if c.netns != "" {
		c.cmd = exec.Command("nsenter", "--net="+c.netns, c.bin, "--config", path)
	}
	c.cmd.Stderr = os.Stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := c.cmd
	t.Cleanup(func() { stopProcess(cmd) })
	if c.netns != "" {
		return
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", c.httpPort))
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector not listening after 60 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *collector) stop() { stopProcess(c.cmd) }

// stopProcess ends a process the test started: SIGTERM, then SIGKILL.
func stopProcess(cmd *exec.Cmd) {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// logRecord is one OTLP log record as the collector wrote it.
type logRecord struct {
	Resource map[string]string
	Event    string
	Attrs    map[string]string
	Body     json.RawMessage
}

type otlpKV struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// scalar renders an OTLP JSON AnyValue ({"stringValue":"x"},
// {"intValue":"3"} ...) as text.
func scalar(v json.RawMessage) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(v, &m) != nil {
		return string(v)
	}
	for _, raw := range m {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return string(raw)
	}
	return ""
}

func kvs(list []otlpKV) map[string]string {
	m := map[string]string{}
	for _, kv := range list {
		m[kv.Key] = scalar(kv.Value)
	}
	return m
}

// records reads every record the collector wrote so far, in all its files.
func (c *collector) records() []logRecord {
	var out []logRecord
	for _, f := range c.files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var doc struct {
				ResourceLogs []struct {
					Resource struct {
						Attributes []otlpKV `json:"attributes"`
					} `json:"resource"`
					ScopeLogs []struct {
						LogRecords []struct {
							EventName  string          `json:"eventName"`
							Attributes []otlpKV        `json:"attributes"`
							Body       json.RawMessage `json:"body"`
						} `json:"logRecords"`
					} `json:"scopeLogs"`
				} `json:"resourceLogs"`
			}
			if json.Unmarshal(sc.Bytes(), &doc) != nil {
				continue // a line being written
			}
			for _, rl := range doc.ResourceLogs {
				res := kvs(rl.Resource.Attributes)
				for _, sl := range rl.ScopeLogs {
					for _, lr := range sl.LogRecords {
						out = append(out, logRecord{Resource: res, Event: lr.EventName, Attrs: kvs(lr.Attributes), Body: lr.Body})
					}
				}
			}
		}
	}
	return out
}

// waitFor waits until every match has found a record, and returns the
// records found, by index.
func (c *collector) waitFor(t *testing.T, timeout time.Duration, what []string, matches ...func(logRecord) bool) []logRecord {
	t.Helper()
	found := make([]logRecord, len(matches))
	ok := make([]bool, len(matches))
	deadline := time.Now().Add(timeout)
	for {
		all := true
		for _, r := range c.records() {
			for i, m := range matches {
				if !ok[i] && m(r) {
					found[i], ok[i] = r, true
				}
			}
		}
		for i := range ok {
			all = all && ok[i]
		}
		if all {
			return found
		}
		if time.Now().After(deadline) {
			for i := range ok {
				if !ok[i] {
					t.Errorf("no record of %s after %v", what[i], timeout)
				}
			}
			t.FailNow()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// agentProc is `owl agent` running as a child.
type agentProc struct {
	cmd     *exec.Cmd
	metrics string
	mu      sync.Mutex
	log     bytes.Buffer
}

// startAgent runs `owl agent` with a config file of yaml and args, and
// waits until it is ready (its log says so).
func startAgent(t *testing.T, yaml string, args ...string) *agentProc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &agentProc{}
	a.cmd = exec.Command(owlBin, append([]string{"agent", "--config", path}, args...)...)
	return a.run(t)
}

func (a *agentProc) run(t *testing.T) *agentProc {
	t.Helper()
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopProcess(a.cmd)
		if t.Failed() {
			t.Logf("agent log:\n%s", a.Log())
		}
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			a.mu.Lock()
			a.log.WriteString(sc.Text() + "\n")
			a.mu.Unlock()
			if strings.Contains(sc.Text(), "msg=ready") {
				once.Do(func() { close(ready) })
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("agent not ready after 60 s:\n%s", a.Log())
	}
	return a
}

// Log is what the agent logged so far.
func (a *agentProc) Log() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.log.String()
}

// Metric reads one sample of the agent's /metrics (a name with its
// labels, as printed: owl_events_total{tool="execsnoop"}).
func (a *agentProc) Metric(t *testing.T, sample string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", sample)
	return 0
}

// workload causes one connect, one exec and one setresuid, and says who
// made them.
type workload struct {
	pid, tid, execPID int
	server            int // the port connected to
}

func doWork(t *testing.T) workload {
	t.Helper()
	w := workload{pid: os.Getpid()}
	server := e2e.Serve(t, "127.0.0.1")
	w.server = int(server.Port())
	e2e.Dial(t, server)
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	w.execPID = cmd.Process.Pid
	// setresuid(-1, -1, -1) changes nothing; raw, so that it runs on one
	// thread only (Go's wrapper repeats it on every thread).
	runtime.LockOSThread()
	w.tid = unix.Gettid()
	unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), ^uintptr(0), ^uintptr(0))
	runtime.UnlockOSThread()
	return w
}

// matches are the records of w's events, with the OCSF classes they map
// to, the process and the host.
func (w workload) matches(host string) ([]string, []func(logRecord) bool) {
	on := func(r logRecord) bool { return r.Resource["host.name"] == host && r.Resource["service.name"] == "owl" }
	return []string{"the connect", "the exec", "the setresuid"}, []func(logRecord) bool{
		func(r logRecord) bool {
			return on(r) && r.Event == "owl.tcpconnect" && r.Attrs["process.pid"] == strconv.Itoa(w.pid) &&
				r.Attrs["destination.port"] == strconv.Itoa(w.server) && r.Attrs["destination.address"] == "127.0.0.1" &&
				r.Attrs["ocsf.class_uid"] == "4001" && r.Attrs["ocsf.activity_id"] == "1"
		},
		func(r logRecord) bool {
			return on(r) && r.Event == "owl.execsnoop" && r.Attrs["process.pid"] == strconv.Itoa(w.execPID) &&
				r.Attrs["ocsf.class_uid"] == "1007" && r.Attrs["ocsf.activity_id"] == "1" &&
				strings.Contains(string(r.Body), `"/bin/true"`)
		},
		func(r logRecord) bool {
			return on(r) && r.Event == "owl.setuids" && r.Attrs["process.pid"] == strconv.Itoa(w.pid) &&
				r.Attrs["thread.id"] == strconv.Itoa(w.tid) &&
				r.Attrs["ocsf.class_uid"] == "1007" && r.Attrs["ocsf.activity_id"] == "5"
		},
	}
}

// A real pipeline: owl's OTLP logs reach an OpenTelemetry Collector over
// HTTP and over gRPC, with the OCSF class, host and pid of the events the
// test caused.
func TestOTLPToCollector(t *testing.T) {
	e2e.Require(t)
	host, _ := os.Hostname()
	for _, proto := range []string{"http/protobuf", "grpc"} {
		t.Run(strings.ReplaceAll(proto, "/", "_"), func(t *testing.T) {
			c := newCollector(t)
			c.start("127.0.0.1")
			endpoint := c.HTTP()
			if proto == "grpc" {
				endpoint = c.GRPC()
			}
			startAgent(t, "tools: [tcpconnect, execsnoop, setuids]\n", "--otlp-endpoint", endpoint, "--otlp-protocol", proto)
			w := doWork(t)
			what, m := w.matches(host)
			c.waitFor(t, 30*time.Second, what, m...)
		})
	}
}

// Debian's Prometheus scrapes the agent on loopback; its HTTP API then
// returns owl's event counters for the tools the test exercised.
func TestPrometheusScrapes(t *testing.T) {
	e2e.Require(t)
	prom := e2e.Need(t, "/usr/bin/prometheus")
	port := freePort(t)
	a := startAgent(t, "tools: [tcpconnect, execsnoop, setuids]\n", "--metrics-address", fmt.Sprintf("127.0.0.1:%d", port))
	a.metrics = fmt.Sprintf("127.0.0.1:%d", port)
	doWork(t)

	dir := t.TempDir()
	cfg := fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: owl\n    static_configs: [{targets: [\"%s\"]}]\n", a.metrics)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	web := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+web)
	var log bytes.Buffer
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopProcess(cmd)
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for _, tool := range []string{"tcpconnect", "execsnoop", "setuids"} {
		for {
			// What the agent counted; Prometheus must have scraped at
			// least one event of each.
			v, err := promQuery(web, fmt.Sprintf(`owl_events_total{job="owl",tool=%q}`, tool))
			if err == nil && v >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("prometheus has no events of %s after 60 s: %v, %v", tool, v, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	if v, err := promQuery(web, `owl_tool_up{job="owl",tool="execsnoop"}`); err != nil || v != 1 {
		t.Errorf("owl_tool_up of execsnoop: %v, %v", v, err)
	}
}

// promQuery runs an instant query and returns its one value.
func promQuery(web, q string) (float64, error) {
	resp, err := http.Get("http://" + web + "/api/v1/query?query=" + urlQuery(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" || len(r.Data.Result) != 1 {
		return 0, fmt.Errorf("query %s: status %s, %d results", q, r.Status, len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

func urlQuery(q string) string { return url.QueryEscape(q) }
