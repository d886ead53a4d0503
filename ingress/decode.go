package ingress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Canonical returns body as canonical JSON: object keys sorted,
// insignificant white space removed, numbers as written. Two bodies that
// differ only in layout or key order have the same canonical form, which is
// what an Idempotency-Key is compared by and what `request send --file`
// derives a missing request_id from.
func Canonical(body []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil { // maps marshal with sorted keys
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// fieldErrors explains why body does not decode into a value of type t,
// field by field with its path (recipients[1].routing_order) and in the
// words of JSON, not Go: the decoder's own errors name Go types and lose
// array indexes.
func fieldErrors(body []byte, t reflect.Type) []FieldError {
	var probe any
	if err := json.Unmarshal(body, &probe); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return []FieldError{{Message: fmt.Sprintf("body is not valid JSON: %s (at byte %d)", se.Error(), se.Offset)}}
		}
		return []FieldError{{Message: "body is not valid JSON: " + strings.TrimPrefix(err.Error(), "json: ")}}
	}
	fe := locate(body, t, "")
	if len(fe) == 0 { // not expected: say something rather than nothing
		fe = []FieldError{{Message: "body is not a signing request"}}
	}
	return fe
}

var (
	timeType  = reflect.TypeFor[time.Time]()
	bytesType = reflect.TypeFor[[]byte]()
)

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// locate walks raw against t and returns the fields that do not fit.
func locate(raw []byte, t reflect.Type, path string) []FieldError {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	switch {
	case t.Kind() == reflect.Pointer:
		return locate(raw, t.Elem(), path)
	case t == timeType, t == bytesType:
		return leaf(raw, t, path)
	case t.Kind() == reflect.Struct:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return []FieldError{{Field: path, Message: "must be an object"}}
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.IsExported() && name != "-" && name != "" {
				fields[name] = f.Type
			}
		}
		var out []FieldError
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			ft, ok := fields[k]
			if !ok {
				out = append(out, FieldError{Field: join(path, k), Message: "is not a field of a signing request"})
				continue
			}
			out = append(out, locate(obj[k], ft, join(path, k))...)
		}
		return out
	case t.Kind() == reflect.Slice:
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return []FieldError{{Field: path, Message: "must be an array"}}
		}
		var out []FieldError
		for i, it := range items {
			out = append(out, locate(it, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	case t.Kind() == reflect.Map:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			return []FieldError{{Field: path, Message: "must be an object"}}
		}
		var out []FieldError
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			out = append(out, locate(obj[k], t.Elem(), join(path, k))...)
		}
		return out
	default:
		return leaf(raw, t, path)
	}
}

// leaf decodes one value and, if it does not fit, says what it must be.
func leaf(raw []byte, t reflect.Type, path string) []FieldError {
	if err := json.Unmarshal(raw, reflect.New(t).Interface()); err == nil {
		return nil
	}
	var want string
	switch {
	case t == timeType:
		want = "must be an RFC 3339 time, such as 2026-12-01T17:00:00Z"
	case t == bytesType:
		want = "must be base64"
	case t.Kind() == reflect.String:
		want = "must be a string"
	case t.Kind() == reflect.Bool:
		want = "must be true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		want = "must be a whole number"
	case t.Kind() == reflect.Float32, t.Kind() == reflect.Float64:
		want = "must be a number"
	default:
		want = "has the wrong type"
	}
	return []FieldError{{Field: path, Message: want}}
}
