package gateway

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Environment overrides: WAGATEWAY_ followed by the field path in capitals,
// an underscore between keys and before a list index:
//
//	WAGATEWAY_SIP_LISTEN=127.0.0.1:5070          sip.listen
//	WAGATEWAY_WEBRTC_PUBLIC_IPS=1.2.3.4,5.6.7.8  webrtc.public_ips (a list: comma-separated)
//	WAGATEWAY_TRUNKS_0_ADDRESS=10.0.0.7:5060     trunks[0].address
//
// Each is written into the YAML node tree before it is decoded, so it is
// checked exactly as the file is (types, validation, field paths: its
// problems name the variable). An empty variable is no override. A list index may be one past the last item:
// a new item. A variable that names a whole section is refused; one that
// names a secret reference (WAGATEWAY_WHATSAPP_APP_SECRET) is not an
// override: an override sets where a secret is read
// (WAGATEWAY_WHATSAPP_APP_SECRET_ENV=NAME or _FILE=PATH, replacing the
// reference), never the secret itself: it is ignored, with a warning when
// the file names another variable for that secret (WAGATEWAY_ADMIN_TOKEN is
// the admin token's own variable in the examples: ignored silently). A
// variable that names no setting is ignored with a warning.
const envPrefix = "WAGATEWAY_"

// envStep is one step of an override's path: a key or a list index.
type envStep struct {
	key   string
	index int // when key == ""
	// inSecret: the key is env or file of a secret reference.
	inSecret bool
}

// resolveEnvPath matches the variable's words against the Config type;
// keys hold underscores themselves (public_ips), so it tries each key
// that fits. It returns the steps and the type they reach.
func resolveEnvPath(words []string, t reflect.Type) ([]envStep, reflect.Type, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if len(words) == 0 {
		return nil, t, true
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == durationType {
			return nil, nil, false
		}
		for _, key := range yamlKeys(t) {
			kw := strings.Split(strings.ToUpper(key), "_")
			if len(kw) > len(words) || !slicesEqual(kw, words[:len(kw)]) {
				continue
			}
			idx, _ := fieldIndex(t, key)
			ft := t.FieldByIndex(idx).Type
			rest, rt, ok := resolveEnvPath(words[len(kw):], ft)
			if ok {
				return append([]envStep{{key: key, inSecret: t == secretRefType}}, rest...), rt, true
			}
		}
	case reflect.Slice:
		i, err := strconv.Atoi(words[0])
		if err != nil || i < 0 || i > 9999 || strconv.Itoa(i) != words[0] {
			return nil, nil, false
		}
		rest, rt, ok := resolveEnvPath(words[1:], t.Elem())
		if ok {
			return append([]envStep{{index: i}}, rest...), rt, true
		}
	}
	return nil, nil, false
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func stepsPath(steps []envStep) string {
	var b strings.Builder
	for _, s := range steps {
		if s.key == "" {
			fmt.Fprintf(&b, "[%d]", s.index)
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(s.key)
	}
	return b.String()
}

// applyEnvOverrides writes every WAGATEWAY_ variable of environ into doc.
// It returns the problems (errors) and the notes (warnings) it found; the
// nodes it wrote are recorded in origin, for the decoder's messages.
func applyEnvOverrides(doc *yaml.Node, environ []string, origin map[*yaml.Node]string) (problems, notes []string) {
	type override struct{ name, value string }
	var ovs []override
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		// Empty is unset: a blank line of an .env file changes nothing.
		if ok && value != "" && strings.HasPrefix(name, envPrefix) && len(name) > len(envPrefix) {
			ovs = append(ovs, override{name, value})
		}
	}
	if len(ovs) == 0 {
		return nil, nil
	}
	sort.Slice(ovs, func(i, j int) bool { return naturalLess(ovs[i].name, ovs[j].name) })
	if doc.Kind == 0 {
		*doc = yaml.Node{Kind: yaml.DocumentNode}
	}
	if doc.Kind != yaml.DocumentNode {
		return nil, nil
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		doc.Content = []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, nil // the decoder reports the document's shape
	}
	for _, o := range ovs {
		words := strings.Split(strings.TrimPrefix(o.name, envPrefix), "_")
		steps, t, ok := resolveEnvPath(words, reflect.TypeOf(Config{}))
		if !ok {
			notes = append(notes, fmt.Sprintf("%s: names no setting, ignored (an override is %s and the field path in capitals, _ between keys and before a list index: WAGATEWAY_SIP_LISTEN, WAGATEWAY_TRUNKS_0_ADDRESS)", o.name, envPrefix))
			continue
		}
		path := stepsPath(steps)
		switch {
		case t == secretRefType:
			// Silent when the file names this very variable, or no
			// reference there (admin.token of a file without admin).
			if ref := lookupNode(root, steps); ref != nil && !isNull(resolveAlias(ref)) && !refNames(ref, "env", o.name) {
				notes = append(notes, fmt.Sprintf("%s: names the secret reference %s, ignored: an override never holds a secret; it may say where the secret is read (%s_ENV=NAME or %s_FILE=PATH)", o.name, path, o.name, o.name))
			}
			continue
		case t.Kind() == reflect.Struct && t != durationType,
			t.Kind() == reflect.Slice && !scalarKind(t.Elem()):
			problems = append(problems, fmt.Sprintf("%s: %s: names a section, not a setting: override its fields one by one (%s_<FIELD>)", o.name, path, o.name))
			continue
		}
		val := &yaml.Node{Kind: yaml.ScalarNode, Value: o.value}
		if t.Kind() == reflect.String {
			val.Tag = "!!str"
		}
		origin[val] = o.name
		if t.Kind() == reflect.Slice {
			val = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			origin[val] = o.name
			for _, item := range strings.Split(o.value, ",") {
				item = strings.TrimSpace(item)
				if item == "" {
					continue
				}
				c := &yaml.Node{Kind: yaml.ScalarNode, Value: item}
				if t.Elem().Kind() == reflect.String {
					c.Tag = "!!str"
				}
				origin[c] = o.name
				val.Content = append(val.Content, c)
			}
		}
		if err := setNode(root, steps, val); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %s: %v", o.name, path, err))
		}
	}
	return problems, notes
}

func scalarKind(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() != reflect.Struct && t.Kind() != reflect.Slice || t == durationType
}

// naturalLess orders TRUNKS_2 before TRUNKS_10, so new list items are made
// in order.
func naturalLess(a, b string) bool {
	aw, bw := strings.Split(a, "_"), strings.Split(b, "_")
	for i := 0; i < len(aw) && i < len(bw); i++ {
		if aw[i] == bw[i] {
			continue
		}
		an, aerr := strconv.Atoi(aw[i])
		bn, berr := strconv.Atoi(bw[i])
		if aerr == nil && berr == nil {
			return an < bn
		}
		return aw[i] < bw[i]
	}
	return len(aw) < len(bw)
}

// refNames: the mapping n has key: value.
func refNames(n *yaml.Node, key, value string) bool {
	n = resolveAlias(n)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && resolveAlias(n.Content[i+1]).Value == value {
			return true
		}
	}
	return false
}

// lookupNode follows steps through the document without changing it
// (explicit keys only), or returns nil.
func lookupNode(n *yaml.Node, steps []envStep) *yaml.Node {
	for _, s := range steps {
		n = resolveAlias(n)
		var next *yaml.Node
		switch {
		case s.key != "" && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == s.key {
					next = n.Content[i+1]
				}
			}
		case s.key == "" && n.Kind == yaml.SequenceNode && s.index < len(n.Content):
			next = n.Content[s.index]
		}
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

// cloneNode copies one node (its children are shared, and copied in turn
// when an override descends into them): an override must not change an
// anchor's other users.
func cloneNode(n *yaml.Node) *yaml.Node {
	n = resolveAlias(n)
	c := *n
	c.Anchor = ""
	c.Content = append([]*yaml.Node(nil), n.Content...)
	return &c
}

// setNode writes val at steps under the mapping root, making the mappings
// and list items on the way.
func setNode(root *yaml.Node, steps []envStep, val *yaml.Node) error {
	cur := root
	for i, s := range steps {
		last := i == len(steps)-1
		fresh := func() *yaml.Node {
			if last {
				return val
			}
			if steps[i+1].key == "" {
				return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			}
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		if s.key != "" {
			if cur.Kind != yaml.MappingNode {
				return fmt.Errorf("the file has %s at line %d where the override needs a mapping", kindName(cur), cur.Line)
			}
			if last && s.inSecret {
				cur.Content = nil // env or file replaces the whole reference
			}
			at := -1
			for j := 0; j+1 < len(cur.Content); j += 2 {
				if cur.Content[j].Value == s.key {
					at = j + 1
				}
			}
			if at < 0 {
				cur.Content = append(cur.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s.key}, fresh())
				cur = cur.Content[len(cur.Content)-1]
				continue
			}
			if last || isNull(resolveAlias(cur.Content[at])) {
				cur.Content[at] = fresh()
			} else {
				cur.Content[at] = cloneNode(cur.Content[at])
			}
			cur = cur.Content[at]
			continue
		}
		if cur.Kind != yaml.SequenceNode {
			return fmt.Errorf("the file has %s at line %d where the override needs a list", kindName(cur), cur.Line)
		}
		switch {
		case s.index < len(cur.Content):
			if last {
				cur.Content[s.index] = val
			} else {
				cur.Content[s.index] = cloneNode(cur.Content[s.index])
			}
		case s.index == len(cur.Content):
			cur.Content = append(cur.Content, fresh())
		default:
			return fmt.Errorf("the list has %d item(s): an override may change one or add the next (index %d)", len(cur.Content), len(cur.Content))
		}
		cur = cur.Content[s.index]
	}
	return nil
}
