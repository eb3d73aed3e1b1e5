package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriteDiff(t *testing.T) {
	lines := func(n int) string {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			b.WriteString("line" + string(rune('a'+i-1)) + "\n")
		}
		return b.String()
	}
	tests := []struct {
		name, old, new, want string
	}{
		{"identical", "a\nb\n", "a\nb\n", ""},
		{"from nothing", "", "a\nb\n", "--- old\n+++ new\n@@ -0,0 +1,2 @@\n+a\n+b\n"},
		{"to nothing", "a\n", "", "--- old\n+++ new\n@@ -1,1 +0,0 @@\n-a\n"},
		{"change in the middle", lines(9), strings.Replace(lines(9), "linee\n", "E\n", 1),
			"--- old\n+++ new\n@@ -2,7 +2,7 @@\n lineb\n linec\n lined\n-linee\n+E\n linef\n lineg\n lineh\n"},
		{"two hunks", lines(20), strings.Replace(strings.Replace(lines(20), "lineb\n", "", 1), "lines\n", "S\n", 1),
			"--- old\n+++ new\n@@ -1,5 +1,4 @@\n linea\n-lineb\n linec\n lined\n linee\n" +
				"@@ -16,5 +15,5 @@\n linep\n lineq\n liner\n-lines\n+S\n linet\n"},
		{"no trailing newline", "a\nb", "a\nc", "--- old\n+++ new\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			writeDiff(&b, "old", "new", tc.old, tc.new)
			if b.String() != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tc.want)
			}
		})
	}
}
