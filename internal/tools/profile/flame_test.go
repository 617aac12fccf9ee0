package profile

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/owlbpf/owl/internal/e2e"
	"github.com/owlbpf/owl/internal/pyframes/pyprog"
)

// The files of `owl profile --pprof --svg` on the C program: go tool
// pprof -top lists hot first; headless Chromium, searching the flame graph
// for ^hot$ (the URL fragment), draws hot's frame in the highlight colour
// as wide as hot's share of the samples, with its name in it, and the
// script reports that share.
func TestPprofAndSVG(t *testing.T) {
	e2e.Require(t)
	goTool := e2e.Need(t, "go")
	chromium := e2e.Need(t, "chromium")
	p := start(t, build(t, "hotwarm.c"))
	dir := t.TempDir()
	pprofFile, svgFile := filepath.Join(dir, "cpu.pb.gz"), filepath.Join(dir, "flame.svg")
	var out, errb bytes.Buffer
	cmd := command()
	cmd.SetArgs([]string{"-p", strconv.Itoa(p.Pid), "-F", strconv.Itoa(freq), "-f", "-D", "3", "--pprof", pprofFile, "--svg", svgFile})
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}

	// hot's share of the samples, from the folded lines printed too.
	var all, hot uint64
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		i := strings.LastIndexByte(line, ' ')
		n, err := strconv.ParseUint(line[i+1:], 10, 64)
		if i < 0 || err != nil {
			t.Fatalf("folded line %q", line)
		}
		all += n
		if strings.Contains(line[:i]+";", ";hot;") {
			hot += n
		}
	}
	if all == 0 || hot == 0 {
		t.Fatalf("%d samples, %d in hot:\n%s", all, hot, out.String())
	}
	share := float64(hot) / float64(all)
	t.Logf("%d samples, %d in hot (%.1f %%)", all, hot, 100*share)

	// pprof: the first function of -top is hot.
	top, err := exec.Command(goTool, "tool", "pprof", "-top", pprofFile).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof: %v\n%s", err, top)
	}
	if first := firstTopRow(string(top)); !strings.HasSuffix(first, " hot") {
		t.Errorf("go tool pprof -top: first row %q, want hot:\n%s", first, top)
	}

	// The SVG in headless Chromium: its DOM after the script ran, and a
	// screenshot of the whole graph.
	svg, err := os.ReadFile(svgFile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<svg [^>]*height="(\d+)"`).FindSubmatch(svg)
	if m == nil {
		t.Fatalf("no height in %.300s", svg)
	}
	url := "file://" + svgFile + "#search=%5Ehot%24"
	browse := func(args ...string) []byte {
		args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"}, args...)
		c := exec.Command(chromium, append(args, url)...)
		var stderr bytes.Buffer
		c.Stderr = &stderr
		b, err := c.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", c, err, stderr.String())
		}
		return b
	}
	dom := string(browse("--dump-dom"))
	if m := regexp.MustCompile(`id="matched"[^>]*>Matched: ([0-9.]+)%<`).FindStringSubmatch(dom); m == nil {
		t.Errorf("no Matched share in the DOM:\n%.2000s", dom)
	} else if got, _ := strconv.ParseFloat(m[1], 64); got < 100*share-0.1 || got > 100*share+0.1 {
		t.Errorf("Matched: %s%%, want %.1f%%", m[1], 100*share)
	}
	if !regexp.MustCompile(`data-n="hot"><title>[^<]*</title><rect [^>]*fill="rgb\(230, ?0, ?230\)"[^>]*/?>(</rect>)?<text [^>]*>hot</text>`).MatchString(dom) {
		t.Errorf("hot's frame is not highlighted and labelled in the DOM")
	}
	// Zoomed into spin (the script's zoom, as a click does): spin spans
	// the graph, hot keeps its share of spin's samples, frames outside
	// spin are hidden, and its callers stay, full width, faded.
	url = "file://" + svgFile + "#zoom=%5Espin%24"
	dom = string(browse("--dump-dom"))
	width := func(name string) float64 {
		m := regexp.MustCompile(`<g [^>]*data-n="` + name + `"[^>]*><title>[^<]*</title><rect [^>]*width="([0-9.]+)"`).FindStringSubmatch(dom)
		if m == nil {
			t.Fatalf("no frame %s in the DOM", name)
		}
		w, _ := strconv.ParseFloat(m[1], 64)
		return w
	}
	if w := width("spin"); w < 1179.9 || w > 1180.1 {
		t.Errorf("zoomed: spin %v pixels wide, want 1180", w)
	}
	if w, want := width("hot"), 1180*float64(hot)/float64(all); w < want*0.95-2 || w > want/0.95+2 {
		t.Errorf("zoomed: hot %v pixels wide, want about %v (spin holds nearly all samples)", w, want)
	}
	if !regexp.MustCompile(`<g [^>]*class="parent"[^>]*data-n="main"|<g [^>]*data-n="main"[^>]*class="parent"`).MatchString(dom) {
		t.Errorf("zoomed: main is not shown as a caller")
	}
	url = "file://" + svgFile + "#search=%5Ehot%24"
	shot := filepath.Join(dir, "flame.png")
	browse("--screenshot="+shot, "--window-size=1200,"+string(m[1]))
	checkScreenshot(t, shot, share)
	if dst := os.Getenv("OWL_PROFILE_SCREENSHOT"); dst != "" {
		// For a look at it: OWL_PROFILE_SCREENSHOT=/tmp/flame.png.
		b, _ := os.ReadFile(shot)
		os.WriteFile(dst, b, 0o644)
	}
}

// firstTopRow is the first function row of go tool pprof -top.
func firstTopRow(top string) string {
	lines := strings.Split(top, "\n")
	for i, l := range lines {
		if strings.Contains(l, "flat%") && i+1 < len(lines) {
			return strings.TrimSpace(lines[i+1])
		}
	}
	return ""
}

// checkScreenshot finds the widest run of highlight pixels in the
// screenshot: it must be hot's share of the graph's width (1180 pixels
// between the margins), give or take a few pixels, with dark pixels in it
// (its name).
func checkScreenshot(t *testing.T, path string, share float64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	highlight := func(x, y int) bool {
		r, g, b, _ := img.At(x, y).RGBA()
		return r>>8 > 200 && g>>8 < 40 && b>>8 > 200
	}
	dark := func(x, y int) bool {
		r, g, b, _ := img.At(x, y).RGBA()
		return r>>8 < 90 && g>>8 < 90 && b>>8 < 90
	}
	bounds := img.Bounds()
	var best image.Rectangle // the widest run, and the rows it spans
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		run := 0
		for x := bounds.Min.X; x <= bounds.Max.X; x++ {
			if x < bounds.Max.X && highlight(x, y) {
				run++
				continue
			}
			if run > best.Dx() {
				best = image.Rect(x-run, y, x, y+1)
			} else if run == best.Dx() && run > 0 && best.Min.X == x-run && best.Max.Y == y {
				best.Max.Y = y + 1
			}
			run = 0
		}
	}
	want := share * 1180
	t.Logf("highlighted frame %v in a %v screenshot; hot's share is %.0f pixels", best, bounds.Size(), want)
	if d := float64(best.Dx()) - want; d < -4 || d > 4 {
		t.Errorf("highlighted frame %d pixels wide, want %.0f ± 4", best.Dx(), want)
	}
	// The name: dark pixels in the frame's first 40 pixels (the label
	// starts 3 pixels in), in the rows of the frame (highlighted past
	// the label).
	inked := 0
	for y := best.Min.Y - frameRows; y < best.Max.Y+frameRows; y++ {
		if best.Dx() < 60 || !highlight(best.Min.X+50, y) {
			continue
		}
		for x := best.Min.X; x < best.Min.X+40; x++ {
			if dark(x, y) {
				inked++
			}
		}
	}
	if inked < 10 {
		t.Errorf("%d dark pixels where hot's name should be", inked)
	}
}

// frameRows is how far above and below the widest highlighted row the
// frame's label may reach (a frame is 15 pixels high).
const frameRows = 15

// `owl profile -f --pprof --svg` on Debian's python3.11: folded lines
// carry the Python frames (func (file:line)), go tool pprof -top puts
// hot() first, its lines with -lines; the flame graph has hot's box.
func TestPythonCommand(t *testing.T) {
	e2e.Require(t)
	goTool := e2e.Need(t, "go")
	script, err := filepath.Abs("testdata/hot.py")
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, pyprog.Debian, script)
	dir := t.TempDir()
	pprofFile, svgFile := filepath.Join(dir, "cpu.pb.gz"), filepath.Join(dir, "flame.svg")
	var out, errb bytes.Buffer
	cmd := command()
	cmd.SetArgs([]string{"-p", strconv.Itoa(p.Pid), "-F", strconv.Itoa(freq), "-U", "-f", "-D", "2", "--pprof", pprofFile, "--svg", svgFile})
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	hotLine := regexp.MustCompile(`^python3\.11;(.*;)?<module> \(` + regexp.QuoteMeta(script) + `:29\);spin \(` +
		regexp.QuoteMeta(script) + `:23\);hot \(` + regexp.QuoteMeta(script) + `:(8|9|10|11|12)\) \d+$`)
	found := false
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		found = found || hotLine.MatchString(line)
	}
	if !found {
		t.Errorf("no folded line %s in:\n%s", hotLine, out.String())
	}
	top, err := exec.Command(goTool, "tool", "pprof", "-top", pprofFile).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof: %v\n%s", err, top)
	}
	if first := firstTopRow(string(top)); !strings.HasSuffix(first, " hot") {
		t.Errorf("go tool pprof -top: first row %q, want hot:\n%s", first, top)
	}
	lines, err := exec.Command(goTool, "tool", "pprof", "-top", "-lines", pprofFile).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof -lines: %v\n%s", err, lines)
	}
	// pprof shows <module> as "" (names with <...> look like C++
	// templates to it, which it strips): its line is there.
	for _, fn := range []string{" hot " + script + ":1", " spin " + script + ":23", " " + script + ":29"} {
		if !strings.Contains(string(lines), fn) {
			t.Errorf("go tool pprof -top -lines: no %q in:\n%s", fn, lines)
		}
	}
	svg, err := os.ReadFile(svgFile)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`data-n="hot"><title>hot `).Match(svg) {
		t.Errorf("no frame hot in the flame graph: %.3000s", svg)
	}
}
