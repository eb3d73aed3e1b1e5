package lease

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestTryClaimExactlyOneWinner(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	s, cli, _ := newTestStore(t)
	const racers = 20
	sessions := make([]*Session, racers)
	for i := range sessions {
		sessions[i] = newTestSession(t, cli, 5*time.Second)
	}
	type result struct {
		c   Claim
		ok  bool
		err error
	}
	results := make([]result, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			<-start
			c, _, ok, err := s.TryClaim(ctx, sessions[i], "db", fmt.Sprintf("node%d", i))
			results[i] = result{c, ok, err}
		})
	}
	close(start)
	wg.Wait()

	var winner *Claim
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("racer %d: %v", i, r.err)
		}
		if r.ok {
			if winner != nil {
				t.Fatalf("two winners: %+v and %+v", *winner, r.c)
			}
			winner = &results[i].c
		}
	}
	if winner == nil {
		t.Fatalf("no winner")
	}
	kv := mustGet(ctx, t, cli, s.claimKey("db")).Kvs[0]
	if kv.CreateRevision != winner.Token || string(kv.Value) != winner.Node || kv.Lease != int64(winner.Lease) {
		t.Fatalf("stored claim %s rev %d lease %x, winner %+v", kv.Value, kv.CreateRevision, kv.Lease, *winner)
	}
	for i, r := range results {
		if !r.ok && r.c != *winner {
			t.Fatalf("loser %d saw holder %+v, want %+v", i, r.c, *winner)
		}
	}
}

func TestTryClaimSameSessionIsIdempotent(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, 5*time.Second)
	first, _, ok1, err1 := s.TryClaim(ctx, sess, "web", "a")
	again, _, ok2, err2 := s.TryClaim(ctx, sess, "web", "a")
	if err1 != nil || err2 != nil || !ok1 || !ok2 || first != again {
		t.Fatalf("claims %+v %t %v, then %+v %t %v", first, ok1, err1, again, ok2, err2)
	}
	other := newTestSession(t, cli, 5*time.Second)
	if _, _, ok, err := s.TryClaim(ctx, other, "web", "a"); err != nil || ok {
		t.Fatalf("another session of the same node name won a held claim: %t, %v", ok, err)
	}
}

func TestClaimTokensGrowAndLastHolderIsHandedOn(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	a, b := newTestSession(t, cli, 5*time.Second), newTestSession(t, cli, 5*time.Second)

	ca, prev, ok, err := s.TryClaim(ctx, a, "web", "a")
	if err != nil || !ok || prev.Node != "" {
		t.Fatalf("first claim: %t, %v, prev %+v", ok, err, prev)
	}
	if err := s.MarkHolder(ctx, ca, 1); err != nil {
		t.Fatalf("MarkHolder: %v", err)
	}
	if err := s.Release(ctx, ca, &LastHolder{Node: "a", NodeID: 1, Token: ca.Token, Clean: true, Reason: "drain"}, ""); err != nil {
		t.Fatalf("Release: %v", err)
	}
	cb, prev, ok, err := s.TryClaim(ctx, b, "web", "b")
	if err != nil || !ok {
		t.Fatalf("second claim: %t, %v", ok, err)
	}
	if cb.Token <= ca.Token {
		t.Fatalf("token did not grow: %d then %d", ca.Token, cb.Token)
	}
	if prev.Node != "a" || prev.NodeID != 1 || prev.Token != ca.Token || !prev.Clean || prev.Reason != "drain" {
		t.Fatalf("previous holder %+v, want a's clean release", prev)
	}
}

func TestStaleClaimCannotWrite(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	a, b := newTestSession(t, cli, 5*time.Second), newTestSession(t, cli, 5*time.Second)
	stale, _, _, err := s.TryClaim(ctx, a, "web", "a")
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if err := a.Close(ctx); err != nil { // a's lease is gone: b may claim
		t.Fatalf("Close: %v", err)
	}
	cur, _, ok, err := s.TryClaim(ctx, b, "web", "b")
	if err != nil || !ok {
		t.Fatalf("b claim: %t, %v", ok, err)
	}
	if err := s.MarkHolder(ctx, cur, 2); err != nil {
		t.Fatalf("MarkHolder b: %v", err)
	}
	tests := []struct {
		name string
		c    Claim
	}{
		{name: "expired claim", c: stale},
		{name: "zero token", c: Claim{Role: "web", Node: "b"}},
		{name: "wrong token", c: Claim{Role: "web", Node: "b", Token: cur.Token + 1}},
		{name: "unclaimed role", c: Claim{Role: "db", Node: "b", Token: cur.Token}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.MarkHolder(ctx, tc.c, 9); !errors.Is(err, ErrNotHolder) {
				t.Fatalf("MarkHolder = %v, want ErrNotHolder", err)
			}
			err := s.Release(ctx, tc.c, &LastHolder{Node: tc.c.Node, Clean: true}, "x")
			if !errors.Is(err, ErrNotHolder) {
				t.Fatalf("Release = %v, want ErrNotHolder", err)
			}
		})
	}
	v, err := s.View(ctx)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	if v.Claims["web"] != cur || v.Last["web"].Node != "b" || v.Last["web"].Clean || len(v.Targets) != 0 {
		t.Fatalf("stale writes changed state: claim %+v last %+v targets %v", v.Claims["web"], v.Last["web"], v.Targets)
	}
}

func TestReleaseWritesLastAndTargetAtomically(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	a, b := newTestSession(t, cli, 5*time.Second), newTestSession(t, cli, 5*time.Second)
	ca, _, _, err := s.TryClaim(ctx, a, "web", "a")
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	if err := s.MarkHolder(ctx, ca, 1); err != nil {
		t.Fatalf("MarkHolder: %v", err)
	}
	err = s.Release(ctx, ca, &LastHolder{Node: "a", NodeID: 1, Token: ca.Token, Clean: true, Reason: "move"}, "b")
	if err != nil {
		t.Fatalf("Release: %v", err)
	}
	claim := mustGet(ctx, t, cli, s.claimKey("web"))
	last := mustGet(ctx, t, cli, s.lastKey("web")).Kvs[0]
	target := mustGet(ctx, t, cli, s.targetKey("web")).Kvs[0]
	if len(claim.Kvs) != 0 {
		t.Fatalf("claim still present after Release")
	}
	if last.ModRevision != target.ModRevision {
		t.Fatalf("last (rev %d) and target (rev %d) written by different transactions", last.ModRevision, target.ModRevision)
	}
	if string(target.Value) != "b" {
		t.Fatalf("target %q, want b", target.Value)
	}

	// The target arriving: MarkHolder deletes a target naming itself...
	cb, prev, ok, err := s.TryClaim(ctx, b, "web", "b")
	if err != nil || !ok || !prev.Clean {
		t.Fatalf("b claim: %t, %v, prev %+v", ok, err, prev)
	}
	if err := s.MarkHolder(ctx, cb, 2); err != nil {
		t.Fatalf("MarkHolder b: %v", err)
	}
	if n := len(mustGet(ctx, t, cli, s.targetKey("web")).Kvs); n != 0 {
		t.Fatalf("target naming the new holder not deleted")
	}
	// ...but not one naming another node.
	if err := s.Release(ctx, cb, nil, "c"); err != nil {
		t.Fatalf("Release b: %v", err)
	}
	cb2, _, _, err := s.TryClaim(ctx, b, "web", "b")
	if err != nil {
		t.Fatalf("claim again: %v", err)
	}
	if err := s.MarkHolder(ctx, cb2, 2); err != nil {
		t.Fatalf("MarkHolder b again: %v", err)
	}
	if kvs := mustGet(ctx, t, cli, s.targetKey("web")).Kvs; len(kvs) != 1 || string(kvs[0].Value) != "c" {
		t.Fatalf("target naming another node was touched: %v", kvs)
	}
	lh, err := decodeLast("web", mustGet(ctx, t, cli, s.lastKey("web")).Kvs)
	if err != nil || lh.Node != "b" || lh.NodeID != 2 || lh.Token != cb2.Token || lh.Clean {
		t.Fatalf("last after MarkHolder %+v, %v", lh, err)
	}
}

func TestClaimRejectsBadNames(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, 5*time.Second)
	tests := []struct{ name, role, node string }{
		{name: "role with slash", role: "web/claim", node: "a"},
		{name: "upper-case role", role: "Web", node: "a"},
		{name: "empty role", role: "", node: "a"},
		{name: "node with slash", role: "web", node: "a/b"},
		{name: "empty node", role: "web", node: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := s.TryClaim(ctx, sess, tc.role, tc.node); !errors.Is(err, ErrInvalidName) {
				t.Fatalf("TryClaim(%q, %q) = %v, want ErrInvalidName", tc.role, tc.node, err)
			}
		})
	}
}

// Rebind carries a claim to a new session keeping its token; the old lease can then go
// without taking the claim along. A stale claim cannot be rebound.
func TestRebindKeepsTokenAcrossSessions(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	old := newTestSession(t, cli, 5*time.Second)
	c, _, ok, err := s.TryClaim(ctx, old, "db", "a")
	if err != nil || !ok {
		t.Fatalf("claim: ok=%v err=%v", ok, err)
	}
	next := newTestSession(t, cli, 5*time.Second)
	nc, err := s.Rebind(ctx, next, c)
	if err != nil {
		t.Fatal(err)
	}
	if nc.Token != c.Token || nc.Lease != next.ID() {
		t.Fatalf("rebound claim = %+v, want token %d on lease %x", nc, c.Token, next.ID())
	}
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := s.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Claims["db"]; got.Token != c.Token || got.Node != "a" {
		t.Fatalf("after the old lease was revoked the claim is %+v, want a's token %d", got, c.Token)
	}
	stale := c
	stale.Token--
	if _, err := s.Rebind(ctx, next, stale); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("rebind of a stale claim: %v, want ErrNotHolder", err)
	}
}

// Adopt confirms a claim still exactly as a view showed it and writes nothing; in every
// other case it reports ErrNotHolder and, above all, creates no claim (TryClaim would).
func TestAdoptOnlyConfirmsAnExistingClaim(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	sess := newTestSession(t, cli, 5*time.Second)
	other := newTestSession(t, cli, 5*time.Second)
	c, _, ok, err := s.TryClaim(ctx, sess, "db", "a")
	if err != nil || !ok {
		t.Fatalf("claim: ok=%v err=%v", ok, err)
	}
	if err := s.MarkHolder(ctx, c, 7); err != nil {
		t.Fatal(err)
	}
	prev, err := s.Adopt(ctx, sess, c)
	if err != nil {
		t.Fatalf("adopt of the live claim: %v", err)
	}
	if prev.Node != "a" || prev.Token != c.Token {
		t.Fatalf("adopt returned last holder %+v, want a with token %d", prev, c.Token)
	}
	renamed := c
	renamed.Node = "b"
	stale := c
	stale.Token--
	for name, tc := range map[string]struct {
		sess *Session
		c    Claim
	}{
		"other lease": {other, c},
		"other node":  {sess, renamed},
		"other token": {sess, stale},
	} {
		if _, err := s.Adopt(ctx, tc.sess, tc.c); !errors.Is(err, ErrNotHolder) {
			t.Errorf("%s: adopt = %v, want ErrNotHolder", name, err)
		}
	}
	if err := s.Release(ctx, c, &LastHolder{Node: "a", Token: c.Token, Clean: true}, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Adopt(ctx, sess, c); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("adopt after the release: %v, want ErrNotHolder", err)
	}
	v, err := s.View(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, held := v.Claims["db"]; held {
		t.Fatalf("adopting a released claim left a claim: %+v", got)
	}
	if v.Targets["db"] != "b" {
		t.Fatalf("target = %q, want b (untouched by the failed adopt)", v.Targets["db"])
	}
}
