package fence

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
)

const (
	keyA Key = 0x5a1e93c000000001
	keyB Key = 0x5a1e93c000000002
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestUnfence(t *testing.T) {
	ctx := testCtx(t)
	lu := newFakeLU()
	a, _ := fakeDevice(lu, 0, 1) // node A: two paths
	b, _ := fakeDevice(lu, 2, 3) // node B: two paths
	if err := a.Unfence(ctx, keyA); err != nil {
		t.Fatalf("A unfence: %v", err)
	}
	if err := b.Unfence(ctx, keyB); err != nil {
		t.Fatalf("B unfence: %v", err)
	}
	r, err := a.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Keys) != 4 || !r.Has(keyA) || !r.Has(keyB) {
		t.Errorf("keys = %v, want A and B on two nexuses each", r.Keys)
	}
	res, err := b.Reservation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Held || res.Key != keyA || res.Type != ReservationType {
		t.Errorf("reservation = %+v, want type 5 held by A (first to unfence)", res)
	}
}

func TestUnfenceFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(lu *fakeLU, paths []*fakePath)
		is    error
		text  string
	}{
		{"path down", func(_ *fakeLU, ps []*fakePath) { ps[1].down = true },
			errFakeTransport, "fence: register key 0x5a1e93c000000001 on device fake path 1: fake: connection reset"},
		{"foreign reservation type", func(lu *fakeLU, _ []*fakePath) {
			lu.regs[9], lu.holder, lu.typ = 0x77, 9, scsi.TypeExclusiveAccess
		}, ErrReservationType, "Exclusive Access held by 0x0000000000000077"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lu := newFakeLU()
			d, ps := fakeDevice(lu, 0, 1)
			tc.setup(lu, ps)
			err := d.Unfence(testCtx(t), keyA)
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("err = %q, want it to contain %q", err, tc.text)
			}
		})
	}
}

func TestFence(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(lu *fakeLU, a, b *Device, bp []*fakePath)
		self      Key
		victim    Key
		is        []error
		wantTaken bool // B holds the reservation afterwards
	}{
		{"victim holds reservation", nil, keyB, keyA, nil, true},
		{"victim not registered", func(lu *fakeLU, a, _ *Device, _ []*fakePath) {
			_ = a.Unregister(context.Background(), keyA)
		}, keyB, 0x5a1e93c000000009, nil, true},
		{"no reservation left: fence reserves", func(lu *fakeLU, _, _ *Device, _ []*fakePath) {
			lu.holder = -1
		}, keyB, keyA, nil, true},
		{"target without preempt and abort", func(lu *fakeLU, _, _ *Device, _ []*fakePath) {
			lu.noAbort = true
		}, keyB, keyA, nil, true},
		{"first path down: preempt and verify", func(_ *fakeLU, _, _ *Device, bp []*fakePath) {
			bp[0].script = []fakeStep{{err: errFakeTransport}, {err: errFakeTransport}, {err: errFakeTransport}, {err: errFakeTransport}, {err: errFakeTransport}}
		}, keyB, keyA, nil, true},
		{"own registration lost on first path", func(lu *fakeLU, _, _ *Device, _ []*fakePath) {
			delete(lu.regs, 2) // B's nexus 2 reconnected; nexus 3 still registered
		}, keyB, keyA, nil, true},
		{"verify path down", func(_ *fakeLU, _, _ *Device, bp []*fakePath) { bp[1].down = true },
			keyB, keyA, []error{ErrFenceUnverified, errFakeTransport}, false},
		{"self not registered", func(lu *fakeLU, _, b *Device, _ []*fakePath) {
			_ = b.Unregister(context.Background(), keyB)
		}, keyB, keyA, []error{ErrFenceUnverified, scsi.ErrReservationConflict}, false},
		{"self fence refused", nil, keyA, keyA, []error{ErrSelfFence}, false},
		{"key 0 refused", nil, keyB, 0, []error{ErrInvalidKey}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			lu := newFakeLU()
			a, _ := fakeDevice(lu, 0, 1)
			b, bp := fakeDevice(lu, 2, 3)
			if err := a.Unfence(ctx, keyA); err != nil {
				t.Fatal(err)
			}
			if err := b.Unfence(ctx, keyB); err != nil {
				t.Fatal(err)
			}
			if tc.setup != nil {
				tc.setup(lu, a, b, bp)
			}
			err := b.Fence(ctx, tc.self, tc.victim)
			if tc.is == nil && err != nil {
				t.Fatalf("Fence: %v", err)
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("err = %v, want it to match %v", err, target)
				}
			}
			if !tc.wantTaken {
				return
			}
			if lu.holder < 2 {
				t.Errorf("reservation holder nexus = %d, want one of B's (2, 3)", lu.holder)
			}
			if r := lu.exec(0, scsi.Write16(0, 1, false, make([]byte, 512))); r.Status != scsi.StatusReservationConflict &&
				tc.victim == keyA {
				// nexus 0 may first report its UA; the next write must conflict
				if r2 := lu.exec(0, scsi.Write16(0, 1, false, make([]byte, 512))); r2.Status != scsi.StatusReservationConflict {
					t.Errorf("fenced A's write status = %v, want RESERVATION CONFLICT", r2.Status)
				}
			}
		})
	}
}

// TestFenceVerifiesEveryPath: a path that leads to another LU (still
// listing the victim) makes the fence unverified.
func TestFenceVerifiesEveryPath(t *testing.T) {
	ctx := testCtx(t)
	lu, other := newFakeLU(), newFakeLU()
	b, _ := fakeDevice(lu, 2)
	b.Paths = append(b.Paths, &fakePath{lu: other, nexus: 2})
	other.regs[0] = uint64(keyA)
	lu.regs[0] = uint64(keyA)
	if err := b.Unfence(ctx, keyB); err != nil {
		t.Fatal(err)
	}
	err := b.Fence(ctx, keyB, keyA)
	if !errors.Is(err, ErrFenceUnverified) || !strings.Contains(err.Error(), "path 1: key 0x5a1e93c000000001 still registered") {
		t.Fatalf("err = %v, want unverified on path 1", err)
	}
}

func TestPreemptErrorText(t *testing.T) {
	ctx := testCtx(t)
	d, _ := fakeDevice(newFakeLU(), 0)
	err := d.Preempt(ctx, keyB, keyA, true)
	want := "fence: preempt and abort key 0x5a1e93c000000001 on device fake path 0: fence/scsi: reservation conflict"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if !errors.Is(err, scsi.ErrReservationConflict) {
		t.Error("not errors.Is ErrReservationConflict")
	}
}

func TestUnregisterReleaseClear(t *testing.T) {
	ctx := testCtx(t)
	lu := newFakeLU()
	d, _ := fakeDevice(lu, 0, 1)
	if err := d.Unregister(ctx, keyA); err != nil {
		t.Errorf("unregister of an unregistered key: %v, want nil (end state reached)", err)
	}
	if err := d.Unfence(ctx, keyA); err != nil {
		t.Fatal(err)
	}
	if err := d.Release(ctx, keyA); err != nil {
		t.Fatal(err)
	}
	if res, _ := d.Reservation(ctx); res.Held {
		t.Errorf("reservation still held after release: %+v", res)
	}
	if err := d.Reserve(ctx, keyA); err != nil {
		t.Fatal(err)
	}
	if err := d.Clear(ctx, keyA); err != nil {
		t.Fatal(err)
	}
	if r, _ := d.Keys(ctx); len(r.Keys) != 0 {
		t.Errorf("keys after clear = %v", r.Keys)
	}
	if err := d.Register(ctx, 0); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("register key 0: %v", err)
	}
	empty := &Device{Name: "none"}
	if err := empty.Register(ctx, keyA); !errors.Is(err, ErrNoPaths) {
		t.Errorf("no paths: %v", err)
	}
}

func TestReadKeysGrowsAllocation(t *testing.T) {
	ctx := testCtx(t)
	lu := newFakeLU()
	for n := 0; n < 16; n++ {
		lu.regs[n] = uint64(n + 1)
	}
	d, ps := fakeDevice(lu, 0)
	// First answer claims 2000 bytes of keys but returns 1024: the device
	// truncated at the allocation length.
	big := make([]byte, 1024)
	big[6], big[7] = 0x07, 0xd0
	ps[0].script = []fakeStep{{resp: scsi.Response{DataIn: big}}}
	r, err := d.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Keys) != 16 {
		t.Errorf("%d keys, want 16 (second read with a larger allocation)", len(r.Keys))
	}
}
