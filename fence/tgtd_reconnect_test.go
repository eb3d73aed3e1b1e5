package fence

import (
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

// waitDisconnected polls until every session of n noticed the drop.
func waitDisconnected(t *testing.T, n *node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range n.sessions {
		for s.Nexus().Connected {
			if time.Now().After(deadline) {
				t.Fatal("session did not notice the dropped connection")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestTgtdReconnectFencedStaysFenced: a fenced node whose sessions drop and
// reconnect is NOT registered again by this package or the initiator:
// nothing but Unfence registers.
func TestTgtdReconnectFencedStaysFenced(t *testing.T) {
	tg := tgtdtest.Start(t, tgtdtest.WithPortals(2))
	ctx := tgtdCtx(t)
	a, b := newNode(t, tg, 1, 2, 1), newNode(t, tg, 2, 2, 1)
	mustNil(t, "A unfence", a.dev.Unfence(ctx, a.key))
	mustNil(t, "B unfence", b.dev.Unfence(ctx, b.key))
	mustNil(t, "B fences A", b.dev.Fence(ctx, b.key, a.key))

	_, err := tg.DropConnections()
	mustNil(t, "drop connections", err)
	waitDisconnected(t, a)
	// Library operations on A reconnect its sessions (next Execute).
	keys := keysOf(t, ctx, a.dev)
	if countKey(keys, a.key) != 0 {
		t.Fatalf("keys after A reconnected: %v: A is registered again", keys)
	}
	for i, s := range a.sessions {
		_, err := rawUntilNoUA(t, s, writeBlock(0)) // reconnects this path
		t.Logf("A path %d reconnected: nexus %+v; write: %v", i, s.Nexus(), err)
		wantIs(t, "fenced A's write after reconnect", err, scsi.ErrReservationConflict)
	}
	wd := &Watchdog{Device: a.dev, Key: a.key}
	wantIs(t, "A's watchdog check", wd.check(ctx, time.Second), ErrKeyGone)
}

// TestTgtdReconnectLosesRegistration measures tgtd with a node that was
// NOT fenced: its registrations belong to the old sessions (I_T nexuses).
// After a reconnect tgtd still lists the key (stale registrations of the
// dead nexuses) but the new nexuses are not registered, so under type 5
// the node's writes conflict. This package does not paper over it: the
// watchdog's write probe reports the conflict (READ KEYS alone would not
// notice), and only an explicit Unfence restores write access.
func TestTgtdReconnectLosesRegistration(t *testing.T) {
	tg := tgtdtest.Start(t, tgtdtest.WithPortals(2))
	ctx := tgtdCtx(t)
	a, b := newNode(t, tg, 1, 2, 1), newNode(t, tg, 2, 1, 1)
	mustNil(t, "A unfence", a.dev.Unfence(ctx, a.key))
	mustNil(t, "B unfence", b.dev.Unfence(ctx, b.key))
	before := a.sessions[0].Nexus()

	_, err := tg.DropConnections()
	mustNil(t, "drop connections", err)
	waitDisconnected(t, a)
	keys := keysOf(t, ctx, a.dev) // reconnects A's paths
	t.Logf("after reconnect: nexus %+v -> %+v; keys %v (A listed %d times)", before, a.sessions[0].Nexus(), keys, countKey(keys, a.key))
	res, _ := b.dev.Reservation(ctx)
	t.Logf("after reconnect: reservation %v held by %v", res.Type, res.Key)

	var werrs []error
	for _, s := range a.sessions {
		_, err := rawUntilNoUA(t, s, writeBlock(0))
		werrs = append(werrs, err)
	}
	t.Logf("after reconnect: A's writes per path: %v", werrs)

	wd := &Watchdog{Device: a.dev, Key: a.key}
	werr := wd.check(ctx, time.Second)
	t.Logf("after reconnect: watchdog check: %v", werr)
	onlyKeys := &Watchdog{Device: a.dev, Key: a.key, NoWriteProbe: true}
	kerr := onlyKeys.check(ctx, time.Second)
	t.Logf("after reconnect: READ KEYS-only check: %v", kerr)

	for i, err := range werrs {
		if err == nil {
			t.Logf("path %d kept its registration across the reconnect (not tgtd 1.0.85's behaviour)", i)
			continue
		}
		wantIs(t, "A's write after reconnect", err, scsi.ErrReservationConflict)
		wantIs(t, "watchdog with write probe", werr, scsi.ErrReservationConflict)
	}

	mustNil(t, "A unfences again", a.dev.Unfence(ctx, a.key))
	for i, s := range a.sessions {
		if _, err := rawUntilNoUA(t, s, writeBlock(0)); err != nil {
			t.Fatalf("A's write on path %d after Unfence: %v", i, err)
		}
	}
	keys = keysOf(t, ctx, b.dev)
	t.Logf("after Unfence: keys %v", keys)

	// B's session was dropped too: B is no longer registered on its new
	// nexus, so it cannot fence (PREEMPT needs a registered nexus) until
	// it unfences again.
	err = b.dev.Fence(ctx, b.key, a.key)
	t.Logf("B's fence before B unfenced again: %v", err)
	wantIs(t, "B's fence from an unregistered nexus", err, ErrFenceUnverified)
	wantIs(t, "B's fence from an unregistered nexus", err, scsi.ErrReservationConflict)
	mustNil(t, "B unfences again", b.dev.Unfence(ctx, b.key))
	// Fencing A removes the stale registrations too.
	mustNil(t, "B fences A", b.dev.Fence(ctx, b.key, a.key))
	if keys := keysOf(t, ctx, b.dev); countKey(keys, a.key) != 0 {
		t.Fatalf("stale registrations of A survived the fence: %v", keys)
	}
}
