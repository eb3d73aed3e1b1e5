package deploy

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// statusTable is `understudy status` as printed: the node table, the role table and the
// summary line. Rows are keyed by their first column, cells by column name.
type statusTable struct {
	nodeCols, roleCols []string
	nodes, roles       map[string]map[string]string
	summary            string
}

// qsVolatile are the columns whose values differ from run to run: ids are allocated in
// the order the agents first reach etcd, tokens are etcd revisions, the rest are times.
var qsVolatile = []string{"ID", "TOKEN", "LEASE-LEFT", "SINCE"}

var qsRevision = regexp.MustCompile(`revision [0-9]+`)

func parseStatus(text string) (*statusTable, error) {
	var paras [][]string
	var cur []string
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if strings.TrimSpace(l) == "" {
			if cur != nil {
				paras, cur = append(paras, cur), nil
			}
			continue
		}
		cur = append(cur, l)
	}
	if cur != nil {
		paras = append(paras, cur)
	}
	if len(paras) != 3 || len(paras[2]) != 1 || !strings.HasPrefix(paras[0][0], "NAME ") || !strings.HasPrefix(paras[1][0], "ROLE ") {
		return nil, fmt.Errorf("want a NAME table, a ROLE table and a summary line, separated by blank lines:\n%s", text)
	}
	st := &statusTable{summary: qsRevision.ReplaceAllString(paras[2][0], "revision N")}
	st.nodeCols, st.nodes = parseStatusTable(paras[0])
	st.roleCols, st.roles = parseStatusTable(paras[1])
	return st, nil
}

var qsColumn = regexp.MustCompile(`\S+`)

// parseStatusTable cuts rows at the header's column starts (tabwriter aligns every row to
// them), so that cells with spaces ("node-a (unclean)") stay whole.
func parseStatusTable(lines []string) ([]string, map[string]map[string]string) {
	locs := qsColumn.FindAllStringIndex(lines[0], -1)
	cols := make([]string, len(locs))
	for i, l := range locs {
		cols[i] = lines[0][l[0]:l[1]]
	}
	rows := map[string]map[string]string{}
	for _, line := range lines[1:] {
		row := map[string]string{}
		for i, l := range locs {
			end := len(line)
			if i+1 < len(locs) {
				end = min(locs[i+1][0], len(line))
			}
			if l[0] < end {
				row[cols[i]] = strings.TrimSpace(line[l[0]:end])
			}
		}
		rows[row[cols[0]]] = row
	}
	return cols, rows
}

// matches reports how got differs from the doc's sample (want) in what does not vary
// from run to run: the columns, every row's stable cells, the summary.
func (want *statusTable) matches(got *statusTable) error {
	var errs []error
	if !slices.Equal(want.nodeCols, got.nodeCols) || !slices.Equal(want.roleCols, got.roleCols) {
		return fmt.Errorf("columns: the doc shows %v and %v, status prints %v and %v",
			want.nodeCols, want.roleCols, got.nodeCols, got.roleCols)
	}
	errs = append(errs, qsSameRows("node", want.nodes, got.nodes), qsSameRows("role", want.roles, got.roles))
	if want.summary != got.summary {
		errs = append(errs, fmt.Errorf("summary: the doc shows %q, status prints %q", want.summary, got.summary))
	}
	return errors.Join(errs...)
}

func qsSameRows(what string, want, got map[string]map[string]string) error {
	if !slices.Equal(slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(got))) {
		return fmt.Errorf("%ss: the doc shows %v, status prints %v", what, slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(got)))
	}
	var errs []error
	for key, w := range want {
		for col, v := range w {
			if !slices.Contains(qsVolatile, col) && got[key][col] != v {
				errs = append(errs, fmt.Errorf("%s %s, %s: the doc shows %q, status prints %q", what, key, col, v, got[key][col]))
			}
		}
	}
	return errors.Join(errs...)
}

// statusCell is one table cell a state needs: in the node or role table, row key, column col.
type statusCell struct{ table, key, col, val string }

// has reports the cells that do not hold the wanted values.
func (st *statusTable) has(cells ...statusCell) error {
	var errs []error
	for _, c := range cells {
		rows := st.nodes
		if c.table == "role" {
			rows = st.roles
		}
		if got := rows[c.key][c.col]; got != c.val {
			errs = append(errs, fmt.Errorf("%s %s, %s: %q, want %q", c.table, c.key, c.col, got, c.val))
		}
	}
	return errors.Join(errs...)
}

// qsAllHeld: the summary says every role is held.
func qsAllHeld(st *statusTable) error {
	if !strings.HasSuffix(st.summary, ", all held") {
		return fmt.Errorf("not every role is held: %s", st.summary)
	}
	return nil
}
