package lab_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lab"
	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// TestFig7 is the seed's FIG. 7: e is added (down, then qualified, then standby) without
// disturbing the holders; with two standbys, b crashes and exactly one standby takes
// role-b; `role move` puts the other standby to work; a node is drained, then removed,
// and its id is never reused.
func TestFig7(t *testing.T) {
	f, ctx := newFarm(t)
	mustStartOfDay(t, ctx, f)
	tokens := roleTokens(t, ctx, f)

	// Add node E: known (with an id) but down until its agent runs.
	if _, err := f.NodeAdd(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	cs := waitFor(t, ctx, f, "e known", func(cs takeover.ClusterStatus) bool {
		_, ok := lab.FindNode(cs, "e")
		return ok
	})
	if e, _ := lab.FindNode(cs, "e"); e.State != takeover.StateDown || e.ID == 0 {
		t.Fatalf("after node add, e = %+v; want down with an id", e)
	}
	ids := nodeIDs(cs)
	journey := watchNode(t, ctx, f, "e")
	mustStart(t, ctx, f, "e")
	cs = waitFor(t, ctx, f, "e qualified standby", func(cs takeover.ClusterStatus) bool { return lab.IsStandby(cs, "e") })
	checkJourney(t, waitJourney(ctx, journey, "record:"+takeover.StateStandby))
	q := waitEvent(t, ctx, f, "", func(ev lease.Event) bool { return ev.Node == "e" && ev.Kind == takeover.EventQualify })
	if q.Detail != "passed" {
		t.Errorf("qualification event of e: %+v, want passed", q)
	}
	if got := roleTokens(t, ctx, f); !mapsEqual(got, tokens) {
		t.Errorf("adding e disturbed the holders: tokens %v, before %v", got, tokens)
	}
	if got := lab.NodesIn(cs, takeover.StateStandby); !slices.Equal(got, []string{"d", "e"}) {
		t.Fatalf("standbys %v, want [d e]", got)
	}

	// B fails: exactly one of the two standbys takes role-b.
	before := mustProbe(t, ctx, f, "role-b")
	mustKill(t, f, "b")
	rep := waitServed(t, ctx, f, "role-b", func(r lab.Reply) bool {
		return (r.Node == "d" || r.Node == "e") && r.Token > before.Token
	})
	winner, other := rep.Node, map[string]string{"d": "e", "e": "d"}[rep.Node]
	waitFor(t, ctx, f, winner+" holding role-b, "+other+" standby", func(cs takeover.ClusterStatus) bool {
		return lab.Holds(cs, winner, "role-b") && lab.IsStandby(cs, other)
	})
	if n := countTakeovers(t, ctx, f, "role-b", before.Token); n != 1 {
		t.Errorf("%d takeovers of role-b after b crashed, want exactly 1", n)
	}

	// Put the other standby to work: move role-c to it.
	c0 := mustProbe(t, ctx, f, "role-c")
	if _, err := f.RoleMove(ctx, "role-c", other); err != nil {
		t.Fatal(err)
	}
	moved := waitServed(t, ctx, f, "role-c", func(r lab.Reply) bool { return r.Node == other && r.Token > c0.Token })
	waitFor(t, ctx, f, other+" holding role-c, c standby", func(cs takeover.ClusterStatus) bool {
		return lab.Holds(cs, other, "role-c") && lab.IsStandby(cs, "c")
	})
	if ev := waitEvent(t, ctx, f, "role-c", func(ev lease.Event) bool {
		return ev.Kind == takeover.EventTakeover && ev.Token == moved.Token
	}); ev.From != "c" {
		t.Errorf("move takeover event %+v, want from c", ev)
	}

	drainAndRemove(t, ctx, f, "a", "role-a", "c")

	// The removed node's id is never reused.
	if _, err := f.NodeAdd(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	cs = waitFor(t, ctx, f, "f known", func(cs takeover.ClusterStatus) bool {
		_, ok := lab.FindNode(cs, "f")
		return ok
	})
	nf, _ := lab.FindNode(cs, "f")
	for name, id := range ids {
		if nf.ID <= id {
			t.Errorf("new node f got id %d, not above %s's id %d", nf.ID, name, id)
		}
	}
}

// drainAndRemove drains node (role goes to successor, the only free standby), then
// removes it: it leaves the status and its agent exits.
func drainAndRemove(t *testing.T, ctx context.Context, f *lab.Farm, node, role, successor string) {
	t.Helper()
	before := mustProbe(t, ctx, f, role)
	if _, err := f.NodeDrain(ctx, node); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, f, node+" drained, "+role+" on "+successor, func(cs takeover.ClusterStatus) bool {
		n, ok := lab.FindNode(cs, node)
		return ok && n.Cordoned && len(n.Roles) == 0 && lab.Holds(cs, successor, role)
	})
	after := waitServed(t, ctx, f, role, func(r lab.Reply) bool { return r.Node == successor && r.Token > before.Token })
	ev := waitEvent(t, ctx, f, role, func(ev lease.Event) bool {
		return ev.Kind == takeover.EventTakeover && ev.Token == after.Token
	})
	if ev.From != node {
		t.Errorf("takeover after drain: %+v, want from %s", ev, node)
	}
	if _, err := f.NodeRemove(ctx, node); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, f, node+" removed", func(cs takeover.ClusterStatus) bool {
		_, ok := lab.FindNode(cs, node)
		return !ok && cs.Held()
	})
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := f.WaitExit(wctx, node); err != nil {
		t.Fatal(err)
	}
}

func roleTokens(t *testing.T, ctx context.Context, f *lab.Farm) map[string]int64 {
	t.Helper()
	cs, err := f.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, r := range cs.Roles {
		out[r.Name] = r.Token
	}
	return out
}

func nodeIDs(cs takeover.ClusterStatus) map[string]uint32 {
	out := map[string]uint32{}
	for _, n := range cs.Nodes {
		out[n.Name] = n.ID
	}
	return out
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func countTakeovers(t *testing.T, ctx context.Context, f *lab.Farm, role string, after int64) int {
	t.Helper()
	evs, err := f.Store().Events(ctx, role, 200)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Kind == takeover.EventTakeover && ev.Token > after {
			n++
		}
	}
	return n
}

// watchNode records, in etcd order, every state node publishes and every qualification
// stored for it ("record:<state>", "qualified:<passed>"), until the test ends. The
// returned func snapshots the journey so far.
func watchNode(t *testing.T, ctx context.Context, f *lab.Farm, node string) func() []string {
	t.Helper()
	st := f.Store()
	v, err := st.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var journey []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for wr := range st.Watch(wctx, v.Rev+1) {
			for _, ev := range wr.Events {
				if step := journeyStep(st.Prefix(), node, string(ev.Kv.Key), ev.Kv.Value, ev.IsCreate() || ev.IsModify()); step != "" {
					mu.Lock()
					journey = append(journey, step)
					mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(journey)
	}
}

func journeyStep(prefix, node, key string, val []byte, put bool) string {
	if !put {
		return ""
	}
	switch key {
	case prefix + "nodes/" + node:
		var rec lease.NodeRecord
		if json.Unmarshal(val, &rec) == nil {
			return "record:" + rec.State
		}
	case prefix + "qualified/" + node:
		var q lease.Qualification
		if json.Unmarshal(val, &q) == nil {
			if q.Passed {
				return "qualified:passed"
			}
			return "qualified:failed"
		}
	}
	return ""
}

// checkJourney: a new node never advertises itself as a standby (or takes a role)
// before its qualification passed; before that it may only be on probation.
// waitJourney returns the journey once it contains step (or after 5 s): the status poll
// that saw the step may run ahead of the watch that records the journey.
func waitJourney(ctx context.Context, journey func() []string, step string) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		j := journey()
		if slices.Contains(j, step) || ctx.Err() != nil {
			return j
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func checkJourney(t *testing.T, journey []string) {
	t.Helper()
	t.Logf("e's journey: %v", journey)
	qualified := slices.Index(journey, "qualified:passed")
	if qualified < 0 {
		t.Fatalf("e never stored a passed qualification: %v", journey)
	}
	for i, s := range journey[:qualified] {
		if s != "record:"+takeover.StateProbation && s != "qualified:failed" {
			t.Errorf("e published %q (step %d) before it qualified: %v", s, i, journey)
		}
	}
	if !slices.Contains(journey[qualified:], "record:"+takeover.StateStandby) {
		t.Errorf("e never published standby after qualifying: %v", journey)
	}
}
