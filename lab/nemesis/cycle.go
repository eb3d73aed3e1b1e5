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
	"github.com/understudy-ha/understudy/takeover"
)

// expect is what a scenario promises for its cycle.
type expect struct {
	// bound is the longest a role may go without a successful client request; roles not
	// named get quietBound (a fault elsewhere must not take them down).
	bound map[string]time.Duration
	// moves is how many takeovers each role sees; roles not named: none. anyMoves: not
	// judged.
	moves map[string]int
}

const anyMoves = -1

// failoverBound is the promise when a holder fails and a qualified standby exists: the
// lease runs out (TTL, plus etcd's expiry tick) and a takeover completes.
func (r *runner) failoverBound() time.Duration { return r.o.TTL + expiryCheck + takeoverBudget }

// quietBound is the longest a role untouched by the fault may be unavailable.
func (r *runner) quietBound() time.Duration { return r.o.TTL }

// runCycle runs one scenario once, lets the cluster settle, and judges the cycle.
func (r *runner) runCycle(ctx context.Context, sc *Scenario, variant string) *Cycle {
	c := &Cycle{Scenario: sc.Name, Variant: variant, Start: time.Now(), Unavail: map[string][]time.Duration{}}
	r.say("== %s: %s", c.label(), sc.Fault)
	acked0, failed0 := r.writeCounts()
	tokens0 := map[string]int64{}
	if cs, err := r.f.Status(ctx); err == nil {
		for _, role := range cs.Roles {
			tokens0[role.Name] = role.Token
		}
	}
	ex, err := sc.run(ctx, r, c, variant)
	if err != nil {
		c.check("scenario", false, "%v", err)
	}
	r.settle(ctx, c)
	c.End = time.Now()
	r.judge(ctx, c, ex, tokens0)
	acked1, failed1 := r.writeCounts()
	c.Acked, c.Failed = acked1-acked0, failed1-failed0
	for _, ch := range c.Checks {
		if !ch.OK {
			r.say("   FAILED %s: %s", ch.Name, ch.Detail)
		}
	}
	r.say("   %s done in %s: %d writes acknowledged, %d failed", c.label(), lease.CompactDuration(c.End.Sub(c.Start)), c.Acked, c.Failed)
	return c
}

func (r *runner) writeCounts() (acked, failed int) {
	for _, w := range r.writers {
		res := w.Result()
		acked += len(res.Acked)
		failed += res.Failed
	}
	return acked, failed
}

// judge checks the cycle's unavailability windows and takeovers against ex.
func (r *runner) judge(ctx context.Context, c *Cycle, ex expect, tokens0 map[string]int64) {
	var over, moved []string
	for _, role := range r.roles {
		ws := Windows(r.pollers[role].Samples(), c.Start, c.End, gapMin)
		c.Unavail[role] = append([]time.Duration{}, ws...) // [] rather than null in JSON
		bound, ok := ex.bound[role]
		if !ok {
			bound = r.quietBound()
		}
		if m := slices.Max(append([]time.Duration{0}, ws...)); m > bound {
			over = append(over, fmt.Sprintf("%s unavailable for %s (bound %s)", role, lease.CompactDuration(m), lease.CompactDuration(bound)))
		}
	}
	c.check("availability", len(over) == 0, "%s", orText(over, "every role within its bound"))
	evs, err := r.f.Store().Events(ctx, "", 0)
	if err != nil {
		c.check("takeovers", false, "read the history: %v", err)
		return
	}
	for _, role := range r.roles {
		n := 0
		for _, ev := range evs {
			if ev.Role == role && ev.Kind == lease.EventTakeover && ev.Token > tokens0[role] {
				n++
			}
		}
		want := ex.moves[role]
		if want != anyMoves && n != want {
			moved = append(moved, fmt.Sprintf("%s taken over %d times, want %d", role, n, want))
		}
	}
	c.check("takeovers", len(moved) == 0, "%s", orText(moved, "as expected (no ping-pong, no needless failover)"))
}

func orText(problems []string, fine string) string {
	if len(problems) == 0 {
		return fine
	}
	return strings.Join(problems, "; ")
}

// settle waits until the cluster is whole again and checks it: every role held and
// served by its holder, its VIP answered by that holder alone, every node running
// exactly its roles' resources; then no acknowledged write is missing from the logs.
func (r *runner) settle(ctx context.Context, c *Cycle) {
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last string
	lastSaid := time.Now()
	for {
		detail, ok := r.settledOnce(sctx)
		if ok {
			c.check("settled", true, "after %s: %s", lease.CompactDuration(time.Since(start)), detail)
			break
		}
		if sctx.Err() == nil || last == "" { // an attempt cut short by the deadline says nothing
			last = detail
		}
		if time.Since(lastSaid) > 10*time.Second {
			r.say("   still settling: %s", last)
			lastSaid = time.Now()
		}
		select {
		case <-sctx.Done():
			c.check("settled", false, "not within %s: %s", settleTimeout, last)
			return
		case <-tick.C:
		}
	}
	var lost []string
	for _, role := range r.roles {
		acked := r.writers[role].Result().Acked
		wl, err := r.f.ReadWrites(ctx, role)
		if err != nil {
			lost = append(lost, fmt.Sprintf("%s: %v", role, err))
			continue
		}
		if l := lab.Lost(acked, wl.Seqs); len(l) > 0 {
			lost = append(lost, fmt.Sprintf("%s: %d of %d acknowledged writes missing (e.g. %d)", role, len(l), len(acked), l[0]))
		}
	}
	c.check("no-lost-writes", len(lost) == 0, "%s", orText(lost, "every acknowledged write is in its role's log"))
}

// settledOnce checks the cluster once; the text says what is (not yet) right.
func (r *runner) settledOnce(ctx context.Context) (string, bool) {
	cs, err := r.f.Status(ctx)
	if err != nil {
		return err.Error(), false
	}
	var holders []string
	for _, role := range r.roles {
		rs, _ := lab.FindRole(cs, role)
		if rs.Holder == "" || !lab.Holds(cs, rs.Holder, role) {
			return fmt.Sprintf("%s not held (holder %q)", role, rs.Holder), false
		}
		holders = append(holders, fmt.Sprintf("%s=%s", role, rs.Holder))
	}
	for _, n := range r.nodes {
		if st := lab.StateOf(cs, n); st != takeover.StateActive && !lab.IsStandby(cs, n) {
			return fmt.Sprintf("node %s is %q, not active or a qualified standby", n, st), false
		}
	}
	for _, role := range r.roles {
		rs, _ := lab.FindRole(cs, role)
		rep, err := r.f.Probe(ctx, role)
		// A role kept running through an etcd outage (keep-running) and carried over
		// to a new session has a new claim token; its service keeps the one it was
		// started with.
		if err != nil || rep.Node != rs.Holder || rep.Token > rs.Token {
			return fmt.Sprintf("%s served by %v (err %v), etcd names %s token %d", role, rep, err, rs.Holder, rs.Token), false
		}
	}
	if detail, ok := r.arpOK(ctx, cs); !ok {
		return detail, false
	}
	for _, n := range r.nodes {
		ns, _ := lab.FindNode(cs, n)
		st, err := readNodeState(ctx, r.f, n, r.roleOf)
		if err != nil {
			return err.Error(), false
		}
		if !st.matches(ns.Roles) {
			return fmt.Sprintf("node %s holds %v but runs %s", n, ns.Roles, st), false
		}
	}
	return strings.Join(holders, " ") + "; each VIP answered by its holder alone; nodes run exactly their roles", true
}

// arpOK asks, from the client namespace, who has each role's VIP: exactly the holder.
func (r *runner) arpOK(ctx context.Context, cs takeover.ClusterStatus) (string, bool) {
	type answer struct {
		role, holder string
		macs         []string
		err          error
	}
	answers := make([]answer, len(r.roles))
	var wg sync.WaitGroup
	for i, role := range r.roles {
		rs, _ := lab.FindRole(cs, role)
		answers[i] = answer{role: role, holder: rs.Holder}
		vip, _ := r.f.Role(role)
		wg.Go(func() { answers[i].macs, answers[i].err = arpAnswers(ctx, r.f.Net().Client().NS, vip.VIP) })
	}
	wg.Wait()
	for _, a := range answers {
		if a.err != nil {
			return a.err.Error(), false
		}
		h, err := r.f.Net().Node(a.holder)
		if err != nil {
			return err.Error(), false
		}
		if len(a.macs) != 1 || a.macs[0] != h.MAC.String() {
			return fmt.Sprintf("%s's VIP answered by %v, want only %s's %s", a.role, a.macs, a.holder, h.MAC), false
		}
	}
	return "", true
}
