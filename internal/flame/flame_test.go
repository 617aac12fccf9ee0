package flame

import (
	"bytes"
	"encoding/xml"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

func testProfile() *Profile {
	proc := Frame{Name: "app", Kind: Process}
	main := Frame{Name: "main", Module: "app", Addr: 0x401000}
	hot := Frame{Name: "hot", Module: "app", Addr: 0x401100}
	warm := Frame{Name: "warm", Module: "app", Addr: 0x401200}
	libc := Frame{Name: "[unknown] (libc.so.6)", Module: "libc.so.6", Addr: 0x7f0000001000}
	sys := Frame{Name: "do_syscall_64", Addr: 0xffffffff81000000, Kind: Kernel}
	py := Frame{Name: "leaf", File: "/srv/app.py", Line: 12, Kind: Interpreted}
	return &Profile{
		Period:   time.Second / 99,
		Start:    time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Duration: 10 * time.Second,
		Stacks: []Stack{
			{Frames: []Frame{proc, libc, main, hot}, Count: 70, PID: 181, Comm: "app"},
			{Frames: []Frame{proc, libc, main, warm}, Count: 25, PID: 181, Comm: "app"},
			{Frames: []Frame{proc, libc, main, warm, sys}, Count: 3, PID: 181, Comm: "app"},
			{Frames: []Frame{proc, libc, main, py}, Count: 2, PID: 181, Comm: "app"},
		},
	}
}

// The pprof profile reads back with pprof's own parser: two sample types,
// leaf-first locations, labels, the kernel as its own mapping, the main
// binary first, file and line of interpreted frames.
func TestPprof(t *testing.T) {
	var b bytes.Buffer
	if err := WritePprof(&b, testProfile()); err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(&b)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.SampleType) != 2 || p.SampleType[0].Type != "samples" || p.SampleType[1].Unit != "nanoseconds" {
		t.Errorf("sample types %v", p.SampleType)
	}
	if p.Period != int64(time.Second/99) || p.DurationNanos != int64(10*time.Second) {
		t.Errorf("period %d, duration %d", p.Period, p.DurationNanos)
	}
	if p.Mapping[0].File != "app" {
		t.Errorf("first mapping %q, want the main binary app", p.Mapping[0].File)
	}
	var kernel bool
	for _, m := range p.Mapping {
		kernel = kernel || m.File == kernelModule
	}
	if !kernel {
		t.Errorf("no %s mapping: %v", kernelModule, p.Mapping)
	}
	if len(p.Sample) != 4 {
		t.Fatalf("%d samples", len(p.Sample))
	}
	s := p.Sample[0]
	var names []string
	for _, l := range s.Location {
		names = append(names, l.Line[0].Function.Name)
	}
	if got := strings.Join(names, ","); got != "hot,main,[unknown] (libc.so.6)" {
		t.Errorf("locations %s (the process is a label, not a frame)", got)
	}
	if s.Value[0] != 70 || s.Value[1] != 70*int64(time.Second/99) {
		t.Errorf("values %v", s.Value)
	}
	if s.Label["comm"][0] != "app" || s.NumLabel["pid"][0] != 181 {
		t.Errorf("labels %v %v", s.Label, s.NumLabel)
	}
	l := p.Sample[3].Location[0].Line[0]
	if l.Function.Name != "leaf" || l.Function.Filename != "/srv/app.py" || l.Line != 12 {
		t.Errorf("interpreted frame %+v %+v", l, l.Function)
	}
	// One location per distinct frame: main is shared.
	if p.Sample[0].Location[1] != p.Sample[1].Location[1] {
		t.Errorf("main has two locations")
	}
}

type svgDoc struct {
	Height int `xml:"height,attr"`
	Total  int `xml:"data-total,attr"`
	Groups []struct {
		ID     string `xml:"id,attr"`
		Frames []struct {
			X     int    `xml:"data-x,attr"`
			W     int    `xml:"data-w,attr"`
			D     int    `xml:"data-d,attr"`
			N     string `xml:"data-n,attr"`
			Title string `xml:"title"`
			Rect  struct {
				X     float64 `xml:"x,attr"`
				Width float64 `xml:"width,attr"`
				Fill  string  `xml:"fill,attr"`
			} `xml:"rect"`
			Text string `xml:"text"`
		} `xml:"g"`
	} `xml:"g"`
}

// The SVG is well-formed XML; frames are merged into a tree under "all",
// callers below callees, children by name, widths for samples; names
// with markup are escaped.
func TestSVG(t *testing.T) {
	p := testProfile()
	p.Stacks[0].Frames[3].Name = `hot<T>&"x"`
	var b bytes.Buffer
	if err := WriteSVG(&b, p, SVGOptions{Subtitle: "10 s & more"}); err != nil {
		t.Fatal(err)
	}
	var doc svgDoc
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if doc.Total != 100 || len(doc.Groups) != 1 {
		t.Fatalf("total %d, %d groups", doc.Total, len(doc.Groups))
	}
	var got []string
	for _, f := range doc.Groups[0].Frames {
		got = append(got, f.N+"@"+strconv.Itoa(f.D)+":"+strconv.Itoa(f.X)+"+"+strconv.Itoa(f.W))
		if want := 10 + float64(f.X)*1180/100; f.Rect.X < want-0.01 || f.Rect.X > want+0.01 {
			t.Errorf("%s at x %v, want %v", f.N, f.Rect.X, want)
		}
		if want := float64(f.W) * 1180 / 100; f.Rect.Width < want-0.01 || f.Rect.Width > want+0.01 {
			t.Errorf("%s %v wide, want %v", f.N, f.Rect.Width, want)
		}
	}
	want := "all@0:0+100 app@1:0+100 [unknown] (libc.so.6)@2:0+100 main@3:0+100 " +
		`hot<T>&"x"@4:0+70 leaf@4:70+2 warm@4:72+28 do_syscall_64@5:72+3`
	if strings.Join(got, " ") != want {
		t.Errorf("frames\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	if f := doc.Groups[0].Frames[4]; f.Text != `hot<T>&"x"` || !strings.Contains(f.Title, "70 samples, 70.00%") {
		t.Errorf("hot: label %q, title %q", f.Text, f.Title)
	}
	if !strings.Contains(b.String(), "10 s &amp; more") {
		t.Errorf("subtitle not escaped")
	}
	// Kernel, interpreted and native frames are coloured apart.
	fills := map[string]string{}
	for _, f := range doc.Groups[0].Frames {
		fills[f.N] = f.Rect.Fill
	}
	if fills["do_syscall_64"] == fills["main"] || fills["leaf"] == fills["main"] || !strings.HasPrefix(fills["main"], "hsl(") {
		t.Errorf("fills %v", fills)
	}
}

// Labels are cut to fit, as the script cuts them on zoom.
func TestLabel(t *testing.T) {
	for _, c := range []struct {
		name  string
		width float64
		want  string
	}{
		{"hot", 100, "hot"},
		{"a_long_function_name", 100, "a_long_func.."},
		{"hot", 20, ""},
		{"héllo", 60, "héllo"},
	} {
		if got := label(c.name, c.width); got != c.want {
			t.Errorf("label(%q, %v) = %q, want %q", c.name, c.width, got, c.want)
		}
	}
}

// An empty profile is still a valid graph and a valid pprof profile.
func TestEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := WriteSVG(&b, &Profile{}, SVGOptions{}); err != nil {
		t.Fatal(err)
	}
	var doc svgDoc
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := WritePprof(&b, &Profile{Period: time.Second / 49}); err != nil {
		t.Fatal(err)
	}
	if _, err := profile.Parse(&b); err != nil {
		t.Fatal(err)
	}
}
