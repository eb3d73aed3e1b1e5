package takeover

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ConfigReference returns the agent configuration table of docs/configuration.md in
// Markdown: the header and one row per key (key, flag, default, meaning), in the
// order of options, the one list that also defines the defaults, the environment
// bindings and the flags, so the reference cannot drift from the code.
// `understudy docs config` prints it; configdoc_test.go fails when the document's copy
// differs.
//
// The meaning is the flag's help text. Text in double quotes there becomes code in the
// table ("json" -> `json`, "" -> `""`), so help strings stay plain for --help.
func ConfigReference() string {
	var b strings.Builder
	b.WriteString("| key | flag | default | meaning |\n|-----|------|---------|---------|\n")
	for _, o := range options {
		flag := "(none)"
		if o.flag != "" {
			flag = mdCode("--" + o.flag)
		}
		b.WriteString(mdRow(mdCode(o.key), flag, docDefault(o.def), mdText(o.usage)))
	}
	return b.String()
}

// mdRow joins cells into a table row; an empty cell is written "| |".
func mdRow(cells ...string) string {
	var b strings.Builder
	b.WriteString("|")
	for _, c := range cells {
		if c != "" {
			b.WriteString(" " + c)
		}
		b.WriteString(" |")
	}
	b.WriteString("\n")
	return b.String()
}

// docDefault formats an option's default: strings and lists as code, durations the
// way they are written in the file ("3s", "1m"); empty values and zero durations
// (defaults derived from other keys, explained in the meaning) as a blank cell.
func docDefault(def any) string {
	switch d := def.(type) {
	case string:
		if d == "" {
			return ""
		}
		return mdCode(d)
	case []string:
		if len(d) == 0 {
			return ""
		}
		return mdCode(strings.Join(d, ","))
	case time.Duration:
		if d == 0 {
			return ""
		}
		return mdCode(docDuration(d))
	}
	return mdCode(fmt.Sprint(def))
}

// docDuration drops the zero units time.Duration.String adds: 1m0s -> 1m, 1h0m0s -> 1h.
func docDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// mdText turns a help string into a table cell: double-quoted parts become code spans,
// the rest is escaped so that it reads as written.
func mdText(s string) string {
	parts := strings.Split(s, `"`)
	if len(parts)%2 == 0 { // an unpaired quote: nothing is code
		return mdEscape(s)
	}
	var b strings.Builder
	for i, p := range parts {
		switch {
		case i%2 == 0:
			b.WriteString(mdEscape(p))
		case p == "":
			b.WriteString(mdCode(`""`))
		default:
			b.WriteString(mdCode(p))
		}
	}
	return b.String()
}

// mdCode is s as a code span in a table cell ("|" would end the cell even there).
func mdCode(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}

// mdEscape escapes what Markdown would otherwise interpret in plain text: table
// pipes, HTML, links, code and emphasis. An underscore inside a word (state_dir)
// cannot start emphasis and stays as it is, to keep the source readable.
func mdEscape(s string) string {
	var b strings.Builder
	prev := ' '
	for i, r := range s {
		switch r {
		case '\\', '|', '[', ']', '`', '*':
			b.WriteString(`\` + string(r))
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '_':
			next, _ := utf8.DecodeRuneInString(s[i+1:])
			if !isWordRune(prev) || !isWordRune(next) {
				b.WriteString(`\`)
			}
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
		prev = r
	}
	return b.String()
}

func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}
