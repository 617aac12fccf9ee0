package output_test

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/owlbpf/owl/internal/event"
	"github.com/owlbpf/owl/internal/output"
	"github.com/owlbpf/owl/internal/tools"
)

// stdJSON is what Writer wrote before its own encoder: encoding/json
// without HTML escaping.
func stdJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(v)
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), err
}

// checkSame encodes the value behind ptr (a reflect.Value of a pointer)
// both ways and fails when the bytes differ. A value encoding/json refuses
// must be refused by the fast encoder too (Writer then falls back).
func checkSame(t *testing.T, ptr reflect.Value) {
	t.Helper()
	want, wantErr := stdJSON(ptr.Interface())
	got, err := output.AppendJSONOf(ptr.Type().Elem(), ptr.UnsafePointer())
	if wantErr != nil {
		if err == nil {
			t.Fatalf("%v: encoding/json fails (%v), the encoder wrote %s", ptr.Type(), wantErr, got)
		}
		return
	}
	if err != nil && !strings.Contains(err.Error(), "fall back") {
		t.Fatalf("%v: %v (encoding/json wrote %s)", ptr.Type(), err, want)
	}
	if err == nil && !bytes.Equal(got, want) {
		t.Fatalf("%v:\n got %s\nwant %s", ptr.Type(), got, want)
	}
}

var strs = []string{"", "a", "bash", "x\"y\\z", "<&>", "\x00\x01\n\r\t\b\f\x7f", "é€😀", "\xff\xfe", "a\u2028b\u2029", "\u202e"}

// fill sets v to random values, strings from strs and random bytes, slices
// nil, empty or short, pointers nil or set, times in and outside the
// range Time accepts.
func fill(r *rand.Rand, v reflect.Value, depth int) {
	if v.Type() == reflect.TypeFor[event.Time]() {
		switch r.IntN(4) {
		case 0:
			v.Set(reflect.ValueOf(event.Time{}))
		case 1:
			v.Set(reflect.ValueOf(event.Time{Time: time.Unix(0, r.Int64())}))
		default:
			v.Set(reflect.ValueOf(event.Time{Time: time.Unix(1_790_000_000, r.Int64N(1e9))}))
		}
		return
	}
	if v.Type() == reflect.TypeFor[netip.Addr]() {
		addrs := []netip.Addr{{}, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"), netip.MustParseAddr("fe80::1%eth0")}
		v.Set(reflect.ValueOf(addrs[r.IntN(len(addrs))]))
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(r.Uint64()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if r.IntN(3) == 0 {
			v.SetUint(0)
		} else {
			v.SetUint(r.Uint64())
		}
	case reflect.Float32, reflect.Float64:
		fs := []float64{0, math.Copysign(0, -1), 1.5, 1e-7, 1e21, 123456789, r.NormFloat64() * 1e6, math.NaN()}
		v.SetFloat(fs[r.IntN(len(fs))])
	case reflect.String:
		if r.IntN(2) == 0 {
			v.SetString(strs[r.IntN(len(strs))])
		} else {
			b := make([]byte, r.IntN(20))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			v.SetString(string(b))
		}
	case reflect.Array:
		for i := range v.Len() {
			fill(r, v.Index(i), depth)
		}
	case reflect.Slice:
		if depth > 3 || r.IntN(3) == 0 {
			return
		}
		n := r.IntN(4)
		v.Set(reflect.MakeSlice(v.Type(), n, n))
		for i := range n {
			fill(r, v.Index(i), depth+1)
		}
	case reflect.Pointer:
		if depth > 3 || r.IntN(2) == 0 {
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(r, v.Elem(), depth+1)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				fill(r, f, depth)
			}
		}
	case reflect.Map:
		if r.IntN(2) == 0 {
			return
		}
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(r, k, depth+1)
		fill(r, e, depth+1)
		v.SetMapIndex(k, e)
	}
}

// The encoder writes what encoding/json writes, for the events and
// outputs of every tool, over random values.
func TestJSONSameAsEncodingJSONForEveryTool(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	types := 0
	for _, tl := range tools.All() {
		info := tl.Info()
		ts := []reflect.Type{info.Event}
		for _, o := range info.Outputs {
			ts = append(ts, o.Type)
		}
		for _, typ := range ts {
			if typ == nil {
				continue
			}
			types++
			checkSame(t, reflect.New(typ)) // zero value
			for range 300 {
				p := reflect.New(typ)
				fill(r, p.Elem(), 0)
				checkSame(t, p)
			}
		}
	}
	if types < len(tools.All()) {
		t.Fatalf("%d types for %d tools", types, len(tools.All()))
	}
}

type inner struct {
	A int    `json:"a"`
	B string `json:"b,omitempty"`
}

type Exported struct{ E uint8 }

type tricky struct {
	inner
	Exported
	Named     inner `json:"named"`
	Skip      int   `json:"-"`
	Dash      int   `json:"-,"`
	Plain     int16
	hidden    int
	Omit      []int           `json:"omit,omitempty"`
	OmitF     float64         `json:"omitf,omitempty"`
	OmitP     *int            `json:"omitp,omitempty"`
	Bytes     []byte          `json:"bytes"`
	ByteArray [3]byte         `json:"byte_array"`
	Floats    []float32       `json:"floats"`
	Map       map[string]int  `json:"map"`
	Any       any             `json:"any"`
	Ptr       *inner          `json:"ptr"`
	Name      event.Name      `json:"name"`
	Comm      event.Comm      `json:"comm"`
	When      event.Time      `json:"when"`
	Addr      netip.Addr      `json:"addr"`
	Str       int             `json:"str,string"`
	Bad       string          `json:"bad\x01tag"`
	Nested    [][2]uint16     `json:"nested"`
	Dur       time.Duration   `json:"dur"`
	M2        map[int]*inner  `json:"m2"`
	Raw       json.RawMessage `json:"raw"`
}

func TestJSONSameAsEncodingJSONTricky(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	checkSame(t, reflect.New(reflect.TypeFor[tricky]()))
	for range 2000 {
		p := reflect.New(reflect.TypeFor[tricky]())
		fill(r, p.Elem(), 0)
		p.Interface().(*tricky).Raw = json.RawMessage(`{ "x" : [1, 2] }`)
		checkSame(t, p)
	}
	for range 500 {
		var in inner
		fill(r, reflect.ValueOf(&in).Elem(), 0)
		checkSame(t, reflect.ValueOf(&in))
	}
}

// Writer's JSON lines are encoding/json's, also when the fast encoder
// gives up on a value (a time outside [0,9999] fails in both).
func TestWriterJSONFallback(t *testing.T) {
	var out bytes.Buffer
	w := output.NewWriter[tricky](&out, output.JSON, nil)
	ok := tricky{Map: map[string]int{"<a>": 1}, Comm: event.Comm{'s', 'h'}}
	bad := tricky{When: event.Time{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}
	if err := w.Event(&ok); err != nil {
		t.Fatal(err)
	}
	if err := w.Event(&bad); err == nil {
		t.Fatal("a year of 10000 was encoded")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want, _ := stdJSON(&ok)
	if got := strings.TrimSuffix(out.String(), "\n"); got != string(want) {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

type benchEvent struct {
	event.Task
	Syscall string     `json:"syscall"`
	Args    [3]uint32  `json:"args"`
	Ret     int32      `json:"ret"`
	Name    event.Name `json:"name"`
}

func benchValue() *benchEvent {
	return &benchEvent{Task: event.Task{Time: event.Time{Time: time.Unix(1_790_000_000, 123)}, PID: 4242, TID: 4243, Comm: event.Comm{'b', 'a', 's', 'h'}}, Syscall: "setuid", Ret: -1, Name: "x"}
}

// Per-event cost of the writer's JSON lines (no timing is asserted).
func BenchmarkJSON(b *testing.B) {
	e := benchValue()
	b.Run("owl", func(b *testing.B) {
		w := output.NewWriter[benchEvent](discard{}, output.JSON, nil)
		b.ReportAllocs()
		for b.Loop() {
			w.Event(e)
		}
		w.Close()
	})
	b.Run("encoding-json", func(b *testing.B) {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			enc.Encode(e)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Times in every range MarshalJSON takes, and outside it, print the same.
func TestJSONTime(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 20000 {
		var ns int64
		switch i % 3 {
		case 0:
			ns = int64(r.Uint64())
		case 1:
			ns = r.Int64N(1 << 62)
		default:
			ns = 1_790_000_000_000_000_000 + r.Int64N(1e15)
		}
		v := struct {
			T event.Time `json:"t"`
		}{event.Time{Time: time.Unix(0, ns)}}
		if i%7 == 0 {
			v.T = event.Time{Time: time.Date(r.IntN(12000)-1000, time.Month(1+r.IntN(12)), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1e9), time.FixedZone("x", r.IntN(50000)-25000))}
		}
		checkSame(t, reflect.ValueOf(&v))
	}
}
