package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"index/suffixarray"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// tsMinQuotedMessages guards against a change of the doc's format that would leave the
// test nothing to check.
const tsMinQuotedMessages = 100

// TestTroubleshootingMessagesExist checks that every message docs/troubleshooting.md
// quotes is still printed by the product, so the doc cannot rot silently. The doc
// quotes each message as a code span at the start of a table row ("| `message` | cause
// | fix |"); every table row of the doc must be one. <word> in a message stands for a
// variable part. Each fixed part between placeholders must be produced by the Go
// sources (not tests): either it lies inside one string literal, or it is the end of
// one literal, then whole literals, then the start of another, as messages built by
// concatenation and by wrapping errors ("%s: %w") are. Literals are cut at their fmt
// verbs; %q counts as a quoted value, so `role "<role>"` matches `role %q`.
func TestTroubleshootingMessagesExist(t *testing.T) {
	msgs := tsQuotedMessages(t, filepath.Join("..", "docs", "troubleshooting.md"))
	if len(msgs) < tsMinQuotedMessages {
		t.Fatalf("docs/troubleshooting.md quotes %d messages, want at least %d: did its format change?", len(msgs), tsMinQuotedMessages)
	}
	src := newTSLiteralIndex(t, "..")
	for _, m := range msgs {
		for _, part := range tsPlaceholder.Split(m.text, -1) {
			if part != "" && !src.produces(part) {
				t.Errorf("docs/troubleshooting.md:%d: %q: no Go source prints %q", m.line, m.text, part)
			}
		}
	}
}

// tsPlaceholder is a variable part of a quoted message: <node>, <role>, <error> ...
var tsPlaceholder = regexp.MustCompile(`<[a-z][a-z0-9 _./-]*>`)

type tsQuotedMessage struct {
	line int
	text string
}

// tsTableRow is a message row: a code span (with any number of backticks) as the whole
// first cell, then the cause and the fix.
var tsTableRow = regexp.MustCompile("^\\|\\s*(`+)\\s?(.+?)\\s?(`+)\\s*\\|(.+)\\|\\s*$")

// tsQuotedMessages returns the message of every table row of the doc, failing the test
// on a row that quotes none (header and separator rows aside).
func tsQuotedMessages(t *testing.T, path string) []tsQuotedMessage {
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []tsQuotedMessage
	inFence, header := false, false
	for i, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "|") {
			header = true // the next table row is a header
			continue
		}
		if header || strings.Trim(line, "|-: ") == "" {
			header = false
			continue
		}
		m := tsTableRow.FindStringSubmatch(line)
		if m == nil || m[1] != m[3] {
			t.Errorf("%s:%d: a table row must start with the message as a code span: %s", path, i+1, line)
			continue
		}
		if cells := strings.Split(strings.ReplaceAll(m[4], `\|`, ""), "|"); len(cells) != 2 || strings.TrimSpace(cells[0]) == "" || strings.TrimSpace(cells[1]) == "" {
			t.Errorf("%s:%d: want three cells (message, cause, fix): %s", path, i+1, line)
		}
		out = append(out, tsQuotedMessage{line: i + 1, text: strings.ReplaceAll(m[2], `\|`, "|")})
	}
	return out
}

// tsLiteralIndex holds the string literals of the Go sources, cut at fmt verbs into
// pieces, each between NUL bytes: "\x00piece\x00piece\x00".
type tsLiteralIndex struct {
	pieces map[string]bool
	index  *suffixarray.Index
}

func newTSLiteralIndex(t *testing.T, root string) *tsLiteralIndex {
	li := &tsLiteralIndex{pieces: map[string]bool{}}
	blob := []byte{0}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					for _, p := range tsFormatPieces(s) {
						li.pieces[p] = true
						blob = append(append(blob, p...), 0)
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	li.index = suffixarray.New(blob)
	return li
}

// tsFormatPieces cuts s at its fmt verbs; a %q verb leaves a quote on both sides, %% is
// a percent sign.
func tsFormatPieces(s string) []string {
	var pieces []string
	var cur strings.Builder
	cut := func() {
		if cur.Len() > 0 {
			pieces = append(pieces, cur.String())
		}
		cur.Reset()
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 == len(s) {
			cur.WriteByte(s[i])
			continue
		}
		if s[i+1] == '%' {
			cur.WriteByte('%')
			i++
			continue
		}
		j := i + 1
		for j < len(s) && strings.IndexByte("+-# 0123456789.*[]", s[j]) >= 0 {
			j++
		}
		if j == len(s) {
			cur.WriteString(s[i:])
			break
		}
		quoted := s[j] == 'q'
		if quoted {
			cur.WriteByte('"')
		}
		cut()
		if quoted {
			cur.WriteByte('"')
		}
		i = j
	}
	cut()
	return pieces
}

func (li *tsLiteralIndex) has(b []byte) bool { return len(li.index.Lookup(b, 1)) > 0 }

// produces reports whether part is inside one piece, or is a piece's end, then whole
// pieces, then a piece's start, joined only where punctuation is (see tsJoint).
func (li *tsLiteralIndex) produces(part string) bool {
	if strings.ContainsRune(part, 0) {
		return false
	}
	if li.has([]byte(part)) {
		return true
	}
	reach := make([]bool, len(part)+1) // reach[i]: part[:i] is a piece's end + whole pieces
	for i := 1; i < len(part); i++ {
		reach[i] = tsJoint(part, i) && li.has(append([]byte(part[:i]), 0))
	}
	for i := 1; i < len(part); i++ {
		if !reach[i] {
			continue
		}
		for j := i + 1; j <= len(part); j++ {
			if li.pieces[part[i:j]] && (j == len(part) || tsJoint(part, j)) {
				reach[j] = true
			}
		}
	}
	if reach[len(part)] {
		return true
	}
	for i := 1; i < len(part); i++ {
		if reach[i] && li.has(append([]byte{0}, part[i:]...)) {
			return true
		}
	}
	return false
}

// tsJoint reports whether s may be two literals joined at i: messages are put together
// at separators (": ", ".field", "[i]", quotes), never inside a run of words, so that a
// reworded message does not pass as pieces of unrelated literals.
func tsJoint(s string, i int) bool {
	punct := func(k int) bool {
		if k < 0 || k >= len(s) {
			return false
		}
		c := s[k]
		return c < 0x80 && c != ' ' && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9')
	}
	return punct(i-1) || punct(i) || s[i-1] == ' ' && punct(i-2) || s[i] == ' ' && punct(i+1)
}

// TestTroubleshootingMatcher pins the rules by which a quoted message counts as printed.
func TestTroubleshootingMatcher(t *testing.T) {
	li := &tsLiteralIndex{pieces: map[string]bool{}}
	blob := []byte{0}
	for _, lit := range []string{"takeover: fence %s for role %q: %w", ".exec", ".command", ": ",
		"required: the argv of the program to run", "roles[%d]", "100%% sure"} {
		for _, p := range tsFormatPieces(lit) {
			li.pieces[p] = true
			blob = append(append(blob, p...), 0)
		}
	}
	li.index = suffixarray.New(blob)
	tests := []struct {
		name, part string
		want       bool
	}{
		{"inside one literal", "fence ", true},
		{"around a quoted verb", ` for role "`, true},
		{"after a quoted verb", `": `, true},
		{"concatenated", "].exec.command: required: the argv", true},
		{"reworded", "].exec.command: required: argv", false},
		{"joined inside words", "fence for role", false},
		{"percent", "100% sure", true},
		{"unknown", "no such message", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := li.produces(tc.part); got != tc.want {
				t.Errorf("produces(%q) = %v, want %v", tc.part, got, tc.want)
			}
		})
	}
}
