package lab_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// TestFig5 is the seed's FIG. 5: a, b, c active, d standby; a crashes (kill -9 of its
// agent); d takes role-a and role-a's executable answers from d with a larger token; a
// restarts as the standby and role-a does not fail back.
func TestFig5(t *testing.T) {
	f, ctx := newFarm(t)
	if _, err := f.DemoRoles(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.ApplyRoles(ctx, 1); err != nil {
		t.Fatal(err)
	}
	mustStart(t, ctx, f, "a", "b", "c")
	waitFor(t, ctx, f, "a, b, c active with their preferred roles", func(cs takeover.ClusterStatus) bool {
		return lab.Holds(cs, "a", "role-a") && lab.Holds(cs, "b", "role-b") && lab.Holds(cs, "c", "role-c")
	})
	for _, n := range []string{"a", "b", "c"} {
		waitServed(t, ctx, f, "role-"+n, func(r lab.Reply) bool { return r.Node == n })
	}
	mustStart(t, ctx, f, "d")
	cs := waitFor(t, ctx, f, "d standby", func(cs takeover.ClusterStatus) bool { return lab.IsStandby(cs, "d") })
	if got := lab.NodesIn(cs, takeover.StateActive); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("start of day: active nodes %v, want [a b c]", got)
	}

	before := mustProbe(t, ctx, f, "role-a")
	if before.Node != "a" || before.Token <= 0 {
		t.Fatalf("role-a before the crash answered %+v, want node a with a token", before)
	}
	mustKill(t, f, "a")
	after := waitServed(t, ctx, f, "role-a", func(r lab.Reply) bool { return r.Node == "d" && r.Token > before.Token })
	if after.PID == before.PID {
		t.Errorf("role-a served by the same pid %d before and after the takeover", after.PID)
	}
	// a's executable died with a's agent (PDEATHSIG), it did not just lose its port.
	waitGone(t, ctx, before.PID)
	cs = waitFor(t, ctx, f, "d holding role-a, a down", func(cs takeover.ClusterStatus) bool {
		return lab.Holds(cs, "d", "role-a") && lab.StateOf(cs, "a") == takeover.StateDown
	})
	if r, _ := lab.FindRole(cs, "role-a"); r.Token != after.Token {
		t.Errorf("status token of role-a = %d, the service got %d", r.Token, after.Token)
	}
	ev := waitEvent(t, ctx, f, "role-a", func(ev lease.Event) bool {
		return ev.Kind == takeover.EventTakeover && ev.Token == after.Token
	})
	if ev.Node != "d" || ev.From != "a" || ev.Total <= 0 {
		t.Errorf("takeover event = %+v, want node d from a with a total duration", ev)
	}

	if err := f.Restart(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, f, "a standby, d still holding role-a", func(cs takeover.ClusterStatus) bool {
		return lab.IsStandby(cs, "a") && lab.Holds(cs, "d", "role-a")
	})
	assertNoFailback(t, ctx, f, "role-a", "d", after.Token, "a")
	if rep := mustProbe(t, ctx, f, "role-a"); rep.Node != "d" || rep.Token != after.Token {
		t.Errorf("role-a answered %+v after the recovery of a, want d with token %d", rep, after.Token)
	}
}

// assertNoFailback checks for two TTLs that holder keeps role at token and that
// standby stays a standby.
func assertNoFailback(t *testing.T, ctx context.Context, f *lab.Farm, role, holder string, token int64, standby string) {
	t.Helper()
	err := f.Hold(ctx, 2*f.TTL(), func(cs takeover.ClusterStatus) error {
		r, _ := lab.FindRole(cs, role)
		if r.Holder != holder || r.Token != token || !lab.IsStandby(cs, standby) {
			return fmt.Errorf("failback: %s now held by %q token %d (want %s token %d), %s is %s",
				role, r.Holder, r.Token, holder, token, standby, lab.StateOf(cs, standby))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTwoOrphans: two holders crash at once with two standbys: both roles are taken,
// by different standbys.
func TestTwoOrphans(t *testing.T) {
	f, ctx := newFarm(t)
	mustStartOfDay(t, ctx, f)
	mustStart(t, ctx, f, "e")
	waitFor(t, ctx, f, "d and e standby", func(cs takeover.ClusterStatus) bool {
		return lab.IsStandby(cs, "d") && lab.IsStandby(cs, "e")
	})
	ra, rb := mustProbe(t, ctx, f, "role-a"), mustProbe(t, ctx, f, "role-b")
	mustKill(t, f, "a")
	mustKill(t, f, "b")
	standby := func(n string) bool { return n == "d" || n == "e" }
	na := waitServed(t, ctx, f, "role-a", func(r lab.Reply) bool { return standby(r.Node) && r.Token > ra.Token })
	nb := waitServed(t, ctx, f, "role-b", func(r lab.Reply) bool { return standby(r.Node) && r.Token > rb.Token })
	if na.Node == nb.Node {
		t.Fatalf("both orphaned roles answered from %s", na.Node)
	}
	waitFor(t, ctx, f, "role-a and role-b held by d and e", func(cs takeover.ClusterStatus) bool {
		return lab.Holds(cs, na.Node, "role-a") && lab.Holds(cs, nb.Node, "role-b") && cs.Held()
	})
}

func waitEvent(t *testing.T, ctx context.Context, f *lab.Farm, role string, match func(lease.Event) bool) lease.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	ev, err := f.WaitEvent(ctx, role, match)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}
