package output

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/owlbpf/owl/internal/event"
)

// A JSON encoder for event types that writes what encoding/json writes
// (with SetEscapeHTML(false)), byte for byte, without reflection on the
// per-event path: the type is walked once, into a tree of functions that
// read fields at fixed offsets and append to a byte slice. encoding/json
// walks the value with reflect for every event and was the slow part of
// `-o json` (about 1.1 µs per event here). Kinds this encoder does not
// handle itself (maps, interfaces, fields with the string or omitzero
// options, ambiguous embedded names) go to encoding/json for that value
// only; any error falls back to encoding/json for the whole event, so
// errors read the same too.

// jsonState is what one encoder reuses between events.
type jsonState struct {
	b       []byte
	scratch []byte
	compact bytes.Buffer
}

// jsonFunc appends the JSON of the value at p.
type jsonFunc func(s *jsonState, p unsafe.Pointer) error

// errJSONFallback is never returned to callers: it makes Encode hand the
// event to encoding/json.
var errJSONFallback = errors.New("json: fall back to encoding/json")

// jsonEncoder encodes values of type E as JSON lines.
type jsonEncoder[E any] struct {
	fn     jsonFunc
	s      jsonState
	std    *json.Encoder // the fallback, made on first use
	stdBuf bytes.Buffer
}

func newJSONEncoder[E any]() *jsonEncoder[E] {
	return &jsonEncoder[E]{fn: compileJSON(reflect.TypeFor[E](), map[reflect.Type]*jsonFunc{})}
}

// Append appends e's JSON and a newline to b. On any error b is returned
// unchanged with the error of encoding/json, which then also encodes e.
func (j *jsonEncoder[E]) Append(b []byte, e *E) ([]byte, error) {
	j.s.b = b
	err := j.fn(&j.s, unsafe.Pointer(e))
	out := j.s.b
	j.s.b = nil
	if err == nil {
		return append(out, '\n'), nil
	}
	// encoding/json writes nothing on error, and says why in its own words.
	b = out[:len(b)]
	if j.std == nil {
		j.std = json.NewEncoder(&j.stdBuf)
		j.std.SetEscapeHTML(false)
	}
	j.stdBuf.Reset()
	if err := j.std.Encode(e); err != nil {
		return b, err
	}
	return append(b, j.stdBuf.Bytes()...), nil
}

var (
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	timeType          = reflect.TypeFor[event.Time]()
	commType          = reflect.TypeFor[event.Comm]()
	nameType          = reflect.TypeFor[event.Name]()
)

// compileJSON returns the encoder of t. seen breaks recursive types: the
// function is filled in once compiled.
func compileJSON(t reflect.Type, seen map[reflect.Type]*jsonFunc) jsonFunc {
	if f, ok := seen[t]; ok {
		return func(s *jsonState, p unsafe.Pointer) error { return (*f)(s, p) }
	}
	f := new(jsonFunc)
	seen[t] = f
	*f = compileJSONType(t, seen)
	return *f
}

func compileJSONType(t reflect.Type, seen map[reflect.Type]*jsonFunc) jsonFunc {
	// The types every event has, written as their methods write them.
	switch t {
	case timeType:
		return func(s *jsonState, p unsafe.Pointer) error {
			var ok bool
			s.b, ok = appendJSONTime(s.b, (*event.Time)(p).Time)
			if !ok {
				return errJSONFallback
			}
			return nil
		}
	case nameType:
		return func(s *jsonState, p unsafe.Pointer) error {
			n := *(*event.Name)(p)
			if n == "" {
				s.b = append(s.b, "null"...)
				return nil
			}
			// Its MarshalJSON quotes as Go does; escapes JSON lacks (\x,
			// \a, \v, \U) make encoding/json fail: let it, on the fallback.
			start := len(s.b)
			s.b = strconv.AppendQuote(s.b, string(n))
			for i := start; i < len(s.b)-1; i++ {
				if s.b[i] == '\\' {
					switch s.b[i+1] {
					case 'x', 'a', 'v', 'U':
						return errJSONFallback
					}
					i++
				}
			}
			return nil
		}
	case commType:
		return func(s *jsonState, p unsafe.Pointer) error {
			s.scratch = (*event.Comm)(p).Append(s.scratch[:0])
			s.b = appendJSONString(s.b, s.scratch)
			return nil
		}
	}
	if t.Kind() != reflect.Pointer && (t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType)) {
		return func(s *jsonState, p unsafe.Pointer) error {
			m := reflect.NewAt(t, p).Interface().(json.Marshaler)
			out, err := m.MarshalJSON()
			if err != nil {
				return err
			}
			s.compact.Reset()
			if err := json.Compact(&s.compact, out); err != nil {
				return err
			}
			s.b = append(s.b, s.compact.Bytes()...)
			return nil
		}
	}
	if t.Kind() != reflect.Pointer && (t.Implements(textMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType)) {
		return func(s *jsonState, p unsafe.Pointer) error {
			m := reflect.NewAt(t, p).Interface().(encoding.TextMarshaler)
			out, err := m.MarshalText()
			if err != nil {
				return err
			}
			s.b = appendJSONString(s.b, out)
			return nil
		}
	}
	switch t.Kind() {
	case reflect.Bool:
		return func(s *jsonState, p unsafe.Pointer) error {
			s.b = strconv.AppendBool(s.b, *(*bool)(p))
			return nil
		}
	case reflect.Int:
		return jsonInt[int]
	case reflect.Int8:
		return jsonInt[int8]
	case reflect.Int16:
		return jsonInt[int16]
	case reflect.Int32:
		return jsonInt[int32]
	case reflect.Int64:
		return jsonInt[int64]
	case reflect.Uint:
		return jsonUint[uint]
	case reflect.Uint8:
		return jsonUint[uint8]
	case reflect.Uint16:
		return jsonUint[uint16]
	case reflect.Uint32:
		return jsonUint[uint32]
	case reflect.Uint64:
		return jsonUint[uint64]
	case reflect.Uintptr:
		return jsonUint[uintptr]
	case reflect.Float32:
		return func(s *jsonState, p unsafe.Pointer) error {
			return s.appendFloat(float64(*(*float32)(p)), 32)
		}
	case reflect.Float64:
		return func(s *jsonState, p unsafe.Pointer) error {
			return s.appendFloat(*(*float64)(p), 64)
		}
	case reflect.String:
		return func(s *jsonState, p unsafe.Pointer) error {
			str := *(*string)(p)
			s.b = appendJSONString(s.b, unsafe.Slice(unsafe.StringData(str), len(str)))
			return nil
		}
	case reflect.Struct:
		return compileJSONStruct(t, seen)
	case reflect.Array:
		return compileJSONArray(t, seen)
	case reflect.Slice:
		return compileJSONSlice(t, seen)
	case reflect.Pointer:
		elem := compileJSON(t.Elem(), seen)
		return func(s *jsonState, p unsafe.Pointer) error {
			q := *(*unsafe.Pointer)(p)
			if q == nil {
				s.b = append(s.b, "null"...)
				return nil
			}
			return elem(s, q)
		}
	}
	return jsonReflect(t)
}

// appendJSONTime writes t quoted as event.Time's MarshalJSON does (UTC,
// event.TimeLayout), without parsing the layout for every event; false
// for a year outside [0,9999], which MarshalJSON refuses.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	u := t.UTC()
	year, month, day := u.Date()
	if year < 0 || year > 9999 {
		return b, false
	}
	hour, min, sec := u.Clock()
	b = append(b, '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, min, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, u.Nanosecond(), 9)
	return append(b, 'Z', '"'), true
}

// appendDigits appends v (≥ 0) zero-padded to n digits.
func appendDigits(b []byte, v, n int) []byte {
	start := len(b)
	for range n {
		b = append(b, 0)
	}
	for i := len(b) - 1; i >= start; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// jsonReflect hands a value of t to encoding/json (maps, interfaces...).
func jsonReflect(t reflect.Type) jsonFunc {
	return func(s *jsonState, p unsafe.Pointer) error {
		out, err := json.Marshal(reflect.NewAt(t, p).Elem().Interface())
		if err != nil {
			return err
		}
		// json.Marshal escapes <, > and & (as \u003c...); the writer does
		// not: let the whole event go through the writer's settings.
		if bytes.Contains(out, []byte(`\u00`)) {
			return errJSONFallback
		}
		s.b = append(s.b, out...)
		return nil
	}
}

func jsonInt[T int | int8 | int16 | int32 | int64](s *jsonState, p unsafe.Pointer) error {
	s.b = strconv.AppendInt(s.b, int64(*(*T)(p)), 10)
	return nil
}

func jsonUint[T uint | uint8 | uint16 | uint32 | uint64 | uintptr](s *jsonState, p unsafe.Pointer) error {
	s.b = strconv.AppendUint(s.b, uint64(*(*T)(p)), 10)
	return nil
}

// appendFloat writes f as encoding/json does (ES6 number formatting).
func (s *jsonState) appendFloat(f float64, bits int) error {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return errJSONFallback
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (bits == 64 && (abs < 1e-6 || abs >= 1e21) ||
		bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21)) {
		format = 'e'
	}
	start := len(s.b)
	s.b = strconv.AppendFloat(s.b, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(s.b) - start
		if n >= 4 && s.b[len(s.b)-4] == 'e' && s.b[len(s.b)-3] == '-' && s.b[len(s.b)-2] == '0' {
			s.b[len(s.b)-2] = s.b[len(s.b)-1]
			s.b = s.b[:len(s.b)-1]
		}
	}
	return nil
}

type jsonField struct {
	name      []byte // `"name":`, with the comma before it added as needed
	offset    uintptr
	omitEmpty bool
	empty     func(p unsafe.Pointer) bool
	fn        jsonFunc
}

// compileJSONStruct lists the fields as encoding/json does: exported,
// tagged names, embedded structs' fields in place.
func compileJSONStruct(t reflect.Type, seen map[reflect.Type]*jsonFunc) jsonFunc {
	fields, ok := jsonFields(t, 0, seen)
	if !ok {
		return jsonReflect(t)
	}
	// Fields of embedded structs that share a name are resolved by
	// encoding/json's dominance rules; leave such types to it.
	names := map[string]bool{}
	for _, f := range fields {
		if names[string(f.name)] {
			return jsonReflect(t)
		}
		names[string(f.name)] = true
	}
	return func(s *jsonState, p unsafe.Pointer) error {
		s.b = append(s.b, '{')
		first := true
		for i := range fields {
			f := &fields[i]
			q := unsafe.Add(p, f.offset)
			if f.omitEmpty && f.empty(q) {
				continue
			}
			if !first {
				s.b = append(s.b, ',')
			}
			first = false
			s.b = append(s.b, f.name...)
			if err := f.fn(s, q); err != nil {
				return err
			}
		}
		s.b = append(s.b, '}')
		return nil
	}
}

// jsonFields returns t's fields at base, or false when t has something
// this encoder leaves to encoding/json.
func jsonFields(t reflect.Type, base uintptr, seen map[reflect.Type]*jsonFunc) ([]jsonField, bool) {
	var out []jsonField
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if sf.Anonymous {
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				return nil, false // embedded pointers: nil handling of encoding/json
			}
			if !sf.IsExported() && ft.Kind() != reflect.Struct {
				continue
			}
			if name == "" && ft.Kind() == reflect.Struct {
				inner, ok := jsonFields(ft, base+sf.Offset, seen)
				if !ok {
					return nil, false
				}
				out = append(out, inner...)
				continue
			}
		} else if !sf.IsExported() {
			continue
		}
		if name != "" && !validJSONTag(name) {
			name = ""
		}
		if name == "" {
			name = sf.Name
		}
		var omitEmpty bool
		for o := range strings.SplitSeq(opts, ",") {
			switch o {
			case "omitempty":
				omitEmpty = true
			case "string", "omitzero", "format", "inline", "unknown":
				return nil, false
			}
		}
		key := appendJSONString(nil, []byte(name))
		out = append(out, jsonField{
			name:      append(key, ':'),
			offset:    base + sf.Offset,
			omitEmpty: omitEmpty,
			empty:     jsonEmpty(sf.Type),
			fn:        compileJSON(sf.Type, seen),
		})
	}
	return out, true
}

// validJSONTag is encoding/json's rule for tag names it accepts.
func validJSONTag(s string) bool {
	for _, c := range s {
		switch {
		case strings.ContainsRune("!#$%&()*+-./:;<=>?@[]^_{|}~ ", c):
		case !unicode.IsLetter(c) && !unicode.IsDigit(c):
			return false
		}
	}
	return true
}

// jsonEmpty is encoding/json's isEmptyValue, for omitempty.
func jsonEmpty(t reflect.Type) func(p unsafe.Pointer) bool {
	switch t.Kind() {
	case reflect.Array:
		n := t.Len()
		return func(unsafe.Pointer) bool { return n == 0 }
	case reflect.String:
		return func(p unsafe.Pointer) bool { return len(*(*string)(p)) == 0 }
	case reflect.Pointer:
		return func(p unsafe.Pointer) bool { return *(*unsafe.Pointer)(p) == nil }
	case reflect.Float32, reflect.Float64:
		return func(p unsafe.Pointer) bool { return reflect.NewAt(t, p).Elem().Float() == 0 }
	case reflect.Map, reflect.Slice:
		return func(p unsafe.Pointer) bool { return reflect.NewAt(t, p).Elem().Len() == 0 }
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint,
		reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr, reflect.Interface:
		return func(p unsafe.Pointer) bool { return reflect.NewAt(t, p).Elem().IsZero() }
	}
	return func(unsafe.Pointer) bool { return false }
}

func compileJSONArray(t reflect.Type, seen map[reflect.Type]*jsonFunc) jsonFunc {
	n, size := t.Len(), t.Elem().Size()
	elem := compileJSON(t.Elem(), seen)
	return func(s *jsonState, p unsafe.Pointer) error {
		s.b = append(s.b, '[')
		for i := range n {
			if i > 0 {
				s.b = append(s.b, ',')
			}
			if err := elem(s, unsafe.Add(p, uintptr(i)*size)); err != nil {
				return err
			}
		}
		s.b = append(s.b, ']')
		return nil
	}
}

func compileJSONSlice(t reflect.Type, seen map[reflect.Type]*jsonFunc) jsonFunc {
	et := t.Elem()
	if et.Kind() == reflect.Uint8 && !reflect.PointerTo(et).Implements(marshalerType) &&
		!reflect.PointerTo(et).Implements(textMarshalerType) {
		return func(s *jsonState, p unsafe.Pointer) error {
			b := *(*[]byte)(p)
			if b == nil {
				s.b = append(s.b, "null"...)
				return nil
			}
			s.b = append(s.b, '"')
			s.b = base64.StdEncoding.AppendEncode(s.b, b)
			s.b = append(s.b, '"')
			return nil
		}
	}
	size := et.Size()
	elem := compileJSON(et, seen)
	return func(s *jsonState, p unsafe.Pointer) error {
		h := (*struct {
			data unsafe.Pointer
			len  int
			cap  int
		})(p)
		if h.data == nil {
			s.b = append(s.b, "null"...)
			return nil
		}
		s.b = append(s.b, '[')
		for i := range h.len {
			if i > 0 {
				s.b = append(s.b, ',')
			}
			if err := elem(s, unsafe.Add(h.data, uintptr(i)*size)); err != nil {
				return err
			}
		}
		s.b = append(s.b, ']')
		return nil
	}
}

// appendJSONString quotes s as encoding/json does without HTML escaping:
// invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are escaped.
func appendJSONString(b, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += n
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += n
			start = i
			continue
		}
		i += n
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"
