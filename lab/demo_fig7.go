package lab

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// fig7 is the seed's FIG. 7, continuing from FIG. 5's end (a standby, d holding role-a):
// E is added, qualified and becomes a second standby; B fails and exactly one standby
// takes role-b; the other is put to work with `role move`; a node is drained and removed.
func (d *demo) fig7(ctx context.Context) error {
	d.n.section("FIG. 7: adding and removing nodes")
	if err := d.addNode(ctx, "e"); err != nil {
		return err
	}
	d.n.status(ctx, d.f)
	cs, err := d.f.Status(ctx)
	if err != nil {
		return err
	}
	standbys := NodesIn(cs, takeover.StateStandby)
	if err := d.crash(ctx, "b", "role-b", standbys); err != nil {
		return err
	}
	if cs, err = d.f.Status(ctx); err != nil {
		return err
	}
	other := ""
	for _, s := range standbys {
		if !Holds(cs, s, "role-b") {
			other = s
		}
	}
	d.n.note("two standbys (%s), one takeover: %s took role-b, %s stays standby",
		strings.Join(standbys, ", "), Holder(cs, "role-b"), other)
	if err := d.recover(ctx, "b", "role-b", Holder(cs, "role-b")); err != nil {
		return err
	}
	d.n.status(ctx, d.f)
	if err := d.move(ctx, "role-c", other); err != nil {
		return err
	}
	d.n.status(ctx, d.f)
	if err := d.drainAndRemove(ctx, "d", "role-a"); err != nil {
		return err
	}
	d.n.status(ctx, d.f)
	return nil
}

// addNode registers name with `node add`, starts its agent and waits until it qualified
// and stands by, then shows its join and qualification events.
func (d *demo) addNode(ctx context.Context, name string) error {
	d.n.begin("Add node %s: understudy node add %s", strings.ToUpper(name), name)
	out, err := d.f.NodeAdd(ctx, name)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		d.n.note("%s", l)
	}
	cs, err := d.wait(ctx, name+" known (down: no agent yet)", func(cs takeover.ClusterStatus) bool {
		_, ok := FindNode(cs, name)
		return ok
	})
	if err != nil {
		return err
	}
	nd, _ := FindNode(cs, name)
	d.n.done("%s registered with node id %d, state %s", name, nd.ID, nd.State)

	d.n.begin("Start %s's agent: it joins on probation and qualifies without disturbing the holders", name)
	if err := d.f.StartNode(ctx, name); err != nil {
		return err
	}
	if _, err := d.wait(ctx, name+" qualified standby", func(cs takeover.ClusterStatus) bool {
		return IsStandby(cs, name)
	}); err != nil {
		return err
	}
	q, err := d.event(ctx, "", func(ev lease.Event) bool { return ev.Node == name && ev.Kind == takeover.EventQualify })
	if err != nil {
		return err
	}
	d.n.done("%s qualification %s in %s; %s-Standby", name, q.Detail, lease.CompactDuration(q.Total), strings.ToUpper(name))
	return nil
}

// move hands role to node with `role move` and times it until the service answers there.
func (d *demo) move(ctx context.Context, role, to string) error {
	cs, err := d.f.Status(ctx)
	if err != nil {
		return err
	}
	from := Holder(cs, role)
	d.n.begin("Put the remaining standby to work: understudy role move %s --to %s", role, to)
	start := time.Now()
	if _, err := d.f.RoleMove(ctx, role, to); err != nil {
		return err
	}
	rep, at, err := d.served(ctx, role, 10*time.Millisecond, func(r Reply) bool { return r.Node == to })
	if err != nil {
		return err
	}
	if _, err := d.wait(ctx, fmt.Sprintf("%s holding %s, %s standby", to, role, from), func(cs takeover.ClusterStatus) bool {
		return Holds(cs, to, role) && IsStandby(cs, from)
	}); err != nil {
		return err
	}
	d.n.done("%s moved %s -> %s: answers from %s %s after the command; %s is a standby now",
		role, from, to, rep, lease.CompactDuration(at.Sub(start)), from)
	return nil
}

// drainAndRemove drains node (its role goes to a standby, released cleanly: no fencing
// needed), then removes it from the cluster; its agent exits.
func (d *demo) drainAndRemove(ctx context.Context, node, role string) error {
	d.n.begin("Drain %s: understudy node drain %s --wait", node, node)
	before, err := d.f.Probe(ctx, role)
	if err != nil {
		return err
	}
	if _, err := d.f.NodeDrain(ctx, node); err != nil {
		return err
	}
	cs, err := d.wait(ctx, fmt.Sprintf("%s drained, %s held elsewhere", node, role), func(cs takeover.ClusterStatus) bool {
		n, ok := FindNode(cs, node)
		h := Holder(cs, role)
		return ok && len(n.Roles) == 0 && n.Cordoned && h != "" && h != node && Holds(cs, h, role)
	})
	if err != nil {
		return err
	}
	to := Holder(cs, role)
	rep, _, err := d.served(ctx, role, 10*time.Millisecond, func(r Reply) bool { return r.Node == to && r.Token > before.Token })
	if err != nil {
		return err
	}
	rel, err := d.event(ctx, role, func(ev lease.Event) bool {
		return ev.Kind == takeover.EventRelease && ev.Node == node && ev.Token == before.Token
	})
	if err != nil {
		return err
	}
	how := "cleanly"
	if stepFailed(rel.Steps) {
		how = "with errors (" + lease.FormatSteps(rel.Steps) + ")"
	}
	d.n.done("%s released %s %s in %s; %s took it over (token %d -> %d); %s is cordoned and idle",
		node, role, how, lease.CompactDuration(rel.Total), to, before.Token, rep.Token, node)

	nd, _ := FindNode(cs, node)
	d.n.begin("Remove %s: understudy node remove %s", node, node)
	if _, err := d.f.NodeRemove(ctx, node); err != nil {
		return err
	}
	if _, err := d.wait(ctx, node+" gone from the cluster", func(cs takeover.ClusterStatus) bool {
		_, ok := FindNode(cs, node)
		return !ok
	}); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, d.opts.StepTimeout)
	defer cancel()
	if err := d.f.WaitExit(sctx, node); err != nil {
		return err
	}
	d.n.done("%s left the cluster and its agent exited; its node id %d will never be reused", node, nd.ID)
	return nil
}

// WaitExit waits until node name's agent process has exited by itself (e.g. after
// `node remove`), bounded by ctx.
func (f *Farm) WaitExit(ctx context.Context, name string) error {
	done, err := f.procs.Exited(name)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: agent of %s exits: %w", ErrWait, name, ctx.Err())
	}
}

// ExitErr is the exit status of node name's last agent process (nil for exit code 0,
// or when it still runs or never ran).
func (f *Farm) ExitErr(name string) error { return f.procs.ExitErr(name) }

func stepFailed(steps []lease.Step) bool {
	for _, s := range steps {
		if s.Err != "" {
			return true
		}
	}
	return false
}
