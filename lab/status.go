package lab

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/takeover"
)

const (
	// pollInterval is how often WaitFor re-reads the cluster.
	pollInterval = 50 * time.Millisecond
	// leaseLookupTimeout bounds the lease time-left lookups of one Status.
	leaseLookupTimeout = 2 * time.Second
)

// viewTimeout bounds one read of the cluster by the lab; the lab's etcd answers in
// milliseconds when it is whole.
const viewTimeout = 3 * time.Second

// Status reads the cluster at one etcd revision, with each live node's lease time left,
// the same picture `understudy status -o json` prints.
func (f *Farm) Status(ctx context.Context) (takeover.ClusterStatus, error) {
	return f.status(ctx, true)
}

// status reads the cluster; withLeases adds the per-node lease lookups (one round trip
// each), which polling does not need.
func (f *Farm) status(ctx context.Context, withLeases bool) (takeover.ClusterStatus, error) {
	// One read is bounded on its own: after etcd lost and regained its quorum, a read
	// sent to a member still catching up can hang where a retry succeeds at once.
	vctx, cancel := context.WithTimeout(ctx, viewTimeout)
	v, err := f.store.View(vctx)
	cancel()
	if err != nil {
		return takeover.ClusterStatus{}, fmt.Errorf("lab: read cluster %s: %w", f.opts.Cluster, err)
	}
	if !withLeases {
		return takeover.BuildStatus(ctx, nil, f.opts.Cluster, v), nil
	}
	lctx, cancel := context.WithTimeout(ctx, leaseLookupTimeout)
	defer cancel()
	return takeover.BuildStatus(lctx, f.store, f.opts.Cluster, v), nil
}

// WaitFor polls the cluster status every 50 ms until cond holds, and returns the status
// that satisfied it. When ctx ends first the error wraps ErrWait, names desc and shows
// the last status read (or the last read error).
func (f *Farm) WaitFor(ctx context.Context, desc string, cond func(takeover.ClusterStatus) bool) (takeover.ClusterStatus, error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last takeover.ClusterStatus
	var lastErr error
	read := false
	for {
		cs, err := f.status(ctx, false)
		if err == nil {
			last, read, lastErr = cs, true, nil
			if cond(cs) {
				return cs, nil
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			if read {
				WriteStatus(&b, last, nil, false)
			}
			if lastErr != nil {
				fmt.Fprintf(&b, "last read error: %v\n", lastErr)
			}
			return last, fmt.Errorf("%w: %s: %w; last status:\n%s", ErrWait, desc, ctx.Err(), b.String())
		case <-tick.C:
		}
	}
}

// FindNode returns the named node of a status.
func FindNode(cs takeover.ClusterStatus, name string) (takeover.NodeStatus, bool) {
	for _, n := range cs.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return takeover.NodeStatus{}, false
}

// FindRole returns the named role of a status.
func FindRole(cs takeover.ClusterStatus, name string) (takeover.RoleStatus, bool) {
	for _, r := range cs.Roles {
		if r.Name == name {
			return r, true
		}
	}
	return takeover.RoleStatus{}, false
}

// Holder is the node holding role, "" when unheld or unknown.
func Holder(cs takeover.ClusterStatus, role string) string {
	r, _ := FindRole(cs, role)
	return r.Holder
}

// StateOf is the node's state, "" when the node is unknown (e.g. removed).
func StateOf(cs takeover.ClusterStatus, name string) string {
	n, _ := FindNode(cs, name)
	return n.State
}

// NodesIn lists the nodes in the given state, sorted.
func NodesIn(cs takeover.ClusterStatus, state string) []string {
	var out []string
	for _, n := range cs.Nodes {
		if n.State == state {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
}

// Holds reports whether node is active and holds exactly role (and role's claim names
// node): the node record and the claim agree.
func Holds(cs takeover.ClusterStatus, node, role string) bool {
	n, ok := FindNode(cs, node)
	return ok && Holder(cs, role) == node && n.State == takeover.StateActive &&
		slices.Contains(n.Roles, role)
}

// IsStandby reports whether node is a live, qualified, uncordoned standby.
func IsStandby(cs takeover.ClusterStatus, node string) bool {
	n, ok := FindNode(cs, node)
	return ok && n.State == takeover.StateStandby && n.Qualified == takeover.QualifiedPassed &&
		!n.Cordoned && len(n.Roles) == 0
}

// colours for WriteStatus, ANSI SGR codes.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiBlue   = "\x1b[34m"
	ansiMag    = "\x1b[35m"
	ansiCyan   = "\x1b[36m"
	ansiDim    = "\x1b[2m"
)

var stateColour = map[string]string{
	takeover.StateActive:    ansiGreen,
	takeover.StateStandby:   ansiCyan,
	takeover.StateProbation: ansiYellow,
	takeover.StateDraining:  ansiMag,
	takeover.StateCordoned:  ansiMag,
	takeover.StateDown:      ansiRed,
}

func paint(on bool, code, s string) string {
	if !on || code == "" {
		return s
	}
	return code + s + ansiReset
}

// WriteStatus prints a status as two tables (nodes, roles). served maps a role to who
// answered on its service port (missing: not probed). colour adds ANSI colours.
func WriteStatus(w io.Writer, cs takeover.ClusterStatus, served map[string]string, colour bool) {
	var rows [][]string
	var paints []string
	for _, n := range cs.Nodes {
		state := n.State
		if n.Cordoned && state != takeover.StateCordoned {
			state += ",cordoned"
		}
		left := "-"
		if n.LeaseLeft > 0 {
			left = n.LeaseLeft.String()
		}
		rows = append(rows, []string{n.Name, fmt.Sprint(n.ID), state, dash(strings.Join(n.Roles, ",")), n.Qualified, left})
		paints = append(paints, stateColour[n.State])
	}
	writeTable(w, []string{"NODE", "ID", "STATE", "ROLES", "QUALIFIED", "LEASE-LEFT"}, rows, 2, paints, colour)
	fmt.Fprintln(w)
	rows, paints = nil, nil
	for _, r := range cs.Roles {
		holder, p := r.Holder, ""
		if holder == "" {
			holder, p = "(unheld)", ansiRed
		}
		last := "-"
		if r.LastHolder != "" && r.LastHolder != r.Holder {
			last = r.LastHolder + " (unclean)"
			if r.LastClean {
				last = r.LastHolder + " (clean)"
			}
		}
		rows = append(rows, []string{r.Name, holder, tokenText(r.Token), last, dash(served[r.Name])})
		paints = append(paints, p)
	}
	writeTable(w, []string{"ROLE", "HOLDER", "TOKEN", "LAST", "SERVED-BY"}, rows, 1, paints, colour)
}

// writeTable prints aligned columns indented by two spaces; with colour, column col of
// row i is painted paints[i]. Widths are computed before painting, because the escape
// codes have no width on a terminal (text/tabwriter would count them).
func writeTable(w io.Writer, header []string, rows [][]string, col int, paints []string, colour bool) {
	width := make([]int, len(header))
	for _, r := range append([][]string{header}, rows...) {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	line := func(r []string, p string) {
		var b strings.Builder
		b.WriteString("  ")
		for i, c := range r {
			cell := c
			if i < len(r)-1 {
				cell = pad(c, width[i]+2)
			}
			if i == col {
				cell = paint(colour, p, c) + cell[len(c):]
			}
			b.WriteString(cell)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(header, "")
	for i, r := range rows {
		line(r, paints[i])
	}
}

func pad(s string, n int) string {
	if len(s) >= n {
		return s
	}
	return s + strings.Repeat(" ", n-len(s))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func tokenText(t int64) string {
	if t == 0 {
		return "-"
	}
	return fmt.Sprint(t)
}
