package takeover

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/understudy-ha/understudy/lease"
)

// A role this node stopped on purpose (a move) whose release etcd did not confirm is
// given back on the next reconcile, with its target and a clean last-holder record,
// and is never re-adopted as a stranded claim of this session. Driven directly on a
// loop (no running agent) so the failed release needs no fault injection.
func TestFailedReleaseIsRetriedNotReadopted(t *testing.T) {
	f := newFarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, c := claimedByLoop(ctx, t, f)
	a := l.a
	// What stopRole leaves when its release fails during `role move r1 --to b`.
	last := &lease.LastHolder{Node: "a", Token: c.Token, Clean: true, Reason: "move to b"}
	a.releasing["r1"] = pendingRelease{claim: c, last: last, target: "b"}

	v, err := f.store.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	l.adoptStranded(ctx, v)
	if a.held["r1"] != nil {
		t.Fatal("a re-adopted r1, which it had stopped to move it")
	}
	l.retryReleases(ctx, v)
	if v, err = f.store.View(ctx); err != nil {
		t.Fatal(err)
	}
	if got, ok := v.Claims["r1"]; ok {
		t.Fatalf("r1 still claimed after the retry: %+v", got)
	}
	if v.Targets["r1"] != "b" || !v.Last["r1"].Clean || v.Last["r1"].Token != c.Token {
		t.Fatalf("after the retry: target %q, last %+v; want target b and a clean record of token %d", v.Targets["r1"], v.Last["r1"], c.Token)
	}
	if len(a.releasing) != 0 {
		t.Fatalf("release still pending: %v", a.releasing)
	}
}

// The view a reconcile starts from predates the releases its own commands make: after
// `role move` released r1 to b, that view still shows r1 claimed by this session with
// nothing running here, which is what a stranded claim looks like. Adopting it must not
// claim the role afresh (the bug: TryClaim did, and the move never happened).
func TestReleasedRoleIsNotReadoptedFromAStaleView(t *testing.T) {
	f := newFarm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, c := claimedByLoop(ctx, t, f)
	a := l.a
	stale, err := f.store.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Release(ctx, c, &lease.LastHolder{Node: "a", Token: c.Token, Clean: true, Reason: "move to b"}, "b"); err != nil {
		t.Fatal(err)
	}
	l.adoptStranded(ctx, stale)
	if a.held["r1"] != nil {
		t.Fatal("a took r1 back after releasing it to b")
	}
	v, err := f.store.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := v.Claims["r1"]; ok {
		t.Fatalf("r1 claimed again after its release: %+v", got)
	}
	if v.Targets["r1"] != "b" {
		t.Fatalf("target = %q, want b", v.Targets["r1"])
	}
}

// claimedByLoop applies a one-role spec (r1) and returns a loop of agent a, not running,
// whose session holds the claim of r1, as if a had claimed it but runs nothing.
func claimedByLoop(ctx context.Context, t *testing.T, f *farm) (*loop, lease.Claim) {
	t.Helper()
	f.apply(spec(roleSpec("r1")))
	a, err := NewAgent(f.config("a"), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := lease.NewSession(ctx, f.store.Client(), testTTL, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close(context.Background()) })
	c, _, won, err := f.store.TryClaim(ctx, sess, "r1", "a")
	if err != nil || !won {
		t.Fatalf("claim r1: won=%v err=%v", won, err)
	}
	return &loop{a: a, st: f.store, sess: sess, started: time.Now()}, c
}
