package main

import (
	"fmt"
	"io"
	"strings"
)

// diffContext is the number of unchanged lines shown around each change, as diff -u.
const diffContext = 3

// maxDiffCells caps the LCS table; cluster specs are small, and a huge one gets a plain
// "replace everything" diff instead of a quadratic table.
const maxDiffCells = 4_000_000

type diffOp struct {
	kind byte // ' ', '-', '+'
	line string
}

// writeDiff prints a unified diff of two texts with @@ hunk headers. It prints nothing
// when the texts have the same lines.
func writeDiff(w io.Writer, oldName, newName, oldText, newText string) {
	ops := diffLines(splitLines(oldText), splitLines(newText))
	hunks := groupHunks(ops)
	if len(hunks) == 0 {
		return
	}
	_, _ = fmt.Fprintf(w, "--- %s\n+++ %s\n", oldName, newName)
	for _, h := range hunks {
		_, _ = fmt.Fprintf(w, "@@ -%d,%d +%d,%d @@\n", h.oldStart, h.oldLen, h.newStart, h.newLen)
		for _, op := range ops[h.from:h.to] {
			_, _ = fmt.Fprintf(w, "%c%s\n", op.kind, op.line)
		}
	}
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// diffLines computes a shortest edit script with a longest-common-subsequence table.
func diffLines(a, b []string) []diffOp {
	n, m := len(a), len(b)
	if n*m > maxDiffCells {
		ops := make([]diffOp, 0, n+m)
		for _, l := range a {
			ops = append(ops, diffOp{'-', l})
		}
		for _, l := range b {
			ops = append(ops, diffOp{'+', l})
		}
		return ops
	}
	// lcs[i][j] = length of the LCS of a[i:] and b[j:].
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	ops := make([]diffOp, 0, n+m)
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, diffOp{' ', a[i]})
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			// Deletions first on a tie: diff -u shows "-old" before "+new".
			ops = append(ops, diffOp{'-', a[i]})
			i++
		default:
			ops = append(ops, diffOp{'+', b[j]})
			j++
		}
	}
	return ops
}

type hunk struct {
	from, to                           int // ops[from:to]
	oldStart, oldLen, newStart, newLen int
}

// groupHunks cuts the edit script into hunks of changes with diffContext lines around.
func groupHunks(ops []diffOp) []hunk {
	var hunks []hunk
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		from := max(0, i-diffContext)
		// Extend while the next change is within 2*context unchanged lines.
		to, same := i, 0
		for k := i; k < len(ops) && same <= 2*diffContext; k++ {
			if ops[k].kind == ' ' {
				same++
				continue
			}
			same, to = 0, k+1
		}
		to = min(len(ops), to+diffContext)
		hunks = append(hunks, makeHunk(ops, from, to))
		i = to
	}
	return hunks
}

func makeHunk(ops []diffOp, from, to int) hunk {
	h := hunk{from: from, to: to, oldStart: 1, newStart: 1}
	for _, op := range ops[:from] {
		if op.kind != '+' {
			h.oldStart++
		}
		if op.kind != '-' {
			h.newStart++
		}
	}
	for _, op := range ops[from:to] {
		if op.kind != '+' {
			h.oldLen++
		}
		if op.kind != '-' {
			h.newLen++
		}
	}
	// diff -u convention: an empty side starts at the line before.
	if h.oldLen == 0 {
		h.oldStart--
	}
	if h.newLen == 0 {
		h.newStart--
	}
	return h
}
