package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

const (
	// leaseLookupTimeout bounds the per-node lease time-left lookups of one status: a
	// status must come back even when etcd answers slowly (LEASE-LEFT then shows "-").
	leaseLookupTimeout = 3 * time.Second
	// watchRefresh redraws a --watch on a terminal even without etcd changes, because
	// keepalives change LEASE-LEFT without changing any key.
	watchRefresh = 2 * time.Second
)

func (a *app) newStatusCmd() *cobra.Command {
	var output string
	var watch bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show nodes, roles, holders, fencing tokens and lease time left",
		Long: `status reads the whole cluster state at one etcd revision and shows every known node
(live or down) and every role of the spec with its holder.

Exit codes: 0 every role is held, 3 degraded (at least one role is unheld), 1 failure.
With --watch it redraws on every change until interrupted (exit 0).`,
		Example: `  understudy status
  understudy status -o json | jq '.roles[] | select(.holder == "")'
  understudy status --watch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := outputFlag(output, formatTable, formatJSON, formatYAML); err != nil {
				return err
			}
			st, done, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if watch {
				return a.watchStatus(cmd.Context(), st, output)
			}
			return a.status(cmd.Context(), st, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", formatTable, "output format: table, json or yaml")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw on every change until interrupted")
	return cmd
}

// readStatus reads one consistent view and turns it into a ClusterStatus.
func (a *app) readStatus(ctx context.Context, st *lease.Store) (*lease.View, takeover.ClusterStatus, error) {
	v, err := st.View(ctx)
	if err != nil {
		return nil, takeover.ClusterStatus{}, fmt.Errorf("read cluster %q: %w", a.cluster, err)
	}
	lctx, cancel := context.WithTimeout(ctx, leaseLookupTimeout)
	defer cancel()
	return v, takeover.BuildStatus(lctx, st, a.cluster, v), nil
}

func (a *app) status(ctx context.Context, st *lease.Store, format string) error {
	v, cs, err := a.readStatus(ctx, st)
	if err != nil {
		return err
	}
	if err := renderStatus(a.stdout, format, cs, v.Spec != nil, time.Now()); err != nil {
		return err
	}
	if !cs.Held() {
		return &exitError{code: exitDegraded}
	}
	return nil
}

// watchStatus redraws on every change under the prefix until ctx ends. One watch stays
// open from the first view's revision; each batch of events triggers a fresh View (at
// least as new), so no change is missed and bursts collapse into one redraw.
func (a *app) watchStatus(ctx context.Context, st *lease.Store, format string) error {
	tty := isTerminal(a.stdout)
	var tick <-chan time.Time
	if tty {
		t := time.NewTicker(watchRefresh)
		defer t.Stop()
		tick = t.C
	}
	// One context for every watch of this loop: etcd closes a failed (compacted) watch's
	// channel itself, so a replacement watch needs no separate cancel.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wch clientv3.WatchChan
	for {
		v, cs, err := a.readStatus(ctx, st)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := a.drawWatch(tty, format, cs, v, time.Now()); err != nil {
			return err
		}
		if wch == nil {
			wch = st.Watch(wctx, v.Rev+1)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil {
				// Compacted or broken watch: restart it after the next View.
				wch = nil
			}
		}
	}
}

func (a *app) drawWatch(tty bool, format string, cs takeover.ClusterStatus, v *lease.View, now time.Time) error {
	switch {
	case tty:
		// Home + clear screen: redraw in place like watch(1).
		_, _ = fmt.Fprintf(a.stdout, "\x1b[H\x1b[2J%s  revision %d  (Ctrl-C to stop)\n\n",
			now.Format("15:04:05"), cs.Rev)
	case format == formatTable:
		_, _ = fmt.Fprintf(a.stdout, "--- %s revision %d\n", now.Format(time.RFC3339), cs.Rev)
	case format == formatYAML:
		_, _ = fmt.Fprintln(a.stdout, "---")
	}
	return renderStatus(a.stdout, format, cs, v.Spec != nil, now)
}

func renderStatus(w io.Writer, format string, cs takeover.ClusterStatus, specApplied bool, now time.Time) error {
	switch format {
	case formatJSON:
		return writeJSON(w, cs)
	case formatYAML:
		return writeYAML(w, cs)
	}
	tw := newTable(w)
	row(tw, "NAME", "ID", "STATE", "ROLES", "LEASE-LEFT", "QUALIFIED", "SINCE")
	for _, n := range cs.Nodes {
		left := "-"
		switch {
		case n.LeaseLeft > 0:
			left = n.LeaseLeft.String()
		case n.State != takeover.StateDown:
			left = "<1s" // etcd reports whole seconds, rounded down
		}
		state := n.State
		if n.Cordoned && state != takeover.StateCordoned {
			state += ",cordoned"
		}
		row(tw, n.Name, strconv.FormatUint(uint64(n.ID), 10), state, dash(strings.Join(n.Roles, ",")),
			left, n.Qualified, age(n.Since, now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, _ = fmt.Fprintln(w)
	if !specApplied {
		_, _ = fmt.Fprintf(w, "no cluster spec applied yet: run `understudy apply -f cluster.yaml`\n")
		return nil
	}
	tw = newTable(w)
	row(tw, "ROLE", "HOLDER", "TOKEN", "VIP", "SINCE", "LAST")
	for _, r := range cs.Roles {
		row(tw, r.Name, holderCell(r), tokenCell(r.Token), dash(r.VIP), age(r.Since, now), lastCell(r))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, _ = fmt.Fprintln(w)
	_, _ = fmt.Fprintln(w, summary(cs))
	return nil
}

func holderCell(r takeover.RoleStatus) string {
	h := r.Holder
	if h == "" {
		h = "(unheld)"
	}
	if r.Target != "" && r.Target != r.Holder {
		h += " -> " + r.Target
	}
	return h
}

func tokenCell(t int64) string {
	if t == 0 {
		return "-"
	}
	return strconv.FormatInt(t, 10)
}

// lastCell shows the previous holder and whether it left cleanly; the next holder fences
// an unclean one. A last record that names the current holder is its own tenure: "-".
func lastCell(r takeover.RoleStatus) string {
	if r.LastHolder == "" || r.LastHolder == r.Holder {
		return "-"
	}
	if r.LastClean {
		return r.LastHolder + " (clean)"
	}
	return r.LastHolder + " (unclean)"
}

func summary(cs takeover.ClusterStatus) string {
	live := 0
	for _, n := range cs.Nodes {
		if n.State != takeover.StateDown {
			live++
		}
	}
	s := fmt.Sprintf("cluster %s at revision %d: %d nodes (%d live), %d roles", cs.Cluster, cs.Rev,
		len(cs.Nodes), live, len(cs.Roles))
	if cs.Held() {
		return s + ", all held"
	}
	return s + fmt.Sprintf(", DEGRADED: %d unheld (%s)", len(cs.Unheld), strings.Join(cs.Unheld, ", "))
}
