package gateway

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The config is decoded from its YAML node tree along the Config type, not
// by yaml.v3's own decoder: a value of the wrong type is reported by its
// field path and line (`sip.keepalive_interval (line 12): "30x" is not a
// duration`), not by the Go type it would fill, and decoding goes on, so
// every problem of a file is listed at once.

// nodeDecoder collects the problems of one document.
type nodeDecoder struct {
	problems []string
	failed   []string // field paths whose value could not be decoded
	// origin names the environment variable a node came from (overrides).
	origin map[*yaml.Node]string
	budget int // nodes left to visit: anchors can make a small file huge
	// where is each field path's place: "line 12: " or "WAGATEWAY_X: ".
	where map[string]string
}

// maxDecodeNodes bounds the work of one document, aliases expanded.
const maxDecodeNodes = 200_000

var (
	durationType    = reflect.TypeOf(time.Duration(0))
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
)

// where1 is the node's place in the file ("line 12: "), or the variable
// that set it ("WAGATEWAY_SIP_LISTEN: ").
func (d *nodeDecoder) where1(n *yaml.Node) string {
	if o := d.origin[n]; o != "" {
		return o + ": "
	}
	if n.Line > 0 {
		return fmt.Sprintf("line %d: ", n.Line)
	}
	return ""
}

func (d *nodeDecoder) bad(n *yaml.Node, path, format string, a ...any) {
	if path == "" {
		path = "(top level)"
	}
	d.problems = append(d.problems, d.where1(n)+path+": "+fmt.Sprintf(format, a...))
	d.failed = append(d.failed, path)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping (key: value, …)"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a value"
	}
}

// shown quotes a scalar for an error, shortened.
func shown(s string) string {
	if r := []rune(s); len(r) > 48 {
		s = string(r[:45]) + "…"
	}
	return fmt.Sprintf("%q", s)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// decode fills v from n; path is v's field path (trunks[1].codecs[0]).
func (d *nodeDecoder) decode(n *yaml.Node, v reflect.Value, path string, depth int) {
	if d.budget--; d.budget == 0 {
		d.bad(n, path, "the document is too large once its aliases are expanded")
	}
	if d.budget <= 0 {
		return
	}
	if path != "" && n.Kind != yaml.DocumentNode && n.Kind != yaml.AliasNode {
		d.where[path] = d.where1(n)
	}
	if depth > 64 {
		d.bad(n, path, "nested too deep")
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			d.decode(n.Content[0], v, path, depth+1)
		}
		return
	case yaml.AliasNode:
		if n.Alias != nil {
			d.decode(n.Alias, v, path, depth+1)
		}
		return
	}
	if isNull(n) {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	if v.Kind() != reflect.Pointer && v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		// SecretRef: its own check (already run on the whole document by
		// checkSecretRefs, so this error is rare) never quotes the value.
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.bad(n, path, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path, depth+1)
	case reflect.Struct:
		d.decodeStruct(n, v, path, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.bad(n, path, "expected a list ([a, b] or one \"- item\" a line), got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
		v.Set(s)
	default:
		d.decodeScalar(n, v, path)
	}
}

func (d *nodeDecoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.bad(n, path, "expected a single value, got %s", kindName(n))
		return
	}
	switch {
	case v.Type() == durationType:
		dur, err := time.ParseDuration(strings.TrimSpace(n.Value))
		if err != nil {
			d.bad(n, path, "%s is not a duration (e.g. 500ms, 30s, 1m30s, 0s)", shown(n.Value))
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(n.Value)
	default:
		p := reflect.New(v.Type())
		if err := n.Decode(p.Interface()); err != nil {
			what := "a " + v.Type().Kind().String()
			switch v.Kind() {
			case reflect.Bool:
				what = "true or false"
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				what = "a whole number"
			}
			d.bad(n, path, "%s is not %s", shown(n.Value), what)
			return
		}
		v.Set(p.Elem())
	}
}

func (d *nodeDecoder) decodeStruct(n *yaml.Node, v reflect.Value, path string, depth int) {
	// Merge keys recurse here directly: the same bounds as decode.
	if d.budget--; d.budget == 0 {
		d.bad(n, path, "the document is too large once its aliases are expanded")
	}
	if d.budget <= 0 {
		return
	}
	if depth > 64 {
		d.bad(n, path, "nested too deep (a mapping merged into itself?)")
		return
	}
	if n.Kind != yaml.MappingNode {
		d.bad(n, path, "expected a mapping (key: value, …), got %s", kindName(n))
		return
	}
	// Merge keys first (the first of a list wins, so the list is applied
	// last to first), then the keys written here, which win over them.
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, m := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value != "<<" || k.ShortTag() != "!!merge" {
			continue
		}
		if m.Kind == yaml.SequenceNode {
			for j := len(m.Content) - 1; j >= 0; j-- {
				d.decodeStruct(resolveAlias(m.Content[j]), v, path, depth+1)
			}
		} else {
			d.decodeStruct(resolveAlias(m), v, path, depth+1)
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolveAlias(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.bad(k, path, "a key must be a plain name, got %s", kindName(k))
			continue
		}
		sub := joinPath(path, k.Value)
		if line, dup := seen[k.Value]; dup {
			d.bad(k, sub, "set twice (first at line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		idx, ok := fieldIndex(v.Type(), k.Value)
		if !ok {
			d.bad(k, sub, "unknown setting%s", suggest(k.Value, yamlKeys(v.Type())))
			continue
		}
		d.decode(val, v.FieldByIndex(idx), sub, depth+1)
	}
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// fieldIndex finds the field whose yaml tag is key, inline structs included.
func fieldIndex(t reflect.Type, key string) ([]int, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			if sub, ok := fieldIndex(f.Type, key); ok {
				return append([]int{i}, sub...), true
			}
			continue
		}
		if name == key && name != "" && name != "-" {
			return []int{i}, true
		}
	}
	return nil, false
}

// yamlKeys lists a struct's keys, inline structs included.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" && f.Type.Kind() == reflect.Struct {
			keys = append(keys, yamlKeys(f.Type)...)
		} else if name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

// suggest names the closest known key, or lists them all.
func suggest(key string, keys []string) string {
	best, dist := "", 3
	for _, k := range keys {
		if d := editDistance(strings.ToLower(key), k); d < dist {
			best, dist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)
	return " (known here: " + strings.Join(sorted, ", ") + ")"
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// underFailed reports whether a Validate problem is about a field whose
// value could not be decoded (already reported, and now only a default).
func underFailed(problem string, failed []string) bool {
	field, _, _ := strings.Cut(problem, ": ")
	for _, f := range failed {
		if field == f || strings.HasPrefix(field, f+".") || strings.HasPrefix(field, f+"[") {
			return true
		}
	}
	return false
}
