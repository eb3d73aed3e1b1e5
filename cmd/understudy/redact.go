package main

import (
	"regexp"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/understudy-ha/understudy/fence"
)

// redactedValue replaces every secret the CLI would otherwise print.
const redactedValue = "xxxxx"

// iscsiSecretRE matches the password of an iscsi:// URL's user info. The authority ends
// at the first "/", and the user info at the last "@" before it, as in net/url; so the
// greedy [^/\s]* takes a password that itself contains "@".
var iscsiSecretRE = regexp.MustCompile(`(iscsi://[^/@\s:]*):[^/\s]*@`)

// specRedactor hides the secrets of one cluster spec text wherever the CLI prints it or
// text derived from it (the apply diff, validation errors): CHAP secrets in iscsi://
// URLs, and the values of secret-looking keys. It works on the text, line for line, so a
// diff of two redacted texts still shows every change except the secret itself.
type specRedactor struct {
	values []*regexp.Regexp // each secret value as a whole word
}

// newSpecRedactor collects the secret values of the YAML documents in texts; a text that
// does not parse contributes none (its iscsi:// secrets are still hidden).
func newSpecRedactor(texts ...[]byte) *specRedactor {
	r := &specRedactor{}
	seen := map[string]bool{}
	var found []string
	for _, text := range texts {
		var doc yaml.Node
		if yaml.Unmarshal(text, &doc) != nil {
			continue
		}
		collectSecrets(&doc, func(v string) {
			if v != "" && v != redactedValue && !seen[v] {
				seen[v] = true
				found = append(found, v)
			}
		})
	}
	// Longest first: a secret that extends another ("pw" and "pw-new") must be hidden
	// whole, not leave its tail after the shorter one was replaced.
	slices.SortFunc(found, func(a, b string) int { return len(b) - len(a) })
	for _, v := range found {
		r.values = append(r.values, regexp.MustCompile(`(^|[^\w])`+regexp.QuoteMeta(v)+`($|[^\w])`))
	}
	return r
}

// collectSecrets calls add with every scalar value of a secret-looking key under n.
func collectSecrets(n *yaml.Node, add func(string)) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k, v := n.Content[i], n.Content[i+1]; fence.IsSecretArg(k.Value) && v.Kind == yaml.ScalarNode {
				add(v.Value)
			}
		}
	}
	for _, c := range n.Content {
		collectSecrets(c, add)
	}
}

// redact returns s with every known secret replaced by redactedValue.
func (r *specRedactor) redact(s string) string {
	s = iscsiSecretRE.ReplaceAllString(s, "${1}:"+redactedValue+"@")
	for _, re := range r.values {
		// Twice: adjacent matches share the separator between them.
		for range 2 {
			s = re.ReplaceAllString(s, "${1}"+redactedValue+"${2}")
		}
	}
	return s
}
