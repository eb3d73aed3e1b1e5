package fence

import (
	"testing"

	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

// TestTgtdFenceFlow is the story fencing exists for, on a real target: A
// holds the LU, B fences A, the target rejects A's writes; A rejoins.
func TestTgtdFenceFlow(t *testing.T) {
	tg := tgtdtest.Start(t, tgtdtest.WithPortals(2))
	ctx := tgtdCtx(t)
	a, b := newNode(t, tg, 1, 2, 1), newNode(t, tg, 2, 2, 1)

	idA, err := a.dev.Identity(ctx)
	mustNil(t, "identify A's paths", err)
	idB, err := b.dev.Identity(ctx)
	mustNil(t, "identify B's paths", err)
	if idA != idB {
		t.Fatalf("A sees %s, B sees %s: not the same LU", idA, idB)
	}
	t.Logf("tgtd LU identity: %s", idA)
	caps, err := a.dev.Capabilities(ctx)
	mustNil(t, "report capabilities", err)
	t.Logf("tgtd REPORT CAPABILITIES: %+v", caps)
	if !caps.Supports(scsi.TypeWriteExclusiveRegistrantsOnly) {
		t.Fatalf("tgtd does not report type 5: %+v", caps)
	}

	mustNil(t, "A unfence", a.dev.Unfence(ctx, a.key))
	res, err := a.dev.Reservation(ctx)
	mustNil(t, "read reservation", err)
	if !res.Held || res.Key != a.key || res.Type != ReservationType {
		t.Fatalf("after A's unfence: reservation %+v, want type 5 held by A", res)
	}
	mustNil(t, "B unfence", b.dev.Unfence(ctx, b.key))
	keys := keysOf(t, ctx, b.dev)
	if countKey(keys, a.key) != 2 || countKey(keys, b.key) != 2 {
		t.Fatalf("keys %v: want A and B registered through 2 nexuses each", keys)
	}
	// A writes through both paths (the UAs of the new nexuses first).
	for i, s := range a.sessions {
		if _, err := rawUntilNoUA(t, s, writeBlock(uint64(i))); err != nil {
			t.Fatalf("A's write on path %d before the fence: %v", i, err)
		}
	}

	mustNil(t, "B fences A", b.dev.Fence(ctx, b.key, a.key))
	t.Logf("tgtd answered PREEMPT AND ABORT with ILLEGAL REQUEST, Fence used PREEMPT: %v", b.dev.noAbort.Load())

	// A's first command on each path reports the preemption as a UNIT
	// ATTENTION; then its writes conflict and its reads still work (type 5
	// only restricts writes of unregistered initiators).
	for i, s := range a.sessions {
		uas, err := rawUntilNoUA(t, s, writeBlock(0))
		t.Logf("A path %d after the fence: unit attentions %v, then write: %v", i, uas, err)
		if len(uas) == 0 {
			t.Errorf("A path %d: no UNIT ATTENTION after being preempted", i)
		}
		wantIs(t, "A's write after the fence", err, scsi.ErrReservationConflict)
		mustNil(t, "A's read after the fence", raw(t, s, readBlock(0)))
	}
	// Through the library: UAs are consumed, the conflict is the answer.
	keys = keysOf(t, ctx, a.dev)
	if countKey(keys, a.key) != 0 || countKey(keys, b.key) != 2 {
		t.Fatalf("keys after the fence %v: want only B (twice)", keys)
	}
	res, err = b.dev.Reservation(ctx)
	mustNil(t, "read reservation", err)
	if !res.Held || res.Key != b.key || res.Type != ReservationType {
		t.Fatalf("after the fence: reservation %+v, want type 5 held by B (moved by PREEMPT)", res)
	}
	wantIs(t, "A's RESERVE while fenced", a.dev.Reserve(ctx, a.key), scsi.ErrReservationConflict)
	wantIs(t, "A's fence of B while fenced", a.dev.Fence(ctx, a.key, b.key), ErrFenceUnverified)

	// Rejoin: A registers again (its deliberate decision) and may write.
	mustNil(t, "A rejoins", a.dev.Unfence(ctx, a.key))
	for i, s := range a.sessions {
		if _, err := rawUntilNoUA(t, s, writeBlock(0)); err != nil {
			t.Fatalf("A's write on path %d after rejoining: %v", i, err)
		}
	}
	res, _ = b.dev.Reservation(ctx)
	t.Logf("after A rejoined: reservation still %v held by %v (rejoin does not take it back)", res.Type, res.Key)
	if res.Key != b.key {
		t.Errorf("rejoin moved the reservation to %v", res.Key)
	}
}

// TestTgtdFenceUnregisteredKey: fencing a key nobody registered is success
// after verification; fencing twice is too.
func TestTgtdFenceUnregisteredKey(t *testing.T) {
	tg := tgtdtest.Start(t)
	ctx := tgtdCtx(t)
	b := newNode(t, tg, 2, 1, 1)
	mustNil(t, "B unfence", b.dev.Unfence(ctx, b.key))
	mustNil(t, "fence a key never registered", b.dev.Fence(ctx, b.key, nodeKey(t, 7)))
	a := newNode(t, tg, 1, 1, 1)
	mustNil(t, "A unfence", a.dev.Unfence(ctx, a.key))
	mustNil(t, "fence A", b.dev.Fence(ctx, b.key, a.key))
	mustNil(t, "fence A again", b.dev.Fence(ctx, b.key, a.key))
}

// TestTgtdNoReservationLeft: when the holder unregisters, tgtd drops the
// reservation and anyone may write; Fence and Unfence put one back.
func TestTgtdNoReservationLeft(t *testing.T) {
	tg := tgtdtest.Start(t)
	ctx := tgtdCtx(t)
	a, b := newNode(t, tg, 1, 1, 1), newNode(t, tg, 2, 1, 1)
	outsider := dialPath(t, tg, 9, 0, 1) // never registers
	mustNil(t, "A unfence", a.dev.Unfence(ctx, a.key))
	mustNil(t, "B unfence", b.dev.Unfence(ctx, b.key))
	_, err := rawUntilNoUA(t, outsider, writeBlock(3))
	wantIs(t, "outsider's write under the reservation", err, scsi.ErrReservationConflict)

	mustNil(t, "A unregisters (holder leaves)", a.dev.Unregister(ctx, a.key))
	res, err := b.dev.Reservation(ctx)
	mustNil(t, "read reservation", err)
	_, werr := rawUntilNoUA(t, outsider, writeBlock(3))
	t.Logf("holder unregistered: reservation held=%v; outsider's write: %v", res.Held, werr)
	if res.Held {
		t.Fatalf("reservation %+v survived the holder's unregistration", res)
	}
	mustNil(t, "B fences the departed A", b.dev.Fence(ctx, b.key, a.key))
	res, _ = b.dev.Reservation(ctx)
	if !res.Held || res.Key != b.key {
		t.Fatalf("Fence did not re-establish the reservation: %+v", res)
	}
	_, err = rawUntilNoUA(t, outsider, writeBlock(3))
	wantIs(t, "outsider's write after Fence reserved again", err, scsi.ErrReservationConflict)
}

// TestTgtdPathMismatch: a "device" whose paths lead to two different LUs is
// caught by Identity, and a fence through it is not verified.
func TestTgtdPathMismatch(t *testing.T) {
	tg := tgtdtest.Start(t, tgtdtest.WithLUNs(2))
	ctx := tgtdCtx(t)
	a := newNode(t, tg, 1, 1, 1)
	mustNil(t, "A unfence", a.dev.Unfence(ctx, a.key))
	b := newNode(t, tg, 2, 1, 1)
	b.dev.Paths = append(b.dev.Paths, dialPath(t, tg, 2, 0, 2)) // LUN 2: wrong LU
	_, err := b.dev.Identity(ctx)
	wantIs(t, "identity of mixed paths", err, ErrPathMismatch)
	t.Logf("mixed paths: %v", err)
	other := &Device{Name: "lun2", Paths: b.dev.Paths[1:]}
	mustNil(t, "A registered on LUN 2 too", (&Device{Name: "a-lun2", Paths: []Transport{dialPath(t, tg, 1, 0, 2)}}).Unfence(ctx, a.key))
	mustNil(t, "B unfence LUN 1", (&Device{Name: "b-lun1", Paths: b.dev.Paths[:1]}).Unfence(ctx, b.key))
	mustNil(t, "B unfence LUN 2", other.Unfence(ctx, b.key))
	// The preempt goes to LUN 1 only; path 1 (LUN 2) still lists A.
	wantIs(t, "fence through mixed paths", b.dev.Fence(ctx, b.key, a.key), ErrFenceUnverified)
}

// TestTgtdFullStatusUnsupported records that tgtd 1.0.85 does not
// implement READ FULL STATUS (nor PREEMPT AND ABORT): ILLEGAL REQUEST.
func TestTgtdFullStatusUnsupported(t *testing.T) {
	tg := tgtdtest.Start(t)
	ctx := tgtdCtx(t)
	a := newNode(t, tg, 1, 1, 1)
	mustNil(t, "A unfence", a.dev.Unfence(ctx, a.key))
	_, regs, err := a.dev.FullStatus(ctx)
	t.Logf("READ FULL STATUS: %v %v", regs, err)
	if err != nil {
		wantIs(t, "READ FULL STATUS", err, scsi.ErrIllegalRequest)
	} else if len(regs) != 1 || regs[0].Key != a.key || !regs[0].Holder {
		t.Fatalf("READ FULL STATUS = %+v", regs)
	}
}
