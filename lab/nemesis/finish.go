package nemesis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/lease"
)

// finish stops the clients, records the timeline, stops every agent (standbys first,
// so no role moves) and judges the LUNs read directly from their backing files.
func (r *runner) finish(ctx context.Context) error {
	acked := map[string]lab.WriterResult{}
	for _, role := range r.roles {
		r.pollers[role].Stop()
		acked[role] = r.writers[role].Stop()
	}
	r.timeline(ctx)
	r.stopAgents(ctx)
	r.say("reading the LUNs' write logs from their backing files")
	var lost, backwards []string
	for _, role := range r.roles {
		rl, err := r.f.Role(role)
		if err != nil {
			return err
		}
		text, err := readLUNLog(ctx, rl.LUNFile, r.tmp)
		if err != nil {
			r.rep.Final = append(r.rep.Final, Check{Name: "lun-readable", Detail: err.Error()})
			continue
		}
		e := Judge(ParseWriteLog(text), acked[role].Acked, acked[role].Failed)
		r.rep.Roles[role] = e
		if len(e.Lost) > 0 {
			lost = append(lost, fmt.Sprintf("%s: %d of %d (e.g. %d)", role, len(e.Lost), e.Acked, e.Lost[0]))
		}
		if e.Backwards > 0 {
			backwards = append(backwards, fmt.Sprintf("%s: %d records after a newer token", role, e.Backwards))
		}
	}
	total := 0
	for _, e := range r.rep.Roles {
		total += e.Acked
	}
	r.rep.Final = append(r.rep.Final,
		Check{Name: "no acknowledged write lost (LUNs read directly)", OK: len(lost) == 0,
			Detail: orText(lost, fmt.Sprintf("all %d acknowledged writes are on the LUNs", total))},
		Check{Name: "tokens never go backwards on a LUN", OK: len(backwards) == 0,
			Detail: orText(backwards, "no write from a fenced node reached a LUN")})
	var logs []string
	for _, n := range r.nodes {
		logs = append(logs, r.f.LogPath(n))
	}
	r.rep.Rejected = countConflicts(logs)
	return nil
}

// stopAgents stops the standbys, then the actives, each group concurrently.
func (r *runner) stopAgents(ctx context.Context) {
	cs, err := r.f.Status(ctx)
	var active []string
	if err == nil {
		for _, rs := range cs.Roles {
			if rs.Holder != "" && !slices.Contains(active, rs.Holder) {
				active = append(active, rs.Holder)
			}
		}
	}
	var standby []string
	for _, n := range r.nodes {
		if !slices.Contains(active, n) {
			standby = append(standby, n)
		}
	}
	for _, group := range [][]string{standby, active} {
		var wg sync.WaitGroup
		for _, n := range group {
			if r.f.Running(n) {
				wg.Go(func() { _ = r.f.Stop(ctx, n) })
			}
		}
		wg.Wait()
	}
}

// timeline merges the nemesis's faults and the cluster's history since the start.
func (r *runner) timeline(ctx context.Context) {
	var rows []TimelineRow
	for _, c := range r.rep.Cycles {
		for _, f := range c.Faults {
			rows = append(rows, TimelineRow{At: f.At, Who: "nemesis", What: c.label() + ": " + f.What})
			if !f.Healed.IsZero() {
				rows = append(rows, TimelineRow{At: f.Healed, Who: "nemesis", What: c.label() + ": healed"})
			}
		}
	}
	evs, err := r.f.Store().Events(ctx, "", 0)
	if err != nil {
		rows = append(rows, TimelineRow{At: time.Now(), Who: "nemesis", What: "history unreadable: " + err.Error()})
	}
	for _, ev := range evs {
		if ev.Time.Before(r.rep.Started) {
			continue
		}
		what := ev.Kind
		if ev.Role != "" {
			what += " " + ev.Role
		}
		if ev.Token != 0 {
			what += fmt.Sprintf(" token %d", ev.Token)
		}
		if ev.From != "" {
			what += " from " + ev.From
		}
		if len(ev.Steps) > 0 {
			what += " " + lease.FormatSteps(ev.Steps)
		}
		if ev.Detail != "" {
			what += ": " + strings.TrimSpace(ev.Detail)
		}
		rows = append(rows, TimelineRow{At: ev.Time, Who: ev.Node, What: what})
	}
	slices.SortStableFunc(rows, func(a, b TimelineRow) int { return a.At.Compare(b.At) })
	r.rep.Timeline = rows
}
