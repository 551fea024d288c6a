package gateway

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// checkSecretNode accepts exactly one secret reference: a mapping whose
// keys are env or file, each a plain string. Its errors never quote the
// document: a secret written there would end up in the logs.
func checkSecretNode(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // left out: the field's own check says whether it is required
	}
	if n.Kind != yaml.MappingNode {
		return errors.New("a secret is named, never written in the config: use {env: NAME} or {file: PATH}")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || (k.Value != "env" && k.Value != "file") {
			// The key is not repeated: {env: X, hunter2} makes the secret a key.
			return fmt.Errorf("line %d column %d: a secret reference takes only env: NAME or file: PATH, no other key (a value written here would be a secret in the config)", k.Line, k.Column)
		}
		// A tag (!!int, !!bool, …) would make the decoder quote the value.
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
			return fmt.Errorf("line %d: %s: must be a plain name", v.Line, k.Value)
		}
	}
	return nil
}

var secretRefType = reflect.TypeOf(SecretRef{})

// checkSecretRefs walks the YAML document along the Config type and checks
// every secret reference, naming its field (whatsapp.app_secret,
// trunks[0].password). Other problems are left to the decoder.
func checkSecretRefs(doc *yaml.Node) []string {
	w := secretWalk{seen: map[secretVisit]bool{}}
	w.walk(doc, reflect.TypeOf(Config{}), "", 0)
	return w.problems
}

// secretWalk checks each (node, type) pair once: aliases and merge keys
// may reach one node many times (a few anchors can make exponentially
// many paths), and what was checked once need not be checked again.
type secretWalk struct {
	seen     map[secretVisit]bool
	problems []string
}

type secretVisit struct {
	n *yaml.Node
	t reflect.Type
}

func (w *secretWalk) walk(n *yaml.Node, t reflect.Type, path string, depth int) {
	if n == nil || depth > 32 || w.seen[secretVisit{n, t}] {
		return
	}
	w.seen[secretVisit{n, t}] = true
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			w.walk(c, t, path, depth+1)
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		w.walk(n.Alias, t, path, depth+1)
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == secretRefType {
		if err := checkSecretNode(n); err != nil {
			w.problems = append(w.problems, path+": "+err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			w.walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" { // a merge key: its mappings' fields are this struct's
				if v.Kind == yaml.SequenceNode {
					for _, m := range v.Content {
						w.walk(m, t, path, depth+1)
					}
				} else {
					w.walk(v, t, path, depth+1)
				}
				continue
			}
			f, ok := yamlField(t, k.Value)
			if !ok {
				continue
			}
			sub := k.Value
			if path != "" {
				sub = path + "." + k.Value
			}
			w.walk(v, f.Type, sub, depth+1)
		}
	}
}

// yamlField finds the struct field whose yaml tag names key.
func yamlField(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == key && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}
