package lab

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// fig5 is the seed's FIG. 5: start of day, A fails, D takes over, A recovers as the
// standby, no automatic failback.
func (d *demo) fig5(ctx context.Context) error {
	d.n.section("FIG. 5: failure and recovery")
	if err := d.startOfDay(ctx); err != nil {
		return err
	}
	if err := d.startWriter(ctx); err != nil {
		return err
	}
	d.n.status(ctx, d.f)
	if err := d.crash(ctx, "a", "role-a", []string{"d"}); err != nil {
		return err
	}
	d.n.status(ctx, d.f)
	if evs, err := d.f.History(ctx, "role-a", 10); err == nil {
		d.n.note("understudy history role-a:")
		d.n.timeline(evs)
	}
	if err := d.recover(ctx, "a", "role-a", "d"); err != nil {
		return err
	}
	d.n.status(ctx, d.f)
	return nil
}

// startOfDay: spec, then a, b and c with their preferred roles, then d as the standby.
// d starts last so it cannot take a role whose preferred node is not up yet.
func (d *demo) startOfDay(ctx context.Context) error {
	d.n.begin("Start of day: apply the cluster spec (understudy apply -f)")
	roles, err := d.f.DemoRoles(ctx)
	if err != nil {
		return err
	}
	if err := d.f.ApplyRoles(ctx, 1); err != nil {
		return err
	}
	for _, r := range roles {
		if r.VIP != "" {
			d.n.note("%s: preferred node %s; LUN %s fenced with SCSI-3 PR, ext4 on %s, demo-service on VIP %s",
				r.Name, r.Preferred[0], r.Storage, r.Mount, r.Addr())
			continue
		}
		d.n.note("%s: preferred node %s, exec = understudy demo-service --listen %s", r.Name, r.Preferred[0], r.Addr())
	}
	d.n.done("spec applied: 3 roles, at most 1 role per node")

	d.n.begin("Start the agents of nodes a, b and c")
	for _, name := range []string{"a", "b", "c"} {
		if err := d.f.StartNode(ctx, name); err != nil {
			return err
		}
	}
	if _, err := d.wait(ctx, "a, b and c active with role-a, role-b and role-c", func(cs takeover.ClusterStatus) bool {
		return Holds(cs, "a", "role-a") && Holds(cs, "b", "role-b") && Holds(cs, "c", "role-c")
	}); err != nil {
		return err
	}
	for _, r := range roles {
		want := r.Preferred[0]
		if _, _, err := d.served(ctx, r.Name, pollInterval, func(rep Reply) bool { return rep.Node == want }); err != nil {
			return err
		}
	}
	d.n.done("A-Active B-Active C-Active: each service answers from its node")

	d.n.begin("Start the agent of node d")
	if err := d.f.StartNode(ctx, "d"); err != nil {
		return err
	}
	if _, err := d.wait(ctx, "d standby", func(cs takeover.ClusterStatus) bool { return IsStandby(cs, "d") }); err != nil {
		return err
	}
	d.n.done("D-Standby")
	return nil
}

// StartOfDay brings the farm to the seed's start of day: the demo roles applied, a, b
// and c active with role-a, role-b and role-c, d the standby. d starts last, so it
// cannot take a role whose preferred node is not up yet. Bounded by ctx.
func (f *Farm) StartOfDay(ctx context.Context) error {
	roles, err := f.DemoRoles(ctx)
	if err != nil {
		return err
	}
	if err := f.ApplyRoles(ctx, 1); err != nil {
		return err
	}
	for _, name := range []string{"a", "b", "c"} {
		if err := f.StartNode(ctx, name); err != nil {
			return err
		}
	}
	if _, err := f.WaitFor(ctx, "a, b, c active", func(cs takeover.ClusterStatus) bool {
		return Holds(cs, "a", "role-a") && Holds(cs, "b", "role-b") && Holds(cs, "c", "role-c")
	}); err != nil {
		return err
	}
	for _, r := range roles {
		want := r.Preferred[0]
		if _, _, err := f.WaitServed(ctx, r.Name, pollInterval, func(rep Reply) bool { return rep.Node == want }); err != nil {
			return err
		}
	}
	if err := f.StartNode(ctx, "d"); err != nil {
		return err
	}
	_, err = f.WaitFor(ctx, "d standby", func(cs takeover.ClusterStatus) bool { return IsStandby(cs, "d") })
	return err
}

// crash SIGKILLs node's agent (its services die with it) and waits until one of
// successors serves role with a larger fencing token. It returns nothing but narrates
// the kill-to-running time.
func (d *demo) crash(ctx context.Context, node, role string, successors []string) error {
	before, err := d.f.Probe(ctx, role)
	if err != nil {
		return err
	}
	if d.f.Net() != nil {
		d.n.begin("Node %s fails: its links go down and its agent gets kill -9 (pid %d); its service dies with it", node, d.f.PID(node))
	} else {
		d.n.begin("Node %s fails: kill -9 its agent (pid %d); its service dies with it", node, d.f.PID(node))
	}
	killed, err := d.f.Crash(ctx, node)
	if err != nil {
		return err
	}
	rep, at, err := d.served(ctx, role, 10*time.Millisecond, func(r Reply) bool {
		return slices.Contains(successors, r.Node) && r.Token > before.Token
	})
	if err != nil {
		return err
	}
	d.n.done("%s answers from %s %s after the kill (token %d -> %d, pid %d -> %d)",
		role, rep.Node, lease.CompactDuration(at.Sub(killed)), before.Token, rep.Token, before.PID, rep.PID)
	ev, err := d.event(ctx, role, func(ev lease.Event) bool {
		return ev.Kind == takeover.EventTakeover && ev.Token == rep.Token
	})
	if err != nil {
		return err
	}
	d.n.note("takeover by %s: %s, %s from detecting the expired claim to running", ev.Node,
		lease.FormatSteps(ev.Steps), lease.CompactDuration(ev.Total))
	_, err = d.wait(ctx, fmt.Sprintf("%s down, %s holding %s", node, rep.Node, role), func(cs takeover.ClusterStatus) bool {
		return StateOf(cs, node) == takeover.StateDown && Holds(cs, rep.Node, role)
	})
	return err
}

// recover restarts node and checks it comes back as a standby while holder keeps role,
// for two TTLs (no automatic failback).
func (d *demo) recover(ctx context.Context, node, role, holder string) error {
	d.n.begin("Node %s recovers: boots again and starts its agent", node)
	if err := d.f.Recover(ctx, node); err != nil {
		return err
	}
	if _, err := d.wait(ctx, node+" standby", func(cs takeover.ClusterStatus) bool {
		return IsStandby(cs, node)
	}); err != nil {
		return err
	}
	d.n.done("%s is back as the standby", node)
	watch := 2 * d.f.TTL()
	d.n.begin("No automatic failback: watch %s for %s", role, watch)
	if err := d.f.Hold(ctx, watch, func(cs takeover.ClusterStatus) error {
		if !Holds(cs, holder, role) || !IsStandby(cs, node) {
			return fmt.Errorf("%s should stay with %s and %s stay standby; now %s holds it, %s is %s",
				role, holder, node, Holder(cs, role), node, StateOf(cs, node))
		}
		return nil
	}); err != nil {
		return err
	}
	d.n.done("%s stays with %s; %s stays standby", role, holder, node)
	return nil
}

// Hold checks cond on the cluster status every 50 ms for duration d and returns the first
// violation (cond's error). It is how the lab asserts that something does NOT happen.
func (f *Farm) Hold(ctx context.Context, d time.Duration, cond func(takeover.ClusterStatus) error) error {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		cs, err := f.status(ctx, false)
		if err != nil {
			return err
		}
		if err := cond(cs); err != nil {
			return err
		}
		if !time.Now().Before(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: hold for %s: %w", d, ctx.Err())
		case <-tick.C:
		}
	}
}
