package flame

import (
	"bufio"
	"cmp"
	"fmt"
	"hash/fnv"
	"html"
	"io"
	"slices"
	"strings"
)

// SVG layout, in pixels.
const (
	svgWidth    = 1200
	svgPad      = 10 // left and right
	frameHeight = 16
	svgTop      = 52  // title, subtitle and buttons
	svgBottom   = 30  // details line
	charWidth   = 7.2 // monospace at 12 px: labels are cut to fit
	minWidth    = 0.1 // frames narrower than this are left out
)

// Highlight is the fill of frames that match a search: a magenta no
// palette uses, so that matches stand out (and tests can find them in a
// screenshot).
const Highlight = "rgb(230,0,230)"

// node is one frame of the merged call tree: all stacks that share the
// frames from the root down to it.
type node struct {
	name     string
	module   string
	kind     Kind
	total    uint64
	children []*node
	index    map[nodeKey]*node
}

type nodeKey struct {
	name string
	kind Kind
}

func (n *node) child(f Frame) *node {
	k := nodeKey{f.Name, f.Kind}
	if c := n.index[k]; c != nil {
		return c
	}
	if n.index == nil {
		n.index = map[nodeKey]*node{}
	}
	c := &node{name: f.Name, module: f.Module, kind: f.Kind}
	n.index[k] = c
	n.children = append(n.children, c)
	return c
}

// tree merges the stacks into one call tree under "all"; children are
// sorted by name, as flame graphs are (the x axis is not time).
func tree(p *Profile) (*node, int) {
	root := &node{name: "all", kind: Process}
	depth := 0
	for _, st := range p.Stacks {
		n := root
		n.total += st.Count
		for _, f := range st.Frames {
			n = n.child(f)
			n.total += st.Count
		}
		depth = max(depth, len(st.Frames))
	}
	var sortTree func(n *node)
	sortTree = func(n *node) {
		slices.SortFunc(n.children, func(a, b *node) int {
			return cmp.Or(strings.Compare(a.name, b.name), cmp.Compare(a.kind, b.kind))
		})
		for _, c := range n.children {
			sortTree(c)
		}
	}
	sortTree(root)
	return root, depth + 1
}

// SVGOptions are the texts of a flame graph.
type SVGOptions struct {
	Title    string // "Flame Graph" when empty
	Subtitle string // e.g. what was sampled, how often
}

// WriteSVG writes p as a flame graph: one self-contained SVG (its script
// and style inside, nothing fetched) with the process at the bottom and
// each callee above its caller, a frame's width its share of the samples.
// Click a frame to zoom into it (Reset Zoom, or a click on the bottom
// frame, goes back); Search (or Ctrl-F) highlights the functions matching
// a regular expression and shows their share; hovering shows a frame's
// name, module, samples and share. A URL fragment searches
// (#search=REGEXP) and zooms into the first frame matching (#zoom=REGEXP)
// on load, both with &.
func WriteSVG(w io.Writer, p *Profile, opts SVGOptions) error {
	root, depth := tree(p)
	if opts.Title == "" {
		opts.Title = "Flame Graph"
	}
	height := svgTop + depth*frameHeight + svgBottom
	b := bufio.NewWriter(w)
	fmt.Fprintf(b, `<?xml version="1.0" standalone="no"?>
<svg version="1.1" width="%d" height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg" data-total="%d" onload="init()">
<style>
text { font-family: monospace; font-size: 12px; fill: #000; }
#frames g { cursor: pointer; }
#frames g:hover rect { stroke: #000; stroke-width: 0.5; }
#frames text { pointer-events: none; }
.hide { display: none; }
.parent { opacity: 0.5; }
.btn { cursor: pointer; fill: #333; text-decoration: underline; }
</style>
<script type="text/ecmascript"><![CDATA[%s]]></script>
<rect x="0" y="0" width="%d" height="%d" fill="#f8f8f4"/>
<text id="title" x="%d" y="22" text-anchor="middle" style="font-size:17px">%s</text>
<text id="subtitle" x="%d" y="40" text-anchor="middle" style="fill:#555">%s</text>
<text id="reset" class="btn hide" x="%d" y="22" onclick="reset()">Reset Zoom</text>
<text id="search" class="btn" x="%d" y="22" text-anchor="end" onclick="askSearch()">Search</text>
<text id="matched" x="%d" y="%d" text-anchor="end"> </text>
<text id="details" x="%d" y="%d"> </text>
<g id="frames">
`, svgWidth, height, svgWidth, height, root.total, svgScript,
		svgWidth, height,
		svgWidth/2, html.EscapeString(opts.Title),
		svgWidth/2, html.EscapeString(opts.Subtitle),
		svgPad, svgWidth-svgPad,
		svgWidth-svgPad, height-10, svgPad, height-10)
	if root.total > 0 {
		writeFrames(b, root, 0, 0, root.total, height)
	}
	b.WriteString("</g>\n</svg>\n")
	return b.Flush()
}

// writeFrames writes n, which starts x samples from the left at depth d,
// and its children.
func writeFrames(b *bufio.Writer, n *node, x uint64, d int, total uint64, height int) {
	scale := float64(svgWidth-2*svgPad) / float64(total)
	px, pw := svgPad+float64(x)*scale, float64(n.total)*scale
	if pw < minWidth {
		return
	}
	y := height - svgBottom - (d+1)*frameHeight
	name := html.EscapeString(n.name)
	info := fmt.Sprintf("%s (%d samples, %.2f%%)", n.name, n.total, 100*float64(n.total)/float64(total))
	if n.module != "" && !strings.Contains(n.name, n.module) {
		info = fmt.Sprintf("%s in %s (%d samples, %.2f%%)", n.name, n.module, n.total, 100*float64(n.total)/float64(total))
	}
	fmt.Fprintf(b, `<g data-x="%d" data-w="%d" data-d="%d" data-n="%s"><title>%s</title>`+
		`<rect x="%.2f" y="%d" width="%.2f" height="%d" rx="2" fill="%s"/>`+
		`<text x="%.2f" y="%d">%s</text></g>`+"\n",
		x, n.total, d, name, html.EscapeString(info),
		px, y, pw, frameHeight-1, colour(n),
		px+3, y+frameHeight-4, html.EscapeString(label(n.name, pw)))
	for _, c := range n.children {
		writeFrames(b, c, x, d+1, total, height)
		x += c.total
	}
}

// label is name cut to fit width pixels ("" when not even 3 characters
// fit), as the script does on zoom.
func label(name string, width float64) string {
	n := int((width - 6) / charWidth)
	if n < 3 {
		return ""
	}
	r := []rune(name)
	if len(r) <= n {
		return name
	}
	return string(r[:n-2]) + ".."
}

// colour picks a frame's fill from its kind (a hue range each) and its
// name (a stable place in the range): the same function has the same
// colour in every graph.
func colour(n *node) string {
	h := fnv.New32a()
	h.Write([]byte(n.name))
	v := h.Sum32()
	a, c := float64(v&0xffff)/0xffff, float64(v>>16)/0xffff
	switch n.kind {
	case Kernel:
		return hsl(195+25*a, 60+20*c, 72)
	case JIT:
		return hsl(85+45*a, 50+20*c, 55)
	case Interpreted:
		return hsl(165+20*a, 55+20*c, 55)
	case Process:
		return hsl(0, 0, 72+10*a)
	default:
		return hsl(5+50*a, 75+20*c, 60)
	}
}

func hsl(h, s, l float64) string { return fmt.Sprintf("hsl(%.0f,%.0f%%,%.0f%%)", h, s, l) }

// svgScript zooms, searches and shows details. Frames carry their place
// in samples (data-x, data-w) and depth (data-d), so zooming is exact.
const svgScript = `
var W = 1200, PAD = 10, CHAR = 7.2, HIGHLIGHT = "rgb(230,0,230)";
var frames = [], total = 0, root = null, details, matched, resetBtn;
function init() {
	total = +document.documentElement.getAttribute("data-total");
	details = document.getElementById("details");
	matched = document.getElementById("matched");
	resetBtn = document.getElementById("reset");
	var gs = document.getElementById("frames").getElementsByTagName("g");
	for (var i = 0; i < gs.length; i++) {
		var g = gs[i], f = {
			g: g, x: +g.getAttribute("data-x"), w: +g.getAttribute("data-w"),
			d: +g.getAttribute("data-d"), name: g.getAttribute("data-n"),
			rect: g.getElementsByTagName("rect")[0], text: g.getElementsByTagName("text")[0],
			info: g.getElementsByTagName("title")[0].textContent
		};
		f.fill = f.rect.getAttribute("fill");
		frames.push(f);
		if (f.d == 0) root = f;
		g.onclick = (function (f) { return function () { zoom(f); }; })(f);
		g.onmouseover = (function (f) { return function () { details.textContent = f.info; }; })(f);
		g.onmouseout = function () { details.textContent = " "; };
	}
	document.addEventListener("keydown", function (e) {
		if ((e.ctrlKey || e.metaKey) && e.key == "f") { e.preventDefault(); askSearch(); }
		else if (e.key == "Escape") { search(null); }
	});
	var args = location.hash.slice(1).split("&");
	for (var i = 0; i < args.length; i++) {
		var kv = /^(search|zoom)=(.*)$/.exec(args[i]);
		if (!kv) continue;
		var re = new RegExp(decodeURIComponent(kv[2]));
		if (kv[1] == "search") search(re);
		else for (var j = 0; j < frames.length; j++) if (frames[j] !== root && re.test(frames[j].name)) { zoom(frames[j]); break; }
	}
}
function fit(name, width) {
	var n = Math.floor((width - 6) / CHAR);
	if (n < 3) return "";
	if (name.length <= n) return name;
	return name.slice(0, n - 2) + "..";
}
function place(f, x, w) {
	f.g.classList.remove("hide");
	f.rect.setAttribute("x", x.toFixed(2));
	f.rect.setAttribute("width", w.toFixed(2));
	f.text.setAttribute("x", (x + 3).toFixed(2));
	f.text.textContent = fit(f.name, w);
}
function zoom(z) {
	var scale = (W - 2 * PAD) / z.w;
	for (var i = 0; i < frames.length; i++) {
		var f = frames[i];
		f.g.classList.remove("parent");
		if (f.d < z.d) {
			if (f.x <= z.x && f.x + f.w >= z.x + z.w) {
				place(f, PAD, W - 2 * PAD);
				f.g.classList.add("parent");
			} else f.g.classList.add("hide");
		} else if (f.x >= z.x && f.x + f.w <= z.x + z.w && f.w * scale >= 0.1) {
			place(f, PAD + (f.x - z.x) * scale, f.w * scale);
		} else f.g.classList.add("hide");
	}
	resetBtn.classList.toggle("hide", z === root);
}
function reset() { if (root) zoom(root); }
function askSearch() {
	var term = prompt("Search for (regular expression):", "");
	if (term === null) return;
	search(term === "" ? null : new RegExp(term));
}
function search(re) {
	var spans = [];
	for (var i = 0; i < frames.length; i++) {
		var f = frames[i];
		if (re && f !== root && re.test(f.name)) {
			f.rect.setAttribute("fill", HIGHLIGHT);
			spans.push([f.x, f.x + f.w]);
		} else f.rect.setAttribute("fill", f.fill);
	}
	if (!re) { matched.textContent = " "; return; }
	spans.sort(function (a, b) { return a[0] - b[0]; });
	var sum = 0, end = -1;
	for (var i = 0; i < spans.length; i++) {
		var s = Math.max(spans[i][0], end), e = spans[i][1];
		if (e > s) sum += e - s;
		end = Math.max(end, e);
	}
	matched.textContent = "Matched: " + (total ? (100 * sum / total).toFixed(1) : "0") + "%";
}
`
